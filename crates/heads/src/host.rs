//! A classifier's forward pass on the host, in f64: dot products on the saved f32 weights for
//! small batches and linear heads, matrix products (the `gemm` crate's) on weights widened once (when the
//! head is built) for larger batches of `mlp` heads (or on the f32 weights as they are, with
//! [`ScorePrecision::F32`]), and the vectorised activations of `simd.rs`. The trainable heads
//! score through it, the cache checks its logits with it, and the Mahalanobis heads' `dense`
//! features come from it. No burn device is involved, so a loaded head scores anywhere, and its
//! scores do not depend on the device it was trained on.

use std::cell::Cell;

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};

use crate::cache::{Activation, Classifier, ClassifierKind};
use crate::gemm::{Element, Operand, ShapeError};
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
/// Multiply–adds from which a rectangular product is one call to the `gemm` crate split over
/// the pool inside (it packs the left factor once, where each block packs it again): level
/// with the blocks at 128 × 768 × 768 on the build machine, 10–30% faster at d = 4096.
const WHOLE_WORK: usize = 1 << 25;
/// Multiply–adds from which a triangular product is faer's parallel triangular product: at
/// 128 × 4096 × 4096 it took 6.1–6.2 ms against 8.3–8.4 ms in blocks; at 32 × 4096 × 4096
/// (≈ 2²⁸) the two were level, and below it the blocks were faster (128 × 768 × 768:
/// 0.26–0.32 ms against 0.29–0.38 ms for f32).
const WHOLE_TRIANGULAR_WORK: usize = 1 << 28;

/// How [`product`] runs: one sequential call, column blocks on the pool, or one call split
/// inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Sequential,
    Blocks,
    Whole,
}

impl Split {
    /// The split for `work` multiply–adds.
    fn of(work: usize, lower: bool) -> Self {
        let whole = if lower { WHOLE_TRIANGULAR_WORK } else { WHOLE_WORK };
        if work >= whole {
            Self::Whole
        } else if work >= PARALLEL_WORK && threads() > 1 {
            Self::Blocks
        } else {
            Self::Sequential
        }
    }
}

/// A head's weights, in PyTorch layout, ready for repeated forward passes: the f32 values as
/// saved (streamed by the dot kernel for small batches, and the operands of f32 products) and,
/// for `mlp` heads scoring in f64, copies widened to f64 once (the products of larger batches).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostHead {
    kind: ClassifierKind,
    activation: Activation,
    dim: usize,
    num_classes: usize,
    dense_weight: Option<Vec<f32>>,
    dense_weight_wide: Option<Vec<f64>>,
    dense_bias: Option<Vec<f64>>,
    /// The f32 bias as saved, for the f32 dense layer of [`ScorePrecision::F32`].
    dense_bias_narrow: Option<Vec<f32>>,
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

/// `out = x · rhs`, column-major `[n, m]`, for `x` `[n, k]` (any strides with one of them 1)
/// and `rhs` column-major `[k, m]`, which is also a PyTorch weight `[m, k]` (row-major) taken
/// as `Wᵀ`. With `lower`, `rhs` is square and lower-triangular, and its upper triangle is never
/// read.
///
/// The rectangular products are the `gemm` crate's: at 32–128 × 768 × 768 and 32 × 4096 × 4096
/// they ran 10–25% faster than faer's on the build machine, in f32 and f64. Small products are
/// one sequential call, large ones (from [`WHOLE_WORK`]) one call split over the pool inside.
/// Between the two the columns are cut into fixed blocks, each one sequential product, that
/// the rayon pool's threads take: independent blocks need no synchronisation inside the
/// product. For a triangular factor, block `[a, b)` is `x[:, a..b]·F[a..b, a..b]`, faer's
/// triangular product, plus `x[:, b..]·F[b.., a..b]`, a rectangular one; from
/// [`WHOLE_TRIANGULAR_WORK`] the whole product is faer's parallel triangular one.
///
/// # Errors
/// Operands that do not fit their buffers (an internal error: the callers take the shapes from
/// the head's own dimensions).
pub(crate) fn product<T: Element + ComplexField>(
    x: Operand<'_, T>,
    rhs: &[T],
    m: usize,
    lower: bool,
    out: &mut [T],
) -> Result<(), ShapeError> {
    let (n, k) = (x.rows, x.cols);
    let work = if lower { n * k * (k + 1) / 2 } else { n * k * m };
    product_split(Split::of(work, lower), x, rhs, m, lower, out)
}

