//! Training on the host: the head's forward pass, the loss, its gradients by hand and Adam's
//! update, with the `gemm` crate's products and one fused pass per element-wise stage. A CPU
//! device (flex, ndarray) trains here unless the configuration asks for burn (`engine: burn`);
//! every other device trains through burn's autodiff (`trainer.rs`), which stays the reference
//! definition and is tested against the same PyTorch fixtures.
//!
//! Why not burn on the CPU: burn 0.22's CPU backends run every element-wise operation of the
//! forward pass, of its autodiff backward pass and of Adam as its own pass over a fresh buffer;
//! in a profile of the `alien` fit those passes, not the products, were the time
//! (decision T17). Here a step is two products of the `d × d` weight's size (the
//! forward pass and `∂W_dense`; the input needs no gradient), two small ones for `out_proj`,
//! and a few fused passes.
//!
//! The computation is the one `net.rs` builds on the device, operation for operation where the
//! order matters for rounding (the products and the element-wise stages in the training
//! precision `T`); the score, its gradient and the loss of each row are computed in f64 from
//! the logits (`score.rs`); Adam's update runs in `T`, with the burn engine's operations in
//! its order.
//! Dropout masks are the trainer's, drawn from the same generator in the same order as on a
//! burn device, so both engines see the same masks for a seed.

use rayon::prelude::*;

use super::net::Slot;
use super::score::Method;
use super::trainer::{HeadParams, LossTerms};
use ueb_cache::{Activation, Classifier, ClassifierKind};
use ueb_kernels::gemm::{Element, Operand, ShapeError, matmul};
use ueb_kernels::product::transpose;
use ueb_kernels::{Arch, Simd, WithSimd};

/// Multiply–adds from which a product is split over the thread pool (about 8 rows of a
/// 768-wide dense layer; below, waking the pool costs more than the second core brings).
const PARALLEL_MACS: usize = 1 << 22;
/// Parameters per Adam task on the thread pool.
const ADAM_CHUNK: usize = 1 << 15;
/// Rows per block when computing logits for evaluation.
const EVAL_BLOCK: usize = 1024;

/// A head's parameters on the host in the training precision, in the device layout of
/// [`Slot`] (weights `[in, out]`, row-major: the products' right operands are then contiguous,
/// which the matrix kernels pack fastest), in the fixed slot order of `net.rs` (absent slots
/// skipped).
pub(crate) type HostSet<T> = Vec<(Slot, Vec<T>)>;

/// The parameters of a classifier as a [`HostSet`] in `T`.
pub(crate) fn host_set<T: Element>(c: &Classifier) -> HostSet<T> {
    let conv = |v: &[f32]| v.iter().map(|&x| T::from_f32(x)).collect::<Vec<T>>();
    let (d, k) = (c.dim, c.num_classes);
    let mut set = Vec::with_capacity(4);
    if let (ClassifierKind::Mlp, Some(w)) = (c.kind, &c.dense_weight) {
        set.push((Slot::DenseWeight, transpose(&conv(w), d, d)));
        if let Some(b) = &c.dense_bias {
            set.push((Slot::DenseBias, conv(b)));
        }
    }
    set.push((Slot::OutWeight, transpose(&conv(&c.out_weight), k, d)));
    if let Some(b) = &c.out_bias {
        set.push((Slot::OutBias, conv(b)));
    }
    set
}

/// A [`HostSet`] of a head of width `d` with `k` classes, widened to f64 in PyTorch layout (as
/// [`HeadParams`] holds it).
pub(crate) fn to_head_params<T: Element>(set: &HostSet<T>, d: usize, k: usize) -> HeadParams {
    let slots = set.iter().map(|(slot, v)| {
        let shape = match slot {
            Slot::DenseWeight => [d, d],
            Slot::DenseBias => [1, d],
            Slot::OutWeight => [d, k],
            Slot::OutBias => [1, k],
        };
        Ok::<_, std::convert::Infallible>((*slot, v.iter().map(|x| x.to_f64()).collect(), shape))
    });
    match HeadParams::from_slots(slots) {
        Ok(params) => params,
        Err(never) => match never {},
    }
}

