//! A classifier's forward pass on the host, in f64: dot products on the saved f32 weights for
//! small batches and linear heads, faer's matrix products on weights widened once (when the
//! head is built) for larger batches of `mlp` heads (or on the f32 weights as they are, with
//! [`ScorePrecision::F32`]), and the vectorised activations of `simd.rs`. The trainable heads
//! score through it, the cache checks its logits with it, and the Mahalanobis heads' `dense`
//! features come from it. No burn device is involved, so a loaded head scores anywhere, and its
//! scores do not depend on the device it was trained on.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::reborrow::ReborrowMut;
use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};

use crate::cache::{Activation, Classifier, ClassifierKind};
use crate::head::ScorePrecision;

/// Rows per block (bounds the f64 scratch to a few `BLOCK_ROWS · d` values).
const BLOCK_ROWS: usize = 4096;
/// Batches up to this many rows run an `mlp` head through [`crate::simd::row_dots`] on the f32
/// weights: the product then streams the weights once, and f32 halves the bytes (a 768-wide
/// `dense` is 2.4 MB, read in ~40 µs, against ~80 µs for a widened copy).
const DOT_ROWS: usize = 4;
/// Columns per task of [`product`] with a rectangular right factor: 192 splits a 768-wide
/// product into four equal tasks (two per core), and blocks of 128–384 columns ran within 10%
/// of each other on the build machine.
const PRODUCT_BLOCK: usize = 192;
/// Columns per task with a lower-triangular right factor: the tasks' work falls from the first
/// block to the last, so more, narrower ones balance the threads.
const TRIANGULAR_BLOCK: usize = 128;
/// Multiply–adds from which [`product`] hands blocks to the rayon pool (~25 µs of one core's
/// work, several times a task's start-up).
const PARALLEL_WORK: usize = 1 << 21;
/// Multiply–adds from which faer's own parallel product (one call, split inside) ran as fast
/// as the blocks or faster on the build machine (128 × 768 × 768: 1.34–1.62 ms against
/// 1.56–1.75 ms, interleaved runs), without packing the left factor once per block.
const FAER_PARALLEL_WORK: usize = 1 << 25;

/// A head's weights, in PyTorch layout, ready for repeated forward passes: the f32 values as
/// saved (streamed by the dot kernel for small batches, and the operands of f32 products) and,
/// for `mlp` heads scoring in f64, copies widened to f64 once (faer's products for larger
/// batches).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostHead {
    kind: ClassifierKind,
    activation: Activation,
    dim: usize,
    num_classes: usize,
    dense_weight: Option<Vec<f32>>,
    dense_weight_wide: Option<Vec<f64>>,
    dense_bias: Option<Vec<f64>>,
    out_weight: Vec<f32>,
    out_weight_wide: Vec<f64>,
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

