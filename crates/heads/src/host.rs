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
/// Multiply–adds of a product from which faer's parallel kernels beat its sequential ones on
/// the build machine (2 cores: about 64 rows of a 768-wide `dense`; below, waking the pool and
/// splitting the panels costs more than the second core brings).
const PARALLEL_WORK: usize = 1 << 25;

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

/// A row-major `[out, in]` matrix as `[in, out]` (row-major transposes; also the way back,
/// with the dimensions swapped).
pub(crate) fn transpose<T: Copy + Default>(w: &[T], out: usize, inp: usize) -> Vec<T> {
    let mut t = vec![T::default(); w.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = w[o * inp + i];
        }
    }
    t
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `out = x · Wᵀ + b` with `x` `[rows, n_in]` (any layout), `out` `[rows, n_out]`
/// column-major and `W` in PyTorch layout `[n_out, n_in]`, row-major, so that `Wᵀ` is
/// column-major. A row-major destination would make faer transpose the product and pack all of
/// `W` on every call (2× slower for a batch of 32 at d = 768).
fn linear(x: MatRef<'_, f64>, w: &[f64], b: Option<&[f64]>, n_out: usize, out: &mut [f64]) {
    let (rows, n_in) = (x.nrows(), x.ncols());
    let rhs = MatRef::from_row_major_slice(w, n_out, n_in).transpose();
    let dst = MatMut::from_column_major_slice_mut(out, rows, n_out);
    let par = if rows * n_in * n_out >= PARALLEL_WORK {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    matmul(dst, Accum::Replace, x, rhs, 1.0f64, par);
    if let Some(b) = b {
        for (col, bk) in out.chunks_exact_mut(rows.max(1)).zip(b) {
            col.iter_mut().for_each(|v| *v += bk);
        }
    }
}

/// Writes the column-major `[rows, cols]` matrix `src` into `dst` row-major, eight columns at
/// a time so that every write fills a cache line (one column at a time, consecutive writes
/// land `cols` values apart).
fn to_row_major(src: &[f64], rows: usize, cols: usize, dst: &mut [f64]) {
    const TILE: usize = 8;
    for j0 in (0..cols).step_by(TILE) {
        let tile = TILE.min(cols - j0);
        for i in 0..rows {
            for (k, o) in dst[i * cols + j0..i * cols + j0 + tile].iter_mut().enumerate() {
                *o = src[(j0 + k) * rows + i];
            }
        }
    }
}

/// Threads a product may use: the size of the pool faer would use (`RAYON_NUM_THREADS` or the
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

    /// Runs the head over row-major features `[n, d]`, every dropout off, and calls
    /// `f(row_offset, hidden, logits)` per block of rows, `hidden` `[rows, d]` (`act(dense(h))`,
    /// `h` itself for kind `linear`; empty unless `with_hidden`) and `logits` `[rows, C]`, both
    /// row-major.
    pub(crate) fn forward_blocks(&self, features: &[f32], with_hidden: bool, mut f: impl FnMut(usize, &[f64], &[f64])) {
        let (d, c) = (self.dim, self.num_classes);
        let n = features.len() / d.max(1);
        let (mut hidden_cm, mut hidden_rm, mut logits, mut logits_rm) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            let block = &features[start * d..(start + rows) * d];
            match (self.kind, &self.dense_weight) {
                (ClassifierKind::Mlp, Some(w)) => {
                    let xv: Vec<f64> = block.iter().map(|&v| f64::from(v)).collect();
                    let x = MatRef::from_row_major_slice(&xv, rows, d);
                    hidden_cm.resize(rows * d, 0.0);
                    linear(x, w, self.dense_bias.as_deref(), d, &mut hidden_cm);
                    self.activation.apply_in_place(&mut hidden_cm);
                    let hidden = MatRef::from_column_major_slice(&hidden_cm, rows, d);
                    logits.resize(rows * c, 0.0);
                    linear(hidden, &self.out_weight, self.out_bias.as_deref(), c, &mut logits);
                    logits_rm.resize(rows * c, 0.0);
                    to_row_major(&logits, rows, c, &mut logits_rm);
                    if with_hidden {
                        hidden_rm.resize(rows * d, 0.0);
                        to_row_major(&hidden_cm, rows, d, &mut hidden_rm);
                    }
                }
                _ => {
                    // A few outputs per row: dot products on the f32 rows as they are.
                    logits_rm.resize(rows * c, 0.0);
                    crate::simd::row_dots(crate::simd::RowDots {
                        x: block,
                        w: &self.out_weight,
                        dim: d,
                        out: &mut logits_rm,
                    });
                    if let Some(b) = &self.out_bias {
                        for row in logits_rm.chunks_exact_mut(c.max(1)) {
                            row.iter_mut().zip(b).for_each(|(v, bk)| *v += bk);
                        }
                    }
                    if with_hidden {
                        hidden_rm.clear();
                        hidden_rm.extend(block.iter().map(|&v| f64::from(v)));
                    }
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

    /// The logits the textbook way: row by row, in f64.
    fn naive(c: &Classifier, features: &[f32]) -> Vec<f64> {
        let (d, k) = (c.dim, c.num_classes);
        let mut out = Vec::new();
        for x in features.chunks_exact(d) {
            let h: Vec<f64> = match (&c.dense_weight, &c.dense_bias) {
                (Some(w), Some(b)) => (0..d)
                    .map(|o| {
                        let z: f64 = (0..d).map(|i| f64::from(w[o * d + i]) * f64::from(x[i])).sum();
                        libm::tanh(z + f64::from(b[o]))
                    })
                    .collect(),
                _ => x.iter().map(|&v| f64::from(v)).collect(),
            };
            for o in 0..k {
                let z: f64 = (0..d).map(|i| f64::from(c.out_weight[o * d + i]) * h[i]).sum();
                out.push(z + c.out_bias.as_ref().map_or(0.0, |b| f64::from(b[o])));
            }
        }
        out
    }

    #[test]
    fn batches_give_the_textbook_logits() {
        // A 256-wide mlp head on 600 rows (~40M multiply–adds: faer's parallel kernels) and a
        // linear head (the dot-product kernel), whole and row by row.
        for (kind, d, c) in [(ClassifierKind::Mlp, 256, 3), (ClassifierKind::Linear, 300, 6)] {
            let n = 600;
            let mut rng = Xoshiro256::new(11, d as u64);
            let mut draw = |k: usize, s: f64| -> Vec<f32> { (0..k).map(|_| ((rng.unit() - 0.5) * s) as f32).collect() };
            let mlp = kind == ClassifierKind::Mlp;
            let classifier = Classifier {
                kind,
                activation: if mlp { Activation::Tanh } else { Activation::None },
                dense_weight: mlp.then(|| draw(d * d, 0.3)),
                dense_bias: mlp.then(|| draw(d, 0.2)),
                out_weight: draw(c * d, 0.5),
                out_bias: Some(draw(c, 0.2)),
                dim: d,
                num_classes: c,
            };
            let features = draw(n * d, 2.0);
            let head = HostHead::new(&classifier);
            let want = naive(&classifier, &features);
            let all = head.logits(&features);
            let mut blocks = 0;
            head.forward_blocks(&features, true, |_, h, z| {
                assert_eq!((h.len(), z.len()), (n * d, n * c));
                blocks += 1;
            });
            assert_eq!(blocks, 1);
            for i in 0..n {
                let one = (i % 37 == 0).then(|| head.logits(&features[i * d..(i + 1) * d]));
                for k in 0..c {
                    let w = want[i * c + k];
                    assert!(
                        (all[i * c + k] - w).abs() <= 1e-12 * (1.0 + w.abs()),
                        "{kind:?} row {i}"
                    );
                    if let Some(one) = &one {
                        assert!((one[k] - w).abs() <= 1e-12 * (1.0 + w.abs()), "{kind:?} row {i} alone");
                    }
                }
            }
        }
    }
}
