//! The split protocol's seeded validation holdout.
//!
//! Where a dataset has no validation split, `val` is a seeded random `fraction` of the
//! official train split (20%, seed 42 by default, as in arXiv 2505.15443) and `train` is the
//! rest. The holdout has the size that scikit-learn's and Hugging Face's
//! `train_test_split(test_size=fraction)` give, `ceil(fraction · n)`, but its rows come from
//! this crate's own shuffle ([`SplitMix64::shuffle`]), not numpy's, so they are not the rows
//! Hugging Face picks. Both parts keep the original file order.

use crate::error::{DataError, Result};
use crate::rng::{Rng64, SplitMix64};

/// The default validation fraction.
pub const DEFAULT_VAL_FRACTION: f64 = 0.2;
/// The default seed of the holdout shuffle (and of the synthetic generator).
pub const DEFAULT_SEED: u64 = 42;

/// Size of the holdout of `n` examples: `ceil(fraction · n)` computed in `f64`, as
/// scikit-learn computes a float `test_size`.
pub fn val_size(n: usize, fraction: f64) -> usize {
    (fraction * n as f64).ceil() as usize
}

/// The indices of the training part and of the holdout, each in increasing order.
///
/// The permutation is `SplitMix64::new(seed).shuffle(&mut [0, 1, …, n − 1])`; the holdout is
/// its first [`val_size`] entries and training the rest. Errors when `fraction` is not in
/// `(0, 1)` or when either part would be empty.
pub fn holdout_indices(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::invalid(
            "val_fraction",
            format!("{fraction} is not strictly between 0 and 1"),
        ));
    }
    let n_val = val_size(n, fraction);
    if n_val == 0 || n_val >= n {
        return Err(DataError::invalid(
            "val_fraction",
            format!("a holdout of {fraction} of {n} examples is {n_val}, which leaves an empty split"),
        ));
    }
    Ok(permuted_split(n, n_val, seed))
}

/// The first `k` entries of the seeded permutation as the holdout, the rest as training, each
/// sorted.
fn permuted_split(n: usize, n_val: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut val = order[..n_val].to_vec();
    let mut train = order[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// Splits `items` into (training part, holdout) with [`holdout_indices`], keeping file order.
pub fn holdout<T>(items: Vec<T>, fraction: f64, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    let (_, val_idx) = holdout_indices(items.len(), fraction, seed)?;
    Ok(take_rows(items, &val_idx))
}

/// Splits `items` into (the rest, a holdout of exactly `k` rows): the same seeded permutation as
/// [`holdout_indices`], for a count rather than a fraction. `key` names the option in errors.
pub fn holdout_count<T>(items: Vec<T>, k: usize, seed: u64, key: &str) -> Result<(Vec<T>, Vec<T>)> {
    let n = items.len();
    if k == 0 || k >= n {
        return Err(DataError::invalid(
            key,
            format!("a holdout of {k} of {n} examples leaves an empty split"),
        ));
    }
    let (_, idx) = permuted_split(n, k, seed);
    Ok(take_rows(items, &idx))
}

/// (rows not in `holdout`, rows in `holdout`), both in their original order.
fn take_rows<T>(items: Vec<T>, holdout: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut in_val = vec![false; items.len()];
    for &i in holdout {
        in_val[i] = true;
    }
    let mut train = Vec::with_capacity(items.len());
    let mut val = Vec::new();
    for (item, is_val) in items.into_iter().zip(in_val) {
        if is_val {
            val.push(item);
        } else {
            train.push(item);
        }
    }
    (train, val)
}