/// One step's dropout masks (`0` or `1/(1 − p)` rounded to f32, as on a burn device), `[B, d]`
/// row-major: before `dense` (or `out_proj` for kind `linear`), and between the activation and
/// `out_proj` (kind `mlp`).
pub(crate) struct HostMasks {
    /// The input mask.
    pub input: Vec<f32>,
    /// The hidden mask (kind `mlp`).
    pub hidden: Option<Vec<f32>>,
}

/// A batch's targets: errors (0/1) and anchors, one each per row.
pub(crate) struct Targets<'a> {
    /// Whether the model erred on the row.
    pub errors: &'a [bool],
    /// The anchor of the row (`u_SR` or the normalised entropy of the original logits).
    pub anchors: &'a [f64],
}

/// The weights of the loss and of the score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LossWeights {
    /// λ of SmoothMax (AdUE).
    pub lambda: f64,
    /// α, the anchor term's weight.
    pub alpha: f64,
    /// β, the L2-SP term's weight.
    pub beta: f64,
}

/// Adam's settings for one step (`beta1` changes from step to step when it cycles).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adam {
    /// This step's learning rate.
    pub lr: f64,
    /// This step's `beta1`.
    pub beta1: f64,
    /// `beta2`.
    pub beta2: f64,
    /// `eps`.
    pub eps: f64,
}

/// Adam's constants for one step.
#[derive(Debug, Clone, Copy)]
struct AdamStep {
    /// This step's `beta1`.
    pub beta1: f64,
    /// `beta2`.
    pub beta2: f64,
    /// `eps`.
    pub eps: f64,
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f64,
    /// `√(1 − β2ᵗ)`.
    pub bias2_sqrt: f64,
}

/// Buffers of one step, kept between steps (a step allocates nothing once they have grown).
#[derive(Debug, Default)]
struct Scratch<T> {
    /// The masked input `[B, d]`.
    xm: Vec<T>,
    /// The dense layer's output, then the activation's, then the masked hidden state `[B, d]`.
    hidden: Vec<T>,
    /// The activation's derivative times the hidden mask `[B, d]`.
    slope: Vec<T>,
    /// Logits `[B, C]`, then `∂L/∂z`.
    z: Vec<T>,
    /// `∂L/∂hidden`, then `∂L/∂(dense output)` `[B, d]`.
    dh: Vec<T>,
    /// The activation's input in f64 (the vectorised f64 activations).
    wide: Vec<f64>,
    /// Gradients, one buffer per parameter (slot order).
    grads: Vec<Vec<T>>,
}

/// A head being trained on the host in precision `T` (f32 or f64).
#[derive(Debug)]
pub(crate) struct HostTrainer<T: Element> {
    method: Method,
    kind: ClassifierKind,
    activation: Activation,
    dim: usize,
    classes: usize,
    params: HostSet<T>,
    init: HostSet<T>,
    exp_avg: Vec<Vec<T>>,
    exp_avg_sq: Vec<Vec<T>>,
    steps: u64,
    scratch: Scratch<T>,
}

/// `out = x·W (+ b)` for row-major `x` `[rows, n_in]` and `W` `[n_in, n_out]`, `out`
/// `[rows, n_out]`.
fn affine<T: Element>(
    x: &[T],
    rows: usize,
    w: &[T],
    b: Option<&[T]>,
    n_in: usize,
    n_out: usize,
    out: &mut Vec<T>,
) -> Result<(), ShapeError> {
    out.resize(rows * n_out, T::ZERO);
    let parallel = rows * n_in * n_out >= PARALLEL_MACS;
    matmul(
        out,
        n_out,
        Operand::rows(x, rows, n_in, n_in),
        Operand::rows(w, n_in, n_out, n_out),
        T::ONE,
        false,
        parallel,
    )?;
    if let Some(b) = b {
        for row in out.chunks_exact_mut(n_out) {
            row.iter_mut().zip(b).for_each(|(v, &bk)| *v = *v + bk);
        }
    }
    Ok(())
}

/// The activation's value and derivative at every `wide[i]` (f64), rounded to `T`:
/// `y = act(x)` into `value`, `act'(x)·mask` into `slope` (`mask` 1 without dropout). tanh's
/// derivative is formed from the rounded `y` as `1 − y·y` in `T`, as burn's `Tanh` backward
/// forms it.
struct ActivationPass<'a, T> {
    activation: Activation,
    wide: &'a mut [f64],
    value: &'a mut [T],
    slope: &'a mut [T],
}

