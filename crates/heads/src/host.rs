//! A classifier's forward pass on the host, in f64: faer's matrix products (weights widened once,
//! when the head is built) and the vectorised activations of `simd.rs`. The trainable heads
//! score through it, the cache checks its logits with it, and the Mahalanobis heads' `dense`
//! features come from it. No burn device is involved, so a loaded head scores anywhere, and its
//! scores do not depend on the device it was trained on.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::cache::{Activation, Classifier, ClassifierKind};

/// Rows per block (bounds the f64 scratch to a few `BLOCK_ROWS · d` values).
const BLOCK_ROWS: usize = 4096;
/// Multiply–adds of a block below which one thread is faster than starting another (a thread
/// start costs ~20 µs; 4M multiply–adds take ~80 µs on one core).
const PARALLEL_WORK: usize = 1 << 22;
/// Fewest rows a thread is given.
const MIN_ROWS_PER_THREAD: usize = 8;

/// A head's weights widened to f64, in PyTorch layout, ready for repeated forward passes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostHead {
    kind: ClassifierKind,
    activation: Activation,
    dim: usize,
    num_classes: usize,
    dense_weight: Option<Vec<f64>>,
    dense_bias: Option<Vec<f64>>,
    out_weight: Vec<f64>,
    out_bias: Option<Vec<f64>>,
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `out = x · Wᵀ + b`, on the calling thread, with `x` `[rows, n_in]` and `out` `[rows, n_out]`
/// both column-major and `W` in PyTorch layout `[n_out, n_in]` (row-major), so `Wᵀ` is
/// column-major too. With every operand column-major faer's kernels read them in place; a
/// row-major destination makes faer transpose the product and pack all of `W` on every call.
fn linear(x: &[f64], rows: usize, w: &[f64], b: Option<&[f64]>, n_in: usize, n_out: usize, out: &mut [f64]) {
    let lhs = MatRef::from_column_major_slice(x, rows, n_in);
    let rhs = MatRef::from_row_major_slice(w, n_out, n_in).transpose();
    let dst = MatMut::from_column_major_slice_mut(out, rows, n_out);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0f64, Par::Seq);
    if let Some(b) = b {
        for (col, bk) in out.chunks_exact_mut(rows.max(1)).zip(b) {
            col.iter_mut().for_each(|v| *v += bk);
        }
    }
}

/// Writes the column-major `[rows, cols]` matrix `src` into `dst` row-major.
fn to_row_major(src: &[f64], rows: usize, cols: usize, dst: &mut [f64]) {
    for (j, col) in src.chunks_exact(rows.max(1)).enumerate().take(cols) {
        for (i, v) in col.iter().enumerate() {
            dst[i * cols + j] = *v;
        }
    }
}

/// Threads the blocks may use: the size of the pool faer would use (`RAYON_NUM_THREADS` or the
/// number of cores).
pub(crate) fn threads() -> usize {
    match Par::rayon(0) {
        Par::Rayon(n) => n.get(),
        Par::Seq => 1,
    }
}

impl HostHead {
    /// The head of a classifier's weights.
    pub(crate) fn new(c: &Classifier) -> Self {
        Self {
            kind: c.kind,
            activation: c.activation,
            dim: c.dim,
            num_classes: c.num_classes,
            dense_weight: c.dense_weight.as_deref().map(widen),
            dense_bias: c.dense_bias.as_deref().map(widen),
            out_weight: widen(&c.out_weight),
            out_bias: c.out_bias.as_deref().map(widen),
        }
    }

