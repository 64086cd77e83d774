//! Calibration of a classifier's probabilities (spec §11, `calibration` group).
//!
//! Every binned metric shares two primitives: [`EqualWidthEdges`], which follows the spec's
//! edge rule to the letter, and [`BinAccumulator`], which sums counts, values and outcomes per
//! bin in f64. Equal-mass metrics group a stable sort of the values.

use crate::error::MetricsError;
use crate::order::{equal_mass_sums, key_value, sortable_key};
use crate::predictions::Predictions;

/// Default number of bins of every binned metric (spec §11).
pub const DEFAULT_BINS: usize = 15;

/// 0-based equal-width bin of `x` among `bins` bins: the smallest `m` in `1..=M` with
/// `x <= m/M` (with `m/M` one f64 division), minus one. `x <= 0` goes to the first bin and
/// `x > 1` to the last. Builds the edge table each call: in loops use [`EqualWidthEdges`].
pub fn equal_width_bin(x: f64, bins: usize) -> usize {
    EqualWidthEdges::new(bins).bin(x)
}

/// `x` clamped to [0, 1]: a metric bounded by its definition must not leave its bounds by a
/// rounding error of its sum (decision M12).
pub(crate) fn unit(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

/// The most bins a binned metric accepts: class-wise metrics keep `C × bins` accumulators, and
/// beyond this a bin holds too few samples to mean anything.
pub const MAX_BINS: usize = 10_000;

/// Validates a number of bins: 1 to [`MAX_BINS`].
///
/// # Errors
/// [`MetricsError::InvalidParameter`] when `bins` is 0 or above [`MAX_BINS`].
pub fn check_bins(bins: usize) -> Result<(), MetricsError> {
    let reason = match bins {
        0 => "at least one bin is needed",
        b if b > MAX_BINS => "at most 10000 bins (MAX_BINS)",
        _ => return Ok(()),
    };
    Err(MetricsError::InvalidParameter {
        name: "bins",
        value: bins.to_string(),
        reason,
    })
}

/// Up to this many bins, a value whose x·M lies more than 1e-9 from an integer is binned
/// without looking at the edges.
const FAST_BIN_LIMIT: usize = 1 << 20;

/// The upper edges `m/M`, `m = 0..=M`, each one f64 division as the spec defines them.
#[derive(Debug, Clone, PartialEq)]
pub struct EqualWidthEdges {
    edges: Vec<f64>,
}

impl EqualWidthEdges {
    /// Edges of `bins` equal-width bins.
    pub fn new(bins: usize) -> Self {
        Self {
            edges: (0..=bins).map(|m| m as f64 / bins as f64).collect(),
        }
    }

    /// 0-based bin of `x` (see [`equal_width_bin`]).
    #[inline]
    pub fn bin(&self, x: f64) -> usize {
        let bins = self.edges.len() - 1;
        let y = x * bins as f64;
        let t = y as usize; // saturating: x ≤ 0 gives 0
        let frac = y - t as f64;
        // Far from an edge the rounding of x·M (at most M·2⁻⁵³, far below 1e-9 for the bin
        // counts allowed here) and of the edges cannot matter.
        if bins <= FAST_BIN_LIMIT && frac > 1e-9 && frac < 1.0 - 1e-9 && t < bins {
            return t;
        }
        // ⌊x·M⌋ is the answer up to one rounding step either way: settle it against the edges.
        let mut b = t.min(bins - 1);
        if b > 0 && x <= self.edges[b] {
            b -= 1;
        } else if b + 1 < bins && x > self.edges[b + 1] {
            b += 1;
        }
        b
    }
}

/// Per-bin sums of value ("confidence") and outcome ("accuracy") in f64.
#[derive(Debug, Clone)]
pub struct BinAccumulator {
    edges: EqualWidthEdges,
    count: Vec<u64>,
    sum_value: Vec<f64>,
    sum_outcome: Vec<f64>,
}

impl BinAccumulator {
    /// `bins` empty bins.
    pub fn new(bins: usize) -> Self {
        Self {
            edges: EqualWidthEdges::new(bins),
            count: vec![0; bins],
            sum_value: vec![0.0; bins],
            sum_outcome: vec![0.0; bins],
        }
    }

    /// Adds one sample to bin `b`.
    #[inline]
    pub fn add(&mut self, b: usize, value: f64, outcome: f64) {
        self.count[b] += 1;
        self.sum_value[b] += value;
        self.sum_outcome[b] += outcome;
    }

    /// Adds one sample to its equal-width bin.
    #[inline]
    pub fn add_equal_width(&mut self, value: f64, outcome: f64) {
        let b = self.edges.bin(value);
        self.add(b, value, outcome);
    }

    /// `(count, mean value, mean outcome)` of each non-empty bin, in bin order.
    pub fn non_empty(&self) -> impl Iterator<Item = (u64, f64, f64)> + '_ {
        (0..self.count.len()).filter(|&b| self.count[b] > 0).map(|b| {
            let n = self.count[b] as f64;
            (self.count[b], self.sum_value[b] / n, self.sum_outcome[b] / n)
        })
    }

    /// Count of bin `b`.
    pub fn count(&self, b: usize) -> u64 {
        self.count[b]
    }

    /// `Σ_b (n_b/N)·|outcome_b − value_b|` (the L1 calibration error).
    pub fn l1(&self, n: usize) -> f64 {
        self.non_empty().map(|(c, v, o)| c as f64 * (o - v).abs()).sum::<f64>() / n as f64
    }

    /// `max_b |outcome_b − value_b|` over non-empty bins.
    pub fn max_gap(&self) -> f64 {
        self.non_empty().map(|(_, v, o)| (o - v).abs()).fold(0.0, f64::max)
    }

    /// `sqrt(Σ_b (n_b/N)·(outcome_b − value_b)²)`.
    pub fn rms(&self, n: usize) -> f64 {
        (self
            .non_empty()
            .map(|(c, v, o)| c as f64 * (o - v) * (o - v))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    }
}

/// The top-label equal-width bins of `p` (confidence vs correctness).
pub fn top_label_bins(pred: &Predictions, bins: usize) -> BinAccumulator {
    let mut acc = BinAccumulator::new(bins);
    for ((&conf, &yhat), &y) in pred.confidence().iter().zip(pred.predicted()).zip(pred.labels()) {
        acc.add_equal_width(conf, f64::from(u8::from(yhat == y)));
    }
    acc
}

/// `accuracy` = mean(1 − e).
pub fn accuracy(pred: &Predictions) -> f64 {
    let correct = pred
        .predicted()
        .iter()
        .zip(pred.labels())
        .filter(|(a, b)| a == b)
        .count();
    correct as f64 / pred.len() as f64
}

/// `nll` = −mean log p[i, y_i] (log-softmax for logits, clipped probabilities otherwise).
pub fn nll(pred: &Predictions) -> f64 {
    pred.nll_terms().iter().sum::<f64>() / pred.len() as f64
}

/// `brier` = mean over samples of Σ_k (p_ik − 1[y_i = k])² (not divided by C).
pub fn brier(pred: &Predictions) -> f64 {
    let c = pred.num_classes();
    let total: f64 = pred
        .probs()
        .chunks_exact(c)
        .zip(pred.labels())
        .map(|(p, &y)| {
            let sq: f64 = p.iter().map(|v| v * v).sum();
            let py = p[y as usize];
            // Σ_k (p_k − 1[k=y])² = Σ_k p_k² − 2 p_y + 1
            sq - 2.0 * py + 1.0
        })
        .sum();
    (total / pred.len() as f64).clamp(0.0, 2.0)
}

/// `ece`: top-label L1 calibration error over `bins` equal-width bins.
pub fn ece(pred: &Predictions, bins: usize) -> f64 {
    unit(top_label_bins(pred, bins).l1(pred.len()))
}

/// `mce`: max over non-empty equal-width bins of |acc − conf|.
pub fn mce(pred: &Predictions, bins: usize) -> f64 {
    unit(top_label_bins(pred, bins).max_gap())
}

/// `rmsce`: sqrt(Σ_m (|B_m|/N)(acc − conf)²), equal-width.
pub fn rmsce(pred: &Predictions, bins: usize) -> f64 {
    unit(top_label_bins(pred, bins).rms(pred.len()))
}

/// Sums `|mean outcome − mean value|·weight(group)` over the non-empty equal-mass groups of
/// the values whose [`sortable_key`]s are `keys`; returns the weighted sum and the number of
/// non-empty groups.
fn equal_mass_gaps(keys: &[u64], outcome: impl Fn(usize) -> f64, bins: usize, weight_by_size: bool) -> (f64, usize) {
    let mut total = 0.0;
    let mut groups = 0;
    for g in equal_mass_sums(keys, outcome, bins).iter().filter(|g| g.count > 0) {
        let size = g.count as f64;
        let gap = (g.sum_outcome / size - g.sum_value / size).abs();
        total += if weight_by_size { size * gap } else { gap };
        groups += 1;
    }
    (total, groups)
}

/// `ece_em`: top-label L1 calibration error over `bins` equal-mass groups of the confidence.
pub fn ece_em(pred: &Predictions, bins: usize) -> f64 {
    let correct = |i: usize| f64::from(u8::from(pred.predicted()[i] == pred.labels()[i]));
    let keys: Vec<u64> = pred.confidence().iter().map(|&v| sortable_key(v)).collect();
    let (total, _) = equal_mass_gaps(&keys, correct, bins, true);
    unit(total / pred.len() as f64)
}

/// `classwise_ece`: (1/C) Σ_k Σ_m (|B_mk|/N)·|mean 1[y=k] − mean p_k|, equal-width bins of p_k.
pub fn classwise_ece(pred: &Predictions, bins: usize) -> f64 {
    let c = pred.num_classes();
    let edges = EqualWidthEdges::new(bins);
    // One row-major pass; accumulators are [class][bin].
    let mut count = vec![0u64; c * bins];
    let mut sum_p = vec![0.0f64; c * bins];
    let mut hits = vec![0u64; c * bins];
    for (p, &y) in pred.probs().chunks_exact(c).zip(pred.labels()) {
        for (k, &pk) in p.iter().enumerate() {
            let slot = k * bins + edges.bin(pk);
            count[slot] += 1;
            sum_p[slot] += pk;
            hits[slot] += u64::from(y as usize == k);
        }
    }
    let total: f64 = (0..c * bins)
        .filter(|&s| count[s] > 0)
        .map(|s| (hits[s] as f64 - sum_p[s]).abs()) // |B|·|acc − conf| = |hits − Σp|
        .sum();
    unit(total / (pred.len() as f64 * c as f64))
}

/// `ace`: (1/(C·M')) Σ_k Σ_r |mean 1[y=k] − mean p_k| over the equal-mass groups of p_k, where
/// M' counts the non-empty groups (M when N ≥ M).
pub fn ace(pred: &Predictions, bins: usize) -> f64 {
    let c = pred.num_classes();
    let mut total = 0.0;
    let mut groups = 0;
    let mut keys = Vec::with_capacity(pred.len());
    for k in 0..c {
        keys.clear();
        keys.extend(pred.probs().chunks_exact(c).map(|p| sortable_key(p[k])));
        let is_k = |i: usize| f64::from(u8::from(pred.labels()[i] as usize == k));
        let (t, g) = equal_mass_gaps(&keys, is_k, bins, false);
        total += t;
        groups += g;
    }
    unit(total / groups as f64)
}

/// Which binning a reliability diagram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binning {
    /// `M` equal-width bins `((m−1)/M, m/M]` (0 in the first, values above 1 in the last).
    EqualWidth(usize),
    /// `M` equal-mass groups of a stable sort (spec §11 grouping rule).
    EqualMass(usize),
}

