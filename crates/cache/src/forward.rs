//! A classifier's forward pass on the host, in f64: dot products on the saved f32 weights for
//! small batches and linear heads, matrix products (the `gemm` crate's, through
//! [`ueb_kernels::product`]) on weights widened once (when the pass is built) for larger
//! batches of `mlp` heads (or on the f32 weights as they are, with [`ScorePrecision::F32`]),
//! and the vectorised activations of [`ueb_kernels::elem`]. The cache checks its logits with
//! it, and the heads score through it. No burn device is involved, so a loaded head scores
//! anywhere, and its scores do not depend on the device it was trained on.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use ueb_kernels::gemm::{Operand, ShapeError};
use ueb_kernels::product::product;
use ueb_kernels::{convert, dense, dots};

use crate::classifier::Classifier;
use crate::meta::{Activation, ClassifierKind};

/// The arithmetic of the matrix products that dominate scoring: an `mlp` head's `dense` layer
/// (`adue`, `alien`, and `features: dense` of the Mahalanobis heads) and the Mahalanobis
/// factor. Everything else (the output layer, distances, the score) is f64 in both. Written
/// `score_precision: f64 | f32` in a head's settings and saved with the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScorePrecision {
    /// f64 products of the f32 weights and features (the default): a trainable head at
    /// initialisation scores the model's own entropy to the rounding of the stored logits.
    #[default]
    F64,
    /// f32 operands (the Mahalanobis factor rounded to f32 once; weights and features are f32
    /// already) and, for batches of 5 rows or more, f32 sums, as PyTorch float32 computes
    /// them; there an `mlp` head's whole `dense` layer is f32, bias and activation included
    /// (`tanh` in f32 arithmetic; GELU is the f64 function rounded), as in PyTorch float32.
    /// About twice the throughput where the products are compute-bound (large batches), and
    /// scores that move by ~1e-6 relative. Batches of up to 4 rows keep f64 sums and an f64
    /// activation: they are memory-bound, and f32 arithmetic would gain nothing there.
    F32,
}

impl ScorePrecision {
    /// Whether this is the default, f64 (saved heads leave the default out, so that older
    /// readers still load them).
    pub fn is_f64(&self) -> bool {
        *self == ScorePrecision::F64
    }
}

/// Rows per block (bounds the f64 scratch to a few `BLOCK_ROWS · d` values).
const BLOCK_ROWS: usize = 4096;
/// Batches up to this many rows run an `mlp` head through [`dots::row_dots`] on the f32
/// weights: the product then streams the weights once, and f32 halves the bytes (decision T14).
const DOT_ROWS: usize = 4;

/// A classifier's weights, in PyTorch layout, ready for repeated forward passes: the f32 values as
/// saved (streamed by the dot kernel for small batches, and the operands of f32 products) and,
/// for `mlp` heads scoring in f64, copies widened to f64 once (the products of larger batches).
#[derive(Debug, Clone, PartialEq)]
pub struct HostClassifier {
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

/// The buffers of [`HostClassifier::forward_blocks`], kept between its calls on a thread (up to
/// [`SCRATCH_KEPT_BYTES`]): allocating and zeroing a batch's buffers afresh on every call, and
/// writing to memory that is not in the cache, cost more than the dense layer's epilogue
/// (decision T15). Every value a call reads it has written first.
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

impl HostClassifier {
    /// The head of a classifier's weights, scoring in f64.
    pub fn new(c: &Classifier) -> Self {
        Self::with_precision(c, ScorePrecision::F64)
    }

    /// The head of a classifier's weights, its products in `precision`.
    pub fn with_precision(c: &Classifier, precision: ScorePrecision) -> Self {
        let wide = precision == ScorePrecision::F64;
        Self {
            kind: c.kind,
            activation: c.activation,
            dim: c.dim,
            num_classes: c.num_classes,
            dense_weight: c.dense_weight.clone(),
            dense_weight_wide: c.dense_weight.as_deref().filter(|_| wide).map(convert::widen),
            dense_bias: c.dense_bias.as_deref().map(convert::widen),
            dense_bias_narrow: c.dense_bias.clone().filter(|_| !wide),
            out_weight: c.out_weight.clone(),
            out_weight_wide: convert::widen(&c.out_weight),
            out_bias: c.out_bias.as_deref().map(convert::widen),
        }
    }

    /// Runs the head over row-major features `[n, d]`, every dropout off, and calls
    /// `f(row_offset, hidden, logits)` per block of rows, `hidden` `[rows, d]` (`act(dense(h))`,
    /// `h` itself for kind `linear`; empty unless `with_hidden`) and `logits` `[rows, C]`, both
    /// row-major.
    ///
    /// # Errors
    /// Weights that do not fit the head's dimensions (see [`product`]).
    pub fn forward_blocks(
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
                    dots::row_dots(block, w, d, hidden_rm);
                    add_bias_rows(hidden_rm, self.dense_bias.as_deref());
                    self.activation.apply_in_place(hidden_rm);
                    dots::row_dots(hidden_rm, &self.out_weight, d, logits_rm);
                }
                (ClassifierKind::Mlp, Some(w32), wide) => {
                    hidden_cm.resize(rows * d, 0.0);
                    let bias = self.dense_bias.as_deref();
                    match wide {
                        Some(w) => {
                            wide_block.resize(rows * d, 0.0);
                            convert::widen_to(block, wide_block);
                            product(Operand::rows(wide_block, rows, d, d), w, d, false, hidden_cm)?;
                            dense::dense_epilogue(rows, bias, self.activation, hidden_cm);
                        }
                        None => {
                            // The dense layer in f32 (ScorePrecision::F32): product, bias and
                            // activation, widened for the rest of the pass.
                            narrow.resize(rows * d, 0.0);
                            product(Operand::rows(block, rows, d, d), w32, d, false, narrow)?;
                            let bias = self.dense_bias_narrow.as_deref();
                            dense::dense_epilogue_f32(narrow, rows, bias, self.activation, hidden_cm);
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
                    dots::row_dots(block, &self.out_weight, d, logits_rm);
                    if with_hidden {
                        hidden_rm.resize(rows * d, 0.0);
                        convert::widen_to(block, hidden_rm);
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
        ueb_kernels::clear_upper_state();
        Ok(())
    }

    /// The logits `[n, C]` (row-major) of row-major features `[n, d]`, every dropout off:
    /// `out_proj(act(dense(h)))` for kind `mlp`, `out_proj(h)` for kind `linear`.
    ///
    /// # Errors
    /// As [`HostClassifier::forward_blocks`].
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f64>, ShapeError> {
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
            let head = HostClassifier::new(&classifier);
            let want = naive(&classifier, &features);
            // f32 sums in the dense product: within float32 rounding, and not the f64 logits.
            let narrow = HostClassifier::with_precision(&classifier, ScorePrecision::F32)
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
