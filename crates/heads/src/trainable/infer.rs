//! Inference on the host: the head's forward pass in f64 with faer's matrix product (weights
//! widened once, when the head is built), then the score in f64 (`score.rs`). No burn device is
//! involved, so a loaded head scores anywhere, and its scores do not depend on the device it was
//! trained on.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::cache::{Activation, Classifier, ClassifierKind};

/// Rows per block (bounds the f64 scratch to `BLOCK_ROWS · d` values).
const BLOCK_ROWS: usize = 4096;
/// Multiply–adds per product below which one thread is faster than waking the pool.
const PARALLEL_WORK: usize = 1 << 22;

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

/// The activation in f64 with the pure-Rust `libm` functions: the same bits on every platform,
/// and `tanh` about 10× faster than this machine's glibc on typical pre-activations (20 vs
/// 190 ns, measured), which made it the bottleneck of a 768-wide head.
fn activate(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Tanh => libm::tanh(x),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)),
        Activation::None => x,
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `out[rows, n_out] = x[rows, n_in] · Wᵀ + b` with `W` in PyTorch layout `[n_out, n_in]`.
fn linear(x: &[f64], rows: usize, w: &[f64], b: Option<&[f64]>, n_in: usize, n_out: usize, out: &mut [f64]) {
    let lhs = MatRef::from_row_major_slice(x, rows, n_in);
    let rhs = MatRef::from_row_major_slice(w, n_out, n_in).transpose();
    let par = if rows * n_in * n_out >= PARALLEL_WORK {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    let dst = MatMut::from_row_major_slice_mut(out, rows, n_out);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0f64, par);
    if let Some(b) = b {
        for row in out.chunks_exact_mut(n_out) {
            for (v, bk) in row.iter_mut().zip(b) {
                *v += bk;
            }
        }
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

    /// The logits `[n, C]` (row-major) of row-major features `[n, d]`, every dropout off:
    /// `out_proj(act(dense(h)))` for kind `mlp`, `out_proj(h)` for kind `linear`.
    pub(crate) fn logits(&self, features: &[f32]) -> Vec<f64> {
        let (d, c) = (self.dim, self.num_classes);
        let n = features.len() / d.max(1);
        let mut out = vec![0.0f64; n * c];
        let (mut x, mut hidden) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            x.clear();
            x.extend(features[start * d..(start + rows) * d].iter().map(|&v| f64::from(v)));
            let dst = &mut out[start * c..(start + rows) * c];
            match (self.kind, &self.dense_weight) {
                (ClassifierKind::Mlp, Some(w)) => {
                    hidden.resize(rows * d, 0.0);
                    linear(&x, rows, w, self.dense_bias.as_deref(), d, d, &mut hidden);
                    for v in &mut hidden {
                        *v = activate(self.activation, *v);
                    }
                    linear(&hidden, rows, &self.out_weight, self.out_bias.as_deref(), d, c, dst);
                }
                _ => linear(&x, rows, &self.out_weight, self.out_bias.as_deref(), d, c, dst),
            }
            start += rows;
        }
        out
    }
}