/// `out = x · rhs`, column-major `[n, m]`, for `x` `[n, k]` and `rhs` `[k, m]` (any layouts);
/// with `lower`, `rhs` is square and lower-triangular, and its upper triangle is never read.
///
/// Small products are one sequential faer call and large ones (from [`FAER_PARALLEL_WORK`])
/// one parallel call. Between the two, where faer's parallel split does not pay, the columns
/// are cut into fixed blocks, each one sequential faer product (for a triangular factor, block
/// `[a, b)` is `x[:, a..b]·F[a..b, a..b]`, triangular, plus `x[:, b..]·F[b.., a..b]`), that the
/// rayon pool's threads take: independent blocks need no synchronisation inside the product.
/// On the build machine (2 cores), scoring a 32-row batch with a 768-wide `mlp` head took
/// 0.37–0.44 ms this way against 0.55–0.96 ms with the product on one core.
pub(crate) fn product<T: ComplexField + Copy>(x: MatRef<'_, T>, rhs: MatRef<'_, T>, lower: bool, out: &mut [T]) {
    use rayon::prelude::*;
    let (n, k, m) = (x.nrows(), x.ncols(), rhs.ncols());
    if n == 0 || m == 0 {
        return;
    }
    let width = if lower { TRIANGULAR_BLOCK } else { PRODUCT_BLOCK };
    let work = if lower { n * k * (k + 1) / 2 } else { n * k * m };
    let one = T::one_impl();
    let run = |(i, dst): (usize, &mut [T])| {
        let (a, cols) = (i * width, dst.len() / n);
        let mut dst = MatMut::from_column_major_slice_mut(dst, n, cols);
        if lower {
            let b = a + cols;
            triangular::matmul(
                dst.rb_mut(),
                BlockStructure::Rectangular,
                Accum::Replace,
                x.subcols(a, cols),
                BlockStructure::Rectangular,
                rhs.submatrix(a, a, cols, cols),
                BlockStructure::TriangularLower,
                one,
                Par::Seq,
            );
            if b < k {
                matmul(
                    dst,
                    Accum::Add,
                    x.subcols(b, k - b),
                    rhs.submatrix(b, a, k - b, cols),
                    one,
                    Par::Seq,
                );
            }
        } else {
            matmul(dst, Accum::Replace, x, rhs.subcols(a, cols), one, Par::Seq);
        }
    };
    let out = &mut out[..n * m];
    if !(PARALLEL_WORK..FAER_PARALLEL_WORK).contains(&work) || threads() == 1 {
        let par = if work >= FAER_PARALLEL_WORK {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let dst = MatMut::from_column_major_slice_mut(out, n, m);
        if lower {
            triangular::matmul(
                dst,
                BlockStructure::Rectangular,
                Accum::Replace,
                x,
                BlockStructure::Rectangular,
                rhs,
                BlockStructure::TriangularLower,
                one,
                par,
            );
        } else {
            matmul(dst, Accum::Replace, x, rhs, one, par);
        }
    } else {
        out.par_chunks_mut(n * width).enumerate().for_each(run);
    }
}

/// `out = x · Wᵀ` with `x` `[rows, n_in]` (any layout), `out` `[rows, n_out]` column-major and
/// `W` in PyTorch layout `[n_out, n_in]`, row-major, so that `Wᵀ` is column-major. A row-major
/// destination would make faer transpose the product and pack all of `W` on every call (2×
/// slower for a batch of 32 at d = 768).
fn linear<T: ComplexField + Copy>(x: MatRef<'_, T>, w: &[T], n_out: usize, out: &mut [T]) {
    let rhs = MatRef::from_row_major_slice(w, n_out, x.ncols()).transpose();
    product(x, rhs, false, out);
}

/// Adds `b[k]` to column `k` of the column-major `out` `[rows, b.len()]`.
fn add_bias_columns(out: &mut [f64], rows: usize, b: Option<&[f64]>) {
    if let Some(b) = b {
        for (col, bk) in out.chunks_exact_mut(rows.max(1)).zip(b) {
            col.iter_mut().for_each(|v| *v += bk);
        }
    }
}

/// Adds `b` to every row of the row-major `out` `[rows, b.len()]`.
fn add_bias_rows(out: &mut [f64], b: Option<&[f64]>) {
    if let Some(b) = b {
        for row in out.chunks_exact_mut(b.len().max(1)) {
            row.iter_mut().zip(b).for_each(|(v, bk)| *v += bk);
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
    /// The head of a classifier's weights, scoring in f64.
    pub(crate) fn new(c: &Classifier) -> Self {
        Self::with_precision(c, ScorePrecision::F64)
    }

    /// The head of a classifier's weights, its products in `precision`.
    pub(crate) fn with_precision(c: &Classifier, precision: ScorePrecision) -> Self {
        let wide = precision == ScorePrecision::F64;
        Self {
            kind: c.kind,
            activation: c.activation,
            dim: c.dim,
            num_classes: c.num_classes,
            dense_weight: c.dense_weight.clone(),
            dense_weight_wide: c.dense_weight.as_deref().filter(|_| wide).map(crate::simd::widen),
            dense_bias: c.dense_bias.as_deref().map(crate::simd::widen),
            out_weight: c.out_weight.clone(),
            out_weight_wide: crate::simd::widen(&c.out_weight),
            out_bias: c.out_bias.as_deref().map(crate::simd::widen),
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
        let mut narrow = Vec::<f32>::new();
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            let block = &features[start * d..(start + rows) * d];
            logits_rm.resize(rows * c, 0.0);
            match (self.kind, &self.dense_weight, &self.dense_weight_wide) {
                (ClassifierKind::Mlp, Some(w), _) if rows <= DOT_ROWS => {
                    hidden_rm.resize(rows * d, 0.0);
                    crate::simd::row_dots(block, w, d, &mut hidden_rm);
                    add_bias_rows(&mut hidden_rm, self.dense_bias.as_deref());
                    self.activation.apply_in_place(&mut hidden_rm);
                    crate::simd::row_dots(&hidden_rm, &self.out_weight, d, &mut logits_rm);
                }
                (ClassifierKind::Mlp, Some(w32), wide) => {
                    hidden_cm.resize(rows * d, 0.0);
                    match wide {
                        Some(w) => {
                            let xv = crate::simd::widen(block);
                            linear(MatRef::from_row_major_slice(&xv, rows, d), w, d, &mut hidden_cm);
                        }
                        None => {
                            // f32 sums (ScorePrecision::F32), widened for the rest of the pass.
                            narrow.resize(rows * d, 0.0);
                            linear(MatRef::from_row_major_slice(block, rows, d), w32, d, &mut narrow);
                            crate::simd::widen_to(&narrow, &mut hidden_cm);
                        }
                    }
                    add_bias_columns(&mut hidden_cm, rows, self.dense_bias.as_deref());
                    self.activation.apply_in_place(&mut hidden_cm);
                    let hidden = MatRef::from_column_major_slice(&hidden_cm, rows, d);
                    logits.resize(rows * c, 0.0);
                    linear(hidden, &self.out_weight_wide, c, &mut logits);
                    to_row_major(&logits, rows, c, &mut logits_rm);
                    if with_hidden {
                        hidden_rm.resize(rows * d, 0.0);
                        to_row_major(&hidden_cm, rows, d, &mut hidden_rm);
                    }
                }
                _ => {
                    // A few outputs per row: dot products on the f32 rows as they are.
                    crate::simd::row_dots(block, &self.out_weight, d, &mut logits_rm);
                    if with_hidden {
                        hidden_rm = crate::simd::widen(block);
                    }
                }
            }
            add_bias_rows(&mut logits_rm, self.out_bias.as_deref());
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
    fn blocked_products_equal_the_textbook_product() {
        // d = 300: three triangular blocks and two rectangular ones, the last ones partial;
        // 5 rows run the blocks in turn, 100 rows on the pool.
        let d = 300;
        let mut rng = Xoshiro256::new(5, 300);
        let f: Vec<f64> = (0..d * d).map(|_| rng.unit() - 0.5).collect();
        for n in [5, 100] {
            let x: Vec<f64> = (0..n * d).map(|_| rng.unit() - 0.5).collect();
            let xm = MatRef::from_row_major_slice(&x, n, d);
            for lower in [false, true] {
                // Column-major `f`; a lower factor's upper triangle holds NaN, which must never be read.
                let rhs: Vec<f64> = (0..d * d)
                    .map(|e| if lower && e % d < e / d { f64::NAN } else { f[e] })
                    .collect();
                let mut out = vec![f64::NAN; n * d];
                product(xm, MatRef::from_column_major_slice(&rhs, d, d), lower, &mut out);
                for i in 0..n {
                    for j in 0..d {
                        let from = if lower { j } else { 0 };
                        let want: f64 = (from..d).map(|k| x[i * d + k] * f[j * d + k]).sum();
                        let got = out[j * n + i];
                        assert!(
                            (got - want).abs() <= 1e-12,
                            "n {n} lower {lower} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
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
            // f32 sums in the dense product: within float32 rounding, and not the f64 logits.
            let narrow = HostHead::with_precision(&classifier, ScorePrecision::F32).logits(&features);
            let off = narrow
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
                .fold(0.0, f64::max);
            assert!(off <= 1e-5, "{kind:?}: f32 products off by {off:e}");
            assert_eq!(
                off > 1e-12,
                mlp,
                "{kind:?}: f32 products change only an mlp's dense layer"
            );
            let all = head.logits(&features);
            let mut blocks = 0;
            head.forward_blocks(&features, true, |_, h, z| {
                assert_eq!((h.len(), z.len()), (n * d, n * c));
                blocks += 1;
            });
            assert_eq!(blocks, 1);
            // Slices of 2, 3 and 4 rows (the dot kernel's tiles for an mlp head) against the whole.
            for (start, len) in [(10, 2), (20, 3), (30, 4), (40, 5)] {
                let part = head.logits(&features[start * d..(start + len) * d]);
                for (e, v) in part.iter().enumerate() {
                    let w = want[start * c + e];
                    assert!((v - w).abs() <= 1e-12 * (1.0 + w.abs()), "{kind:?} rows {start}+{len}");
                }
            }
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