impl<T: Element> WithSimd for ActivationPass<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        match self.activation {
            Activation::Tanh => {
                for w in self.wide.iter_mut() {
                    *w = ueb_kernels::elem::tanh(*w);
                }
                for ((y, k), &w) in self.value.iter_mut().zip(self.slope.iter_mut()).zip(self.wide.iter()) {
                    *y = T::from_f64(w);
                    *k = T::ONE - *y * *y;
                }
            }
            Activation::Gelu => {
                for ((y, k), &x) in self.value.iter_mut().zip(self.slope.iter_mut()).zip(self.wide.iter()) {
                    *y = T::from_f64(ueb_kernels::elem::gelu(x));
                    *k = T::from_f64(gelu_derivative(x));
                }
            }
            Activation::None => {
                for ((y, k), &x) in self.value.iter_mut().zip(self.slope.iter_mut()).zip(self.wide.iter()) {
                    *y = T::from_f64(x);
                    *k = T::ONE;
                }
            }
        }
    }
}

/// `d/dx [x·Φ(x)] = Φ(x) + x·φ(x)` (the exact-erf GELU), in f64 with libm.
fn gelu_derivative(x: f64) -> f64 {
    let cdf = 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
    let pdf = (-0.5 * x * x).exp() * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    cdf + x * pdf
}

/// Adam's update of one chunk of a parameter, with the L2-SP gradient added to the graph's:
/// the operations of the burn engine's update (`trainer.rs`), in the same order and in `T`
/// (scalars rounded to `T` first, as burn's `mul_scalar` rounds them): `g ← g + (β·dp + β·dp)`
/// with `dp = θ − θ_init`, then PyTorch's single-tensor Adam, `m ← m + (g − m)·(1 − β1)`,
/// `v ← v·β2 + g·g·(1 − β2)`, `θ ← θ − (m/(√v/√(1 − β2ᵗ) + eps))·step_size`.
struct AdamPass<'a, T> {
    theta: &'a mut [T],
    m: &'a mut [T],
    v: &'a mut [T],
    grad: &'a [T],
    init: &'a [T],
    beta: f64,
    at: AdamStep,
}

impl<T: Element> WithSimd for AdamPass<'_, T> {
    /// `Σ (θ − θ_init)²` of the chunk before the update, in f64.
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> f64 {
        let at = self.at;
        let beta = T::from_f64(self.beta);
        let one_minus_beta1 = T::from_f64(1.0 - at.beta1);
        let beta2 = T::from_f64(at.beta2);
        let one_minus_beta2 = T::from_f64(1.0 - at.beta2);
        let bias2_sqrt = T::from_f64(at.bias2_sqrt);
        let eps = T::from_f64(at.eps);
        let step_size = T::from_f64(at.step_size);
        let mut l2sp = 0.0f64;
        for ((((p, m), v), &g), &p0) in self
            .theta
            .iter_mut()
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
            .zip(self.grad)
            .zip(self.init)
        {
            let dp = *p - p0;
            let wide = dp.to_f64();
            l2sp += wide * wide;
            let half = dp * beta;
            let g = g + (half + half);
            *m = *m + (g - *m) * one_minus_beta1;
            *v = *v * beta2 + g * g * one_minus_beta2;
            let denom = v.sqrt() / bias2_sqrt + eps;
            *p = *p - (*m / denom) * step_size;
        }
        l2sp
    }
}

/// The loss terms and their weighted sum.
fn terms(bce: f64, reg: f64, l2sp: f64, w: LossWeights) -> LossTerms {
    LossTerms {
        bce,
        reg,
        l2sp,
        total: bce + w.alpha * reg + w.beta * l2sp,
    }
}

impl<T: Element> HostTrainer<T> {
    /// A trainer starting at `start`, anchored (L2-SP) to `init` (checked by the caller: same
    /// architecture, well-formed).
    pub(crate) fn new(method: Method, start: &Classifier, init: &Classifier) -> Self {
        let params = host_set::<T>(start);
        let zeros = |set: &HostSet<T>| set.iter().map(|(_, v)| vec![T::ZERO; v.len()]).collect::<Vec<_>>();
        Self {
            method,
            kind: start.kind,
            activation: start.activation,
            dim: start.dim,
            classes: start.num_classes,
            exp_avg: zeros(&params),
            exp_avg_sq: zeros(&params),
            init: host_set::<T>(init),
            params,
            steps: 0,
            scratch: Scratch::default(),
        }
    }

