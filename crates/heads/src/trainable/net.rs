//! The head as a burn model, and its training loss.
//!
//! `HeadNetConfig::init` builds a [`HeadNet`] from parameter tensors (a copy of the classifier,
//! or the current weights during training); `HeadNet::forward` is the classifier's forward pass
//! with the reference's dropout placement; [`scores`] and [`loss`] turn logits into `u` and the
//! loss `BCE(u, e) + α·mean((u − anchor)²) + β·Σ‖θ − θ_init‖²`.

use burn::tensor::module::linear;
use burn::tensor::{FloatDType, Int, Tensor};

use super::score::Method;
use ueb_cache::{Activation, ClassifierKind};

/// The architecture of a head (what the parameter tensors mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadNetConfig {
    /// `mlp` (dense → act → out_proj) or `linear` (out_proj).
    pub kind: ClassifierKind,
    /// Activation after `dense` (mlp only).
    pub activation: Activation,
}

/// Which parameter a tensor of a [`ParamSet`] holds. On the device every tensor is rank 2:
/// weights in burn's `[in, out]` layout, biases as `[1, out]` rows, so one code path (Adam,
/// L2-SP) serves all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// `dense.weight`, device `[d, d]` (= PyTorch `[out, in]` transposed).
    DenseWeight,
    /// `dense.bias`, device `[1, d]`.
    DenseBias,
    /// `out_proj.weight`, device `[d, C]`.
    OutWeight,
    /// `out_proj.bias`, device `[1, C]`.
    OutBias,
}

impl Slot {
    /// The PyTorch name (the safetensors key).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Slot::DenseWeight => "dense.weight",
            Slot::DenseBias => "dense.bias",
            Slot::OutWeight => "out_proj.weight",
            Slot::OutBias => "out_proj.bias",
        }
    }
}

/// The parameter tensors of a head, in the fixed order dense.weight, dense.bias,
/// out_proj.weight, out_proj.bias (absent ones skipped).
pub(crate) type ParamSet = Vec<(Slot, Tensor<2>)>;

/// One affine layer: weight `[in, out]` (burn's layout), bias `[out]`.
#[derive(Debug, Clone)]
struct Affine {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Affine {
    /// Shapes: `x` `[B, in]` → `[B, out]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(x, self.weight.clone(), self.bias.clone())
    }
}

/// A head ready to run: the classifier's layers over the given parameter tensors. The layers
/// hold the tensors themselves (not burn `Param`s): during training they are fresh autodiff
/// leaves every step, and the optimiser is ours (`trainer.rs`).
#[derive(Debug)]
pub(crate) struct HeadNet {
    dense: Option<Affine>,
    out_proj: Affine,
    activation: Activation,
}

/// A bias row `[1, n]` as the `[n]` vector `linear` adds.
fn bias(b: Option<Tensor<2>>) -> Option<Tensor<1>> {
    b.map(|b| {
        let [_, n] = b.dims();
        b.reshape([n])
    })
}

impl HeadNetConfig {
    /// The head over `params` (autodiff leaves during training, plain tensors for evaluation).
    pub(crate) fn init(&self, params: &ParamSet) -> HeadNet {
        let get = |slot: Slot| params.iter().find(|(s, _)| *s == slot).map(|(_, t)| t.clone());
        let dense = match (self.kind, get(Slot::DenseWeight)) {
            (ClassifierKind::Mlp, Some(weight)) => Some(Affine {
                weight,
                bias: bias(get(Slot::DenseBias)),
            }),
            _ => None,
        };
        // `ParamSet`s are built by this module with an out_proj.weight; an empty one would be a
        // bug, and a zero-width weight keeps that bug visible as a shape error.
        let weight = get(Slot::OutWeight).unwrap_or_else(|| Tensor::zeros([0, 0], &params[0].1.device()));
        HeadNet {
            dense,
            out_proj: Affine {
                weight,
                bias: bias(get(Slot::OutBias)),
            },
            activation: self.activation,
        }
    }
}

/// Dropout masks of one batch: `0` or `1/(1 − p)` per element (PyTorch's inverted dropout).
pub(crate) struct DropoutMasks {
    /// Before `dense` (mlp) or before `out_proj` (linear), `[B, d]`.
    pub input: Tensor<2>,
    /// Between the activation and `out_proj` (mlp only), `[B, d]`.
    pub hidden: Option<Tensor<2>>,
}