/// One bar of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// Lower edge: `(m−1)/M` for equal width, the smallest confidence for equal mass.
    pub lower: f64,
    /// Upper edge: `m/M` for equal width, the largest confidence for equal mass.
    pub upper: f64,
    /// Samples in the bin.
    pub count: u64,
    /// Mean confidence; `None` for an empty bin (draw no bar).
    pub mean_confidence: Option<f64>,
    /// Fraction correct; `None` for an empty bin.
    pub accuracy: Option<f64>,
    /// Wilson 95% interval of the accuracy; `None` for an empty bin.
    pub wilson: Option<(f64, f64)>,
}

/// z for a two-sided 95% normal interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval (95%) for `successes` out of `n > 0` trials.
pub fn wilson_interval(successes: u64, n: u64) -> (f64, f64) {
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    // At k = 0 (k = n) the bound is exactly 0 (1); the formula would leave a rounding residue
    // that excludes the observed accuracy.
    let low = if successes == 0 { 0.0 } else { (centre - half).max(0.0) };
    let high = if successes == n { 1.0 } else { (centre + half).min(1.0) };
    (low, high)
}

fn make_bin(lower: f64, upper: f64, count: u64, sum_conf: f64, correct: u64) -> ReliabilityBin {
    if count == 0 {
        return ReliabilityBin {
            lower,
            upper,
            count,
            mean_confidence: None,
            accuracy: None,
            wilson: None,
        };
    }
    ReliabilityBin {
        lower,
        upper,
        count,
        mean_confidence: Some(sum_conf / count as f64),
        accuracy: Some(correct as f64 / count as f64),
        wilson: Some(wilson_interval(correct, count)),
    }
}