    fn param(&self, slot: Slot) -> Option<&[T]> {
        self.params.iter().find(|(s, _)| *s == slot).map(|(_, v)| v.as_slice())
    }

    /// Whether the head has a dense layer (kind `mlp`).
    fn mlp(&self) -> bool {
        self.kind == ClassifierKind::Mlp && self.param(Slot::DenseWeight).is_some()
    }

    /// The forward pass of the `rows` rows `x` (f32, row-major `[B, d]`) into the scratch:
    /// `xm`, `hidden` (the masked activation, mlp), `slope` (its derivative times the mask)
    /// and the logits `z`.
    fn forward(&mut self, x: &[f32], rows: usize, masks: Option<&HostMasks>) -> Result<(), ShapeError> {
        let (d, c) = (self.dim, self.classes);
        let mlp = self.mlp();
        let mut sc = std::mem::take(&mut self.scratch);
        sc.xm.clear();
        match masks {
            // The product in T, as `x * mask` on the device.
            Some(m) => sc
                .xm
                .extend(x.iter().zip(&m.input).map(|(&v, &k)| T::from_f32(v) * T::from_f32(k))),
            None => sc.xm.extend(x.iter().map(|&v| T::from_f32(v))),
        }
        let out_w = self.param(Slot::OutWeight).unwrap_or_default();
        let out_b = self.param(Slot::OutBias);
        let result = if mlp {
            let w = self.param(Slot::DenseWeight).unwrap_or_default();
            let b = self.param(Slot::DenseBias);
            affine(&sc.xm, rows, w, b, d, d, &mut sc.hidden).and_then(|()| {
                sc.wide.clear();
                sc.wide.extend(sc.hidden.iter().map(|v| v.to_f64()));
                sc.slope.resize(rows * d, T::ZERO);
                Arch::new().dispatch(ActivationPass {
                    activation: self.activation,
                    wide: &mut sc.wide,
                    value: &mut sc.hidden,
                    slope: &mut sc.slope,
                });
                if let Some(mask) = masks.and_then(|m| m.hidden.as_ref()) {
                    for ((h, k), &mk) in sc.hidden.iter_mut().zip(sc.slope.iter_mut()).zip(mask) {
                        let mk = T::from_f32(mk);
                        *h = *h * mk;
                        *k = *k * mk;
                    }
                }
                affine(&sc.hidden, rows, out_w, out_b, d, c, &mut sc.z)
            })
        } else {
            affine(&sc.xm, rows, out_w, out_b, d, c, &mut sc.z)
        };
        self.scratch = sc;
        result
    }