impl HeadNet {
    /// Logits of a batch.
    ///
    /// Shapes: `x` `[B, d]` → `[B, C]`. With masks, the reference's classification head:
    /// dropout → dense → act → dropout → out_proj (kind `mlp`), dropout → out_proj (kind
    /// `linear` with a non-zero dropout).
    pub(crate) fn forward(&self, x: Tensor<2>, masks: Option<&DropoutMasks>) -> Tensor<2> {
        let x = match masks {
            Some(m) => x * m.input.clone(),
            None => x,
        };
        let h = match &self.dense {
            Some(dense) => {
                let h = dense.forward(x);
                let h = match self.activation {
                    Activation::Tanh => tanh_once(h),
                    Activation::Gelu => ueb_kernels::burn_ops::gelu_exact(h),
                    Activation::None => h,
                };
                match masks.and_then(|m| m.hidden.as_ref()) {
                    Some(m) => h * m.clone(),
                    None => h,
                }
            }
            None => x,
        };
        self.out_proj.forward(h)
    }
}

/// `tanh`, evaluated once per element also when the tensor is tracked.
///
/// burn 0.22.1's autodiff `tanh` checkpoints its input and evaluates `tanh` again in the
/// backward pass to form `1 − y²`; on the CPU backends `tanh` is a scalar libm call per element,
/// and the two passes were a large share of a training step (decision T23). Here `y`
/// and `k = 1 − y²` are computed once, off the graph, and the tracked value is
/// `(h − detach(h))·k + y`: its forward value is exactly `y` (`h − h = 0` for finite `h`) and
/// its gradient `grad·k`, the same operations in the same order as burn's `Tanh` backward
/// (`mul(grad, add_scalar(neg(y·y), 1))`), so losses and gradients are unchanged to the bit.
/// An infinite pre-activation (a run that has already diverged) gives NaN instead of ±1.
///
/// Shapes: any → same.
fn tanh_once<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    // Untracked tensors (evaluation) have no backward pass to save.
    if !h.is_tracked() {
        return h.tanh();
    }
    let y = h.clone().detach().tanh();
    let k = (y.clone() * y.clone()).neg().add_scalar(1.0);
    let frozen = h.clone().detach();
    (h - frozen) * k + y
}

/// The score `u` of every row of logits `z`, in the cancellation-free form of `score.rs`.
///
/// Shapes: `z` `[B, C]` → `[B]`. `dtype` is the float type of the run (for the class mask).
pub(crate) fn scores(method: Method, z: Tensor<2>, lambda: f64, dtype: FloatDType) -> Tensor<1> {
    // Scalars enter as `mul_scalar(1/x)`, never `div_scalar(x)`: burn 0.22.1's autodiff
    // differentiates `div_scalar` with the scalar rounded to f32 (1e-8 relative error in every
    // gradient, visible in f64 training).
    let [b, c] = z.dims();
    // The arg-max is a constant of the step (piecewise differentiable, like PyTorch's max).
    let a: Tensor<2, Int> = z.clone().detach().argmax(1); // [B, 1]
    let za = z.clone().gather(1, a.clone()); // [B, 1]
    let d = za - z; // [B, C], ≥ 0, exactly 0 at the arg-max (with zero gradient there)
    // 1 off the arg-max, 0 on it: the sums below run over i ≠ a without subtracting the 1.
    let other = a.reshape([b]).one_hot::<2>(c).cast(dtype).neg().add_scalar(1.0); // [B, C]
    let ex = d.clone().neg().exp(); // e_i = exp(z_i − z_a)
    let e_other = ex.clone() * other.clone();
    let s = e_other.clone().sum_dim(1); // [B, 1]
    let denom = s.clone().add_scalar(1.0);
    let u = match method {
        Method::Alien => {
            let h = s.log1p() + (d * e_other).sum_dim(1) / denom;
            h.mul_scalar(1.0 / (c as f64).ln())
        }
        Method::Adue => {
            let one_minus_pa = s / denom.clone();
            // p_a − p_i = (1 − e_i)/(1 + s); T = log1p(Σ_{i≠a} exp(−λ(p_a − p_i)))/λ.
            let gap = ex.neg().add_scalar(1.0) / denom;
            let t = (gap.mul_scalar(-lambda).exp() * other)
                .sum_dim(1)
                .log1p()
                .mul_scalar(1.0 / lambda);
            (one_minus_pa - t).mul_scalar(1.0 / (1.0 - 1.0 / c as f64))
        }
    };
    let eps = method.clamp();
    // In f32, 1 − ε (ε = 1e-8 or 1e-9) rounds to 1.0, where log(1 − u) is −∞ and its gradient
    // NaN; the largest f32 below 1 keeps the BCE finite (decision T10).
    let upper = if dtype == FloatDType::F64 {
        1.0 - eps
    } else {
        f64::from(1.0f32 - f32::EPSILON / 2.0)
    };
    u.clamp(eps, upper).reshape([b])
}