    /// One run of rows on the calling thread, from row-major `features` `[rows, d]`: `hidden`
    /// `[rows, d]` gets `act(dense(h))` (`h` itself for kind `linear`), `logits` `[rows, C]`
    /// gets `out_proj(hidden)`, both column-major; `scratch` holds the widened input of an
    /// `mlp` head.
    fn forward_rows(&self, features: &[f32], scratch: &mut Vec<f64>, hidden: &mut [f64], logits: &mut [f64]) {
        let (d, c) = (self.dim, self.num_classes);
        let rows = hidden.len() / d.max(1);
        let widen_into = |dst: &mut [f64]| {
            for (i, row) in features.chunks_exact(d.max(1)).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    dst[j * rows + i] = f64::from(v);
                }
            }
        };
        match (self.kind, &self.dense_weight) {
            (ClassifierKind::Mlp, Some(w)) => {
                scratch.resize(rows * d, 0.0);
                widen_into(scratch);
                linear(scratch, rows, w, self.dense_bias.as_deref(), d, d, hidden);
                self.activation.apply_in_place(hidden);
            }
            _ => widen_into(hidden),
        }
        linear(hidden, rows, &self.out_weight, self.out_bias.as_deref(), d, c, logits);
    }

    /// Runs the head over row-major features `[n, d]`, every dropout off, and calls
    /// `f(row_offset, hidden, logits)` per block of rows, `hidden` `[rows, d]` (empty unless
    /// `with_hidden`) and `logits` `[rows, C]` row-major. A block large enough is split into
    /// runs of rows on as many threads: the work of a row does not depend on the other rows.
    pub(crate) fn forward_blocks(&self, features: &[f32], with_hidden: bool, mut f: impl FnMut(usize, &[f64], &[f64])) {
        let (d, c) = (self.dim, self.num_classes);
        let n = features.len() / d.max(1);
        let per_row = d * c + if self.kind == ClassifierKind::Mlp { d * d } else { 0 };
        let (mut hidden, mut logits, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        let (mut hidden_rm, mut logits_rm) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            let x = &features[start * d..(start + rows) * d];
            let parts = threads()
                .min(rows * per_row / PARALLEL_WORK + 1)
                .min(rows / MIN_ROWS_PER_THREAD)
                .max(1);
            let run = rows.div_ceil(parts);
            // Each run's outputs are column-major within the run's own slice.
            hidden.resize(rows * d, 0.0);
            logits.resize(rows * c, 0.0);
            std::thread::scope(|scope| {
                let mut runs = x
                    .chunks(run * d)
                    .zip(hidden.chunks_mut(run * d))
                    .zip(logits.chunks_mut(run * c));
                // The calling thread takes the first run itself.
                let first = runs.next();
                for ((xr, hr), lr) in runs {
                    scope.spawn(move || self.forward_rows(xr, &mut Vec::new(), hr, lr));
                }
                if let Some(((xr, hr), lr)) = first {
                    self.forward_rows(xr, &mut scratch, hr, lr);
                }
            });
            logits_rm.resize(rows * c, 0.0);
            hidden_rm.resize(if with_hidden { rows * d } else { 0 }, 0.0);
            for (k, r0) in (0..rows).step_by(run).enumerate() {
                let r = run.min(rows - r0);
                to_row_major(&logits[k * run * c..][..r * c], r, c, &mut logits_rm[r0 * c..]);
                if with_hidden {
                    to_row_major(&hidden[k * run * d..][..r * d], r, d, &mut hidden_rm[r0 * d..]);
                }
            }
            f(start, &hidden_rm, &logits_rm);
            start += rows;
        }
        // faer's kernels leave the upper vector state dirty; the caller's libm calls would pay.
        crate::simd::clear_upper_state();
    }

    /// The logits `[n, C]` (row-major) of row-major features `[n, d]`, every dropout off:
    /// `out_proj(act(dense(h)))` for kind `mlp`, `out_proj(h)` for kind `linear`.
    pub(crate) fn logits(&self, features: &[f32]) -> Vec<f64> {
        let mut out = Vec::with_capacity(features.len() / self.dim.max(1) * self.num_classes);
        self.forward_blocks(features, false, |_, _, z| out.extend_from_slice(z));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ueb_rng::{Rng64, Xoshiro256};

    #[test]
    fn rows_split_between_threads_give_the_rows_logits() {
        // 600 rows of a 128-wide mlp head: ~10M multiply–adds, more than one thread's share.
        let (d, c, n) = (128, 3, 600);
        let mut rng = Xoshiro256::new(11, 0);
        let mut draw = |k: usize, s: f64| -> Vec<f32> { (0..k).map(|_| ((rng.unit() - 0.5) * s) as f32).collect() };
        let classifier = Classifier {
            kind: ClassifierKind::Mlp,
            activation: Activation::Tanh,
            dense_weight: Some(draw(d * d, 0.3)),
            dense_bias: Some(draw(d, 0.2)),
            out_weight: draw(c * d, 0.5),
            out_bias: Some(draw(c, 0.2)),
            dim: d,
            num_classes: c,
        };
        let features = draw(n * d, 2.0);
        let head = HostHead::new(&classifier);
        let all = head.logits(&features);
        let mut blocks = 0;
        head.forward_blocks(&features, true, |_, h, z| {
            assert_eq!((h.len(), z.len()), (n * d, n * c));
            blocks += 1;
        });
        assert_eq!(blocks, 1);
        for i in (0..n).step_by(37) {
            let one = head.logits(&features[i * d..(i + 1) * d]);
            for k in 0..c {
                let (a, b) = (all[i * c + k], one[k]);
                assert!((a - b).abs() <= 1e-13 * (1.0 + b.abs()), "row {i}: {a} vs {b}");
            }
        }
    }
}