    /// `Σ_params Σ (θ − θ_init)²`, in f64.
    fn l2sp(&self) -> f64 {
        self.params
            .iter()
            .zip(&self.init)
            .map(|((_, p), (_, p0))| {
                p.iter()
                    .zip(p0)
                    .map(|(a, b)| {
                        let dp = a.to_f64() - b.to_f64();
                        dp * dp
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    /// The BCE and anchor terms of the logits in the scratch against `t`, and `∂L/∂z` in their
    /// place (the L2-SP term and its gradient are the update's, or
    /// [`Self::loss_and_gradients`]'s).
    fn loss(&mut self, t: &Targets<'_>, w: LossWeights) -> (f64, f64) {
        let c = self.classes;
        let rows = t.errors.len();
        let eps = self.method.clamp();
        // The clamp in T: on the device, `1 − ε` rounds to 1 in f32, so the bound is the
        // largest f32 below 1 there (`net.rs`).
        let lower = T::from_f64(eps).to_f64();
        let upper = (1.0 - eps).min(1.0 - T::UNIT_ROUNDOFF);
        let inv_b = 1.0 / rows as f64;
        let (mut bce, mut reg) = (0.0f64, 0.0f64);
        let mut zr = vec![0.0f64; c];
        let mut gr = vec![0.0f64; c];
        for (r, row) in self.scratch.z.chunks_exact_mut(c).enumerate() {
            for (zi, v) in zr.iter_mut().zip(row.iter()) {
                *zi = v.to_f64();
            }
            let raw = self.method.score_with_gradient(&zr, w.lambda, &mut gr);
            // clamp's gradient is 1 inside the bounds and 0 outside, as burn's `clamp`.
            let (u, inside) = if raw < lower {
                (lower, false)
            } else if raw > upper {
                (upper, false)
            } else {
                (raw, true)
            };
            let e = if t.errors[r] { 1.0 } else { 0.0 };
            let (ln_u, ln_1mu) = (u.ln(), (1.0 - u).ln());
            // PyTorch's BCELoss floors each log at −100 (no gradient through the floor).
            let (lu, l1) = (ln_u.max(-100.0), ln_1mu.max(-100.0));
            bce -= e * lu + (1.0 - e) * l1;
            let diff = u - t.anchors[r];
            reg += diff * diff;
            let mut du = 0.0;
            if ln_u > -100.0 {
                du -= e / u;
            }
            if ln_1mu > -100.0 {
                du += (1.0 - e) / (1.0 - u);
            }
            du = (du + w.alpha * 2.0 * diff) * inv_b;
            for (v, g) in row.iter_mut().zip(&gr) {
                *v = T::from_f64(if inside { du * g } else { 0.0 });
            }
        }
        (bce * inv_b, reg * inv_b)
    }

    /// The graph's gradients (without L2-SP) from `∂L/∂z` in the scratch, into `scratch.grads`
    /// (slot order).
    fn backward(&mut self, rows: usize) -> Result<(), ShapeError> {
        let (d, c) = (self.dim, self.classes);
        let mlp = self.mlp();
        let mut sc = std::mem::take(&mut self.scratch);
        sc.grads.resize_with(self.params.len(), Vec::new);
        let h_in: &[T] = if mlp { &sc.hidden } else { &sc.xm };
        let result = (|| {
            for (k, (slot, p)) in self.params.iter().enumerate() {
                let g = &mut sc.grads[k];
                g.resize(p.len(), T::ZERO);
                match slot {
                    // ∂W_out = hᵀ·∂z `[d, C]`.
                    Slot::OutWeight => matmul(
                        g,
                        c,
                        Operand::rows(h_in, rows, d, d).t(),
                        Operand::rows(&sc.z, rows, c, c),
                        T::ONE,
                        false,
                        rows * c * d >= PARALLEL_MACS,
                    )?,
                    Slot::OutBias => column_sums(&sc.z, c, g),
                    Slot::DenseWeight | Slot::DenseBias => {}
                }
            }
            if mlp {
                let out_w = self.param(Slot::OutWeight).unwrap_or_default();
                // ∂h = ∂z·W_out `[B, d]`, then through the mask and the activation.
                sc.dh.resize(rows * d, T::ZERO);
                matmul(
                    &mut sc.dh,
                    d,
                    Operand::rows(&sc.z, rows, c, c),
                    Operand::rows(out_w, d, c, c).t(),
                    T::ONE,
                    false,
                    rows * c * d >= PARALLEL_MACS,
                )?;
                for (g, &k) in sc.dh.iter_mut().zip(&sc.slope) {
                    *g = *g * k;
                }
                for (k, (slot, _)) in self.params.iter().enumerate() {
                    let g = &mut sc.grads[k];
                    match slot {
                        // ∂W_dense = x_maskedᵀ·∂h `[d, d]`.
                        Slot::DenseWeight => matmul(
                            g,
                            d,
                            Operand::rows(&sc.xm, rows, d, d).t(),
                            Operand::rows(&sc.dh, rows, d, d),
                            T::ONE,
                            false,
                            rows * d * d >= PARALLEL_MACS,
                        )?,
                        Slot::DenseBias => column_sums(&sc.dh, d, g),
                        Slot::OutWeight | Slot::OutBias => {}
                    }
                }
            }
            Ok(())
        })();
        self.scratch = sc;
        result
    }

    /// One Adam step on the batch `x` (row-major `[B, d]`, f32) with `masks`; returns the
    /// batch's loss before the update.
    ///
    /// # Errors
    /// Only an internal shape error of a product.
    pub(crate) fn step(
        &mut self,
        x: &[f32],
        t: &Targets<'_>,
        masks: Option<&HostMasks>,
        w: LossWeights,
        adam: Adam,
    ) -> Result<LossTerms, ShapeError> {
        let rows = t.errors.len();
        self.forward(x, rows, masks)?;
        let (bce, reg) = self.loss(t, w);
        self.backward(rows)?;
        self.steps += 1;
        let steps = self.steps as f64;
        let at = AdamStep {
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            step_size: adam.lr / (1.0 - adam.beta1.powf(steps)),
            bias2_sqrt: (1.0 - adam.beta2.powf(steps)).sqrt(),
        };
        let beta = w.beta;
        // The L2-SP distance before the update, from the pass that reads θ − θ_init anyway;
        // chunk sums in a fixed order, so the reported loss does not depend on scheduling.
        let mut l2sp = 0.0f64;
        for (((((_, p), (_, p0)), m), v), g) in self
            .params
            .iter_mut()
            .zip(&self.init)
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
            .zip(&self.scratch.grads)
        {
            p.par_chunks_mut(ADAM_CHUNK)
                .zip(m.par_chunks_mut(ADAM_CHUNK))
                .zip(v.par_chunks_mut(ADAM_CHUNK))
                .zip(g.par_chunks(ADAM_CHUNK))
                .zip(p0.par_chunks(ADAM_CHUNK))
                .map(|((((theta, m), v), grad), init)| {
                    Arch::new().dispatch(AdamPass {
                        theta,
                        m,
                        v,
                        grad,
                        init,
                        beta,
                        at,
                    })
                })
                .collect::<Vec<f64>>()
                .into_iter()
                .for_each(|part| l2sp += part);
        }
        Ok(terms(bce, reg, l2sp, w))
    }

    /// The loss of a batch without dropout and its gradient with respect to every parameter
    /// (L2-SP term included); the state is not changed.
    ///
    /// # Errors
    /// Only an internal shape error of a product.
    pub(crate) fn loss_and_gradients(
        &mut self,
        x: &[f32],
        t: &Targets<'_>,
        w: LossWeights,
    ) -> Result<(LossTerms, HeadParams), ShapeError> {
        let rows = t.errors.len();
        self.forward(x, rows, None)?;
        let (bce, reg) = self.loss(t, w);
        let terms = terms(bce, reg, self.l2sp(), w);
        self.backward(rows)?;
        let set: HostSet<f64> = self
            .params
            .iter()
            .zip(&self.init)
            .zip(&self.scratch.grads)
            .map(|(((slot, p), (_, p0)), g)| {
                let full = g
                    .iter()
                    .zip(p.iter().zip(p0))
                    .map(|(g, (a, b))| g.to_f64() + 2.0 * w.beta * (a.to_f64() - b.to_f64()))
                    .collect();
                (*slot, full)
            })
            .collect();
        Ok((terms, to_head_params(&set, self.dim, self.classes)))
    }

    /// The logits `[n, C]` (row-major, f64) of row-major features `[n, d]`, no dropout, in
    /// the training precision.
    ///
    /// # Errors
    /// Only an internal shape error of a product.
    pub(crate) fn logits(&mut self, features: &[f32]) -> Result<Vec<f64>, ShapeError> {
        let d = self.dim;
        let mut out = Vec::with_capacity(features.len() / d.max(1) * self.classes);
        for block in features.chunks(EVAL_BLOCK * d) {
            self.forward(block, block.len() / d, None)?;
            out.extend(self.scratch.z.iter().map(|v| v.to_f64()));
        }
        Ok(out)
    }

    /// The current parameters, widened to f64.
    pub(crate) fn params(&self) -> HeadParams {
        to_head_params(&self.params, self.dim, self.classes)
    }
}

/// `out[j] = Σ_r m[r, j]` for row-major `m` `[rows, cols]`, summed in f64 and rounded once.
fn column_sums<T: Element>(m: &[T], cols: usize, out: &mut [T]) {
    let mut acc = vec![0.0f64; cols];
    for row in m.chunks_exact(cols) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v.to_f64();
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = T::from_f64(a);
    }
}