/// [`product`] with the split given.
fn product_split<T: Element + ComplexField>(
    split: Split,
    x: Operand<'_, T>,
    rhs: &[T],
    m: usize,
    lower: bool,
    out: &mut [T],
) -> Result<(), ShapeError> {
    use rayon::prelude::*;
    let (n, k) = (x.rows, x.cols);
    let shape_error = ShapeError {
        m: n,
        k,
        rhs_rows: k,
        n: m,
    };
    let fits = x.col_stride == 1 || x.row_stride == 1;
    if !fits || rhs.len() < k * m || out.len() < n * m || (lower && k != m) {
        return Err(shape_error);
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    let rhs = &rhs[..k * m];
    let out = &mut out[..n * m];
    // x[:, from..] and, as a faer view, x[:, from..from + cols].
    let x_from = |from: usize| Operand {
        data: x.data.get(from * x.col_stride..).unwrap_or_default(),
        cols: k - from,
        ..x
    };
    let faer_view = |from: usize, cols: usize| -> Result<MatRef<'_, T>, ShapeError> {
        let v = x_from(from);
        let reach = if v.rows == 0 || cols == 0 {
            0
        } else {
            (v.rows - 1) * v.row_stride + (cols - 1) * v.col_stride + 1
        };
        if reach > v.data.len() {
            return Err(shape_error.clone());
        }
        Ok(if v.col_stride == 1 {
            MatRef::from_row_major_slice_with_stride(v.data, n, cols, v.row_stride)
        } else {
            MatRef::from_column_major_slice_with_stride(v.data, n, cols, v.col_stride)
        })
    };
    // Columns [a, a + dst.len() / n) of the product into `dst` (column-major).
    let block = |a: usize, dst: &mut [T], parallel: bool| -> Result<(), ShapeError> {
        let cols = dst.len() / n;
        let below = if lower { a + cols } else { 0 };
        if lower {
            triangular::matmul(
                MatMut::from_column_major_slice_mut(dst, n, cols),
                BlockStructure::Rectangular,
                Accum::Replace,
                faer_view(a, cols)?,
                BlockStructure::Rectangular,
                MatRef::from_column_major_slice(rhs, k, m).submatrix(a, a, cols, cols),
                BlockStructure::TriangularLower,
                T::ONE,
                if parallel { Par::rayon(0) } else { Par::Seq },
            );
        }
        if below < k {
            // dstᵀ `[cols, n]` (row-major) = F[below.., a..]ᵀ · x[:, below..]ᵀ.
            let f = Operand {
                data: rhs.get(a * k + below..).unwrap_or_default(),
                rows: cols,
                cols: k - below,
                row_stride: k,
                col_stride: 1,
            };
            crate::gemm::matmul(dst, n, f, x_from(below).t(), T::ONE, lower, parallel)?;
        }
        Ok(())
    };
    match split {
        Split::Sequential => block(0, out, false),
        Split::Whole => block(0, out, true),
        Split::Blocks => {
            let width = if lower { TRIANGULAR_BLOCK } else { PRODUCT_BLOCK };
            out.par_chunks_mut(n * width)
                .enumerate()
                .try_for_each(|(i, dst)| block(i * width, dst, false))
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

/// The buffers of [`HostHead::forward_blocks`], kept between its calls on a thread (up to
/// [`SCRATCH_KEPT_BYTES`]): allocating and zeroing the 1.2 MB of a 128-row batch at d = 768
/// afresh, and writing to memory that is not in the cache, cost ~25 µs per buffer and call on
/// the build machine. Every value a call reads it has written first.
#[derive(Debug, Default)]
struct Scratch {
    hidden_cm: Vec<f64>,
    hidden_rm: Vec<f64>,
    logits: Vec<f64>,
    logits_rm: Vec<f64>,
    narrow: Vec<f32>,
    wide_block: Vec<f64>,
}

impl Scratch {
    /// The bytes the buffers hold.
    fn bytes(&self) -> usize {
        let wide = self.hidden_cm.capacity()
            + self.hidden_rm.capacity()
            + self.logits.capacity()
            + self.logits_rm.capacity()
            + self.wide_block.capacity();
        wide * 8 + self.narrow.capacity() * 4
    }
}

/// The most bytes of [`Scratch`] a thread keeps between calls: enough for batches of a few
/// hundred rows at d = 768 (the buffers of a large split's 4096-row blocks are freed).
const SCRATCH_KEPT_BYTES: usize = 16 << 20;

thread_local! {
    /// This thread's [`Scratch`]; a call takes it (a nested call finds it empty and allocates).
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
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
            dense_bias_narrow: c.dense_bias.clone().filter(|_| !wide),
            out_weight: c.out_weight.clone(),
            out_weight_wide: crate::simd::widen(&c.out_weight),
            out_bias: c.out_bias.as_deref().map(crate::simd::widen),
        }
    }

    /// Runs the head over row-major features `[n, d]`, every dropout off, and calls
    /// `f(row_offset, hidden, logits)` per block of rows, `hidden` `[rows, d]` (`act(dense(h))`,
    /// `h` itself for kind `linear`; empty unless `with_hidden`) and `logits` `[rows, C]`, both
    /// row-major.
    ///
    /// # Errors
    /// Weights that do not fit the head's dimensions (see [`product`]).
    pub(crate) fn forward_blocks(
        &self,
        features: &[f32],
        with_hidden: bool,
        mut f: impl FnMut(usize, &[f64], &[f64]),
    ) -> Result<(), ShapeError> {
        let (d, c) = (self.dim, self.num_classes);
        let n = features.len() / d.max(1);
        if self.dense_bias.as_ref().is_some_and(|b| b.len() != d) {
            return Err(ShapeError {
                m: n,
                k: d,
                rhs_rows: d,
                n: d,
            });
        }
        let mut scratch = SCRATCH.with(Cell::take);
        let Scratch {
            hidden_cm,
            hidden_rm,
            logits,
            logits_rm,
            narrow,
            wide_block,
        } = &mut scratch;
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            let block = &features[start * d..(start + rows) * d];
            logits_rm.resize(rows * c, 0.0);
            if !with_hidden {
                // What an earlier call on this thread left there.
                hidden_rm.clear();
            }
            match (self.kind, &self.dense_weight, &self.dense_weight_wide) {
                (ClassifierKind::Mlp, Some(w), _) if rows <= DOT_ROWS => {
                    hidden_rm.resize(rows * d, 0.0);
                    crate::simd::row_dots(block, w, d, hidden_rm);
                    add_bias_rows(hidden_rm, self.dense_bias.as_deref());
                    self.activation.apply_in_place(hidden_rm);
                    crate::simd::row_dots(hidden_rm, &self.out_weight, d, logits_rm);
                }
                (ClassifierKind::Mlp, Some(w32), wide) => {
                    hidden_cm.resize(rows * d, 0.0);
                    let bias = self.dense_bias.as_deref();
                    match wide {
                        Some(w) => {
                            wide_block.resize(rows * d, 0.0);
                            crate::simd::widen_to(block, wide_block);
                            product(Operand::rows(wide_block, rows, d, d), w, d, false, hidden_cm)?;
                            crate::simd::dense_epilogue(rows, bias, self.activation, hidden_cm);
                        }
                        None => {
                            // The dense layer in f32 (ScorePrecision::F32): product, bias and
                            // activation, widened for the rest of the pass.
                            narrow.resize(rows * d, 0.0);
                            product(Operand::rows(block, rows, d, d), w32, d, false, narrow)?;
                            let bias = self.dense_bias_narrow.as_deref();
                            crate::simd::dense_epilogue_f32(narrow, rows, bias, self.activation, hidden_cm);
                        }
                    }
                    // `hidden_cm` column-major `[rows, d]`: the transpose of a row-major `[d, rows]`.
                    let hidden = Operand::rows(hidden_cm, d, rows, rows).t();
                    logits.resize(rows * c, 0.0);
                    product(hidden, &self.out_weight_wide, c, false, logits)?;
                    to_row_major(logits, rows, c, logits_rm);
                    if with_hidden {
                        hidden_rm.resize(rows * d, 0.0);
                        to_row_major(hidden_cm, rows, d, hidden_rm);
                    }
                }
                _ => {
                    // A few outputs per row: dot products on the f32 rows as they are.
                    crate::simd::row_dots(block, &self.out_weight, d, logits_rm);
                    if with_hidden {
                        hidden_rm.resize(rows * d, 0.0);
                        crate::simd::widen_to(block, hidden_rm);
                    }
                }
            }
            add_bias_rows(logits_rm, self.out_bias.as_deref());
            f(start, hidden_rm, logits_rm);
            start += rows;
        }
        if scratch.bytes() <= SCRATCH_KEPT_BYTES {
            SCRATCH.with(|kept| kept.set(scratch));
        }
        // The product kernels leave the upper vector state dirty; the caller's libm calls would pay.
        crate::simd::clear_upper_state();
        Ok(())
    }

    /// The logits `[n, C]` (row-major) of row-major features `[n, d]`, every dropout off:
    /// `out_proj(act(dense(h)))` for kind `mlp`, `out_proj(h)` for kind `linear`.
    ///
    /// # Errors
    /// As [`HostHead::forward_blocks`].
    pub(crate) fn logits(&self, features: &[f32]) -> Result<Vec<f64>, ShapeError> {
        let mut out = Vec::with_capacity(features.len() / self.dim.max(1) * self.num_classes);
        self.forward_blocks(features, false, |_, _, z| out.extend_from_slice(z))?;
        Ok(out)
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
    fn every_split_of_a_product_gives_the_textbook_product() {
        // d = 300: three triangular blocks and two rectangular ones, the last ones partial. Every
        // split runs on row-major, column-major and row-strided left operands, in f64 and f32.
        let d = 300;
        let mut rng = Xoshiro256::new(5, 300);
        let f: Vec<f64> = (0..d * d).map(|_| rng.unit() - 0.5).collect();
        let n = 9;
        let x: Vec<f64> = (0..n * d).map(|_| rng.unit() - 0.5).collect();
        let x_cm = transpose(&x, n, d);
        // Rows 3 values apart beyond their d: a row stride of d + 3.
        let x_padded: Vec<f64> = x
            .chunks_exact(d)
            .flat_map(|r| r.iter().copied().chain([f64::NAN; 3]))
            .collect();
        let views = [
            ("row-major", Operand::rows(&x, n, d, d)),
            ("column-major", Operand::rows(&x_cm, d, n, n).t()),
            ("strided", Operand::rows(&x_padded, n, d, d + 3)),
        ];
        for split in [Split::Sequential, Split::Blocks, Split::Whole] {
            for lower in [false, true] {
                // Column-major `f`; a lower factor's upper triangle holds NaN, which must never be read.
                let rhs: Vec<f64> = (0..d * d)
                    .map(|e| if lower && e % d < e / d { f64::NAN } else { f[e] })
                    .collect();
                // want[j·n + i] = Σ_{k ≥ from} x[i, k]·f[k, j], column-major like the product.
                let want: Vec<f64> = (0..n * d)
                    .map(|e| {
                        let (i, j) = (e % n, e / n);
                        let from = if lower { j } else { 0 };
                        (from..d).map(|k| x[i * d + k] * f[j * d + k]).sum()
                    })
                    .collect();
                for (name, xv) in views {
                    let mut out = vec![f64::NAN; n * d];
                    product_split(split, xv, &rhs, d, lower, &mut out).unwrap();
                    for (e, (got, want)) in out.iter().zip(&want).enumerate() {
                        let case = format!("{split:?} lower {lower} {name} ({}, {})", e % n, e / n);
                        assert!((got - want).abs() <= 1e-12, "{case}: {got} vs {want}");
                    }
                }
                let (x32, rhs32) = (crate::simd::narrow(&x), crate::simd::narrow(&rhs));
                let mut out32 = vec![f32::NAN; n * d];
                product_split(split, Operand::rows(&x32, n, d, d), &rhs32, d, lower, &mut out32).unwrap();
                for (e, (got, want)) in out32.iter().zip(&want).enumerate() {
                    let case = format!("{split:?} lower {lower} f32 ({}, {})", e % n, e / n);
                    assert!((f64::from(*got) - want).abs() <= 1e-4, "{case}: {got} vs {want}");
                }
            }
        }
        // Operands too short for their shapes are errors, not reads out of bounds.
        let mut out = vec![0.0; n * d];
        assert!(product(Operand::rows(&x[..n * d - 1], n, d, d), &f, d, false, &mut out).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f[..d * d - 1], d, false, &mut out).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f, d, false, &mut out[..n * d - 1]).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f[..d * (d - 1)], d - 1, true, &mut out).is_err());
    }

    #[test]
    fn batches_give_the_textbook_logits() {
        // A 256-wide mlp head on 600 rows (~40M multiply–adds: one parallel product) and a
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
            let narrow = HostHead::with_precision(&classifier, ScorePrecision::F32)
                .logits(&features)
                .unwrap();
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
            let all = head.logits(&features).unwrap();
            let mut blocks = 0;
            head.forward_blocks(&features, true, |_, h, z| {
                assert_eq!((h.len(), z.len()), (n * d, n * c));
                blocks += 1;
            })
            .unwrap();
            assert_eq!(blocks, 1);
            // Slices of 2, 3 and 4 rows (the dot kernel's tiles for an mlp head) against the whole.
            for (start, len) in [(10, 2), (20, 3), (30, 4), (40, 5)] {
                let part = head.logits(&features[start * d..(start + len) * d]).unwrap();
                for (e, v) in part.iter().enumerate() {
                    let w = want[start * c + e];
                    assert!((v - w).abs() <= 1e-12 * (1.0 + w.abs()), "{kind:?} rows {start}+{len}");
                }
            }
            for i in 0..n {
                let one = (i % 37 == 0).then(|| head.logits(&features[i * d..(i + 1) * d]).unwrap());
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