/// The three loss terms and their weighted sum, as device scalars `[1]` (`l2sp` off the
/// graph).
pub(crate) struct LossTensors {
    /// `BCE(u, e)`, mean over the batch, logs floored at −100 as PyTorch's `BCELoss`.
    pub bce: Tensor<1>,
    /// `mean((u − anchor)²)`.
    pub reg: Tensor<1>,
    /// `Σ_{params} Σ (θ − θ_init)²` (a plain sum, not a mean).
    pub l2sp: Tensor<1>,
    /// `bce + α·reg + β·l2sp`.
    pub total: Tensor<1>,
}

/// The L2-SP distance `Σ_{params} Σ (θ − θ_init)²` of `params` to `init` (same slots, same
/// order) and the differences `θ − θ_init`, on plain tensors: off the autodiff graph.
///
/// Its gradient, `2β(θ − θ_init)`, is added to the graph's by [`l2sp_gradient`]. Through
/// autodiff the term cost a `d × d` ones tensor, three products and two sums per weight
/// matrix and step (the sum's and the square's backward passes), each in a fresh buffer.
pub(crate) fn l2sp(params: &ParamSet, init: &ParamSet) -> (Option<Tensor<1>>, Vec<Tensor<2>>) {
    let mut l2sp: Option<Tensor<1>> = None;
    let mut diffs = Vec::with_capacity(params.len());
    for ((_, p), (_, p0)) in params.iter().zip(init) {
        let dp = p.clone() - p0.clone();
        let term = (dp.clone() * dp.clone()).sum();
        l2sp = Some(match l2sp {
            Some(acc) => acc + term,
            None => term,
        });
        diffs.push(dp);
    }
    (l2sp, diffs)
}

/// `∂(β·l2sp)/∂θ` for `dp = θ − θ_init`, formed as burn's autodiff formed it when the term was
/// on the graph (the sum's backward pass hands β to both factors of `dp·dp`, and the two
/// products are added), so that the total gradient keeps its bits: `β·dp + β·dp`.
///
/// Shapes: any → same.
pub(crate) fn l2sp_gradient<const D: usize>(dp: Tensor<D>, beta: f64) -> Tensor<D> {
    let half = dp.mul_scalar(beta);
    half.clone() + half
}

/// The loss of scores `u` `[B]` against errors `e` `[B]` (0/1) and anchors `[B]`, with the
/// L2-SP distance `l2sp` `[1]` already computed by [`l2sp`] (a constant of the graph: its
/// gradient is added by [`l2sp_gradient`]).
pub(crate) fn loss(
    u: Tensor<1>,
    e: Tensor<1>,
    anchor: Tensor<1>,
    l2sp: Tensor<1>,
    alpha: f64,
    beta: f64,
) -> LossTensors {
    let log_u = u.clone().log().clamp_min(-100.0);
    let log_1mu = u.clone().neg().add_scalar(1.0).log().clamp_min(-100.0);
    let not_e = e.clone().neg().add_scalar(1.0);
    let bce = (e * log_u + not_e * log_1mu).mean().neg();
    let diff = u - anchor;
    let reg = (diff.clone() * diff).mean();
    let total = bce.clone() + reg.clone().mul_scalar(alpha) + l2sp.clone().mul_scalar(beta);
    LossTensors { bce, reg, l2sp, total }
}