/// Reliability-diagram bins of top-label confidence against correctness. Every bin is
/// returned, empty ones with `count == 0` and no means, so that a plot can skip them.
///
/// # Errors
/// [`MetricsError::InvalidParameter`] for zero bins.
pub fn reliability_bins(pred: &Predictions, binning: Binning) -> Result<Vec<ReliabilityBin>, MetricsError> {
    let correct = |i: usize| pred.predicted()[i] == pred.labels()[i];
    let conf = pred.confidence();
    match binning {
        Binning::EqualWidth(m) => {
            check_bins(m)?;
            let edges = EqualWidthEdges::new(m);
            let mut count = vec![0u64; m];
            let mut sum_conf = vec![0.0; m];
            let mut n_correct = vec![0u64; m];
            for (i, &c) in conf.iter().enumerate() {
                let b = edges.bin(c);
                count[b] += 1;
                sum_conf[b] += c;
                n_correct[b] += u64::from(correct(i));
            }
            Ok((0..m)
                .map(|b| {
                    make_bin(
                        b as f64 / m as f64,
                        (b + 1) as f64 / m as f64,
                        count[b],
                        sum_conf[b],
                        n_correct[b],
                    )
                })
                .collect())
        }
        Binning::EqualMass(m) => {
            check_bins(m)?;
            let keys: Vec<u64> = conf.iter().map(|&v| sortable_key(v)).collect();
            let correct = |i: usize| f64::from(u8::from(correct(i)));
            Ok(equal_mass_sums(&keys, correct, m)
                .into_iter()
                .map(|g| {
                    let (lo, hi) = if g.count > 0 {
                        (key_value(g.key_range.0), key_value(g.key_range.1))
                    } else {
                        (f64::NAN, f64::NAN)
                    };
                    make_bin(lo, hi, g.count as u64, g.sum_value, g.sum_outcome as u64)
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_edges_follow_the_spec() {
        let m = 15;
        assert_eq!(equal_width_bin(0.0, m), 0);
        assert_eq!(equal_width_bin(-0.0, m), 0);
        assert_eq!(equal_width_bin(1.0, m), 14);
        for k in 1..=15usize {
            let edge = k as f64 / 15.0;
            assert_eq!(equal_width_bin(edge, m), k - 1, "edge {k}/15 belongs to bin {k}");
            assert_eq!(
                equal_width_bin(f64::from_bits(edge.to_bits() + 1), m).min(14),
                k.min(14)
            );
        }
        assert_eq!(equal_width_bin(0.5, 10), 4);
        assert_eq!(equal_width_bin(1.5, 10), 9);
    }

    #[test]
    fn wilson_is_exact_at_the_extremes() {
        assert_eq!(wilson_interval(0, 7).0, 0.0);
        assert_eq!(wilson_interval(7, 7).1, 1.0);
    }

    #[test]
    fn wilson_matches_a_textbook_value() {
        // 8 of 10: Wilson 95% interval (0.4902, 0.9433), e.g. Agresti & Coull (1998).
        let (lo, hi) = wilson_interval(8, 10);
        assert!((lo - 0.490_161).abs() < 1e-5, "{lo}");
        assert!((hi - 0.943_318).abs() < 1e-5, "{hi}");
    }
}
