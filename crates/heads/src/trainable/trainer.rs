//! One training run's machinery: the head's parameters on a burn device, the loss with its
//! gradients by autodiff, and Adam with PyTorch's exact update (including a `beta1` that
//! changes from step to step, as `OneCycleLR` cycles it).

use burn::tensor::Device;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use ueb_rng::{Rng64, Xoshiro256};

use super::host::{Adam, HostMasks, HostTrainer, LossWeights, Targets};
use super::net::{DropoutMasks, HeadNetConfig, LossTensors, ParamSet, Slot, l2sp, l2sp_gradient, loss, scores};
use super::schedule::ScheduleStep;
use super::score::Method;
use crate::error::HeadError;
use ueb_cache::{Classifier, ClassifierKind};
use ueb_kernels::product::transpose;

/// Floating-point type of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 (the default; the v1 reference trained in bf16 under an f32 autocast).
    #[default]
    F32,
    /// f64 (the final ALIEN reference runs Lightning with `precision='64-true'`); needs a device
    /// that computes in f64 (flex and ndarray do; many GPUs do not).
    F64,
}

impl Precision {
    pub(crate) fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F64 => FloatDType::F64,
        }
    }
}

/// Parameters (or gradients) of a head on the host, in PyTorch layout (`weight` is
/// `[out, in]`, row-major), widened to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadParams {
    /// `dense.weight` `[d, d]` (kind `mlp`).
    pub dense_weight: Option<Vec<f64>>,
    /// `dense.bias` `[d]` (kind `mlp`).
    pub dense_bias: Option<Vec<f64>>,
    /// `out_proj.weight` `[C, d]`.
    pub out_weight: Vec<f64>,
    /// `out_proj.bias` `[C]`, when the classifier has one.
    pub out_bias: Option<Vec<f64>>,
}

impl HeadParams {
    /// Gathers training slots in the trainers' layout (weights `[in, out]`, row-major, as a
    /// burn `Linear` holds them) into PyTorch layout; `slots` yields each slot with its values
    /// and its `[in, out]` shape.
    pub(crate) fn from_slots<E>(
        slots: impl IntoIterator<Item = Result<(Slot, Vec<f64>, [usize; 2]), E>>,
    ) -> Result<Self, E> {
        let mut out = Self {
            dense_weight: None,
            dense_bias: None,
            out_weight: Vec::new(),
            out_bias: None,
        };
        for slot in slots {
            let (slot, v, [inp, outp]) = slot?;
            match slot {
                Slot::DenseWeight => out.dense_weight = Some(transpose(&v, inp, outp)),
                Slot::DenseBias => out.dense_bias = Some(v),
                Slot::OutWeight => out.out_weight = transpose(&v, inp, outp),
                Slot::OutBias => out.out_bias = Some(v),
            }
        }
        Ok(out)
    }

    /// The tensor stored under a PyTorch name (`dense.weight`, `dense.bias`, `out_proj.weight`,
    /// `out_proj.bias`).
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        match key {
            "dense.weight" => self.dense_weight.as_deref(),
            "dense.bias" => self.dense_bias.as_deref(),
            "out_proj.weight" => Some(&self.out_weight),
            "out_proj.bias" => self.out_bias.as_deref(),
            _ => None,
        }
    }

    /// These parameters rounded to f32, as a classifier of `template`'s architecture.
    pub fn to_classifier(&self, template: &Classifier) -> Classifier {
        let narrow = |v: &Vec<f64>| ueb_kernels::convert::narrow(v);
        Classifier {
            kind: template.kind,
            activation: template.activation,
            dense_weight: self.dense_weight.as_ref().map(narrow),
            dense_bias: self.dense_bias.as_ref().map(narrow),
            out_weight: narrow(&self.out_weight),
            out_bias: self.out_bias.as_ref().map(narrow),
            dim: template.dim,
            num_classes: template.num_classes,
        }
    }
}

/// The loss of one batch and its terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    /// `BCE(u, e)` (batch mean).
    pub bce: f64,
    /// `mean((u − anchor)²)`.
    pub reg: f64,
    /// `Σ‖θ − θ_init‖²` over all head parameters.
    pub l2sp: f64,
    /// `bce + α·reg + β·l2sp`.
    pub total: f64,
}

/// Settings of a [`HeadTrainer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadTrainerOptions {
    /// λ of SmoothMax (AdUE).
    pub lambda: f64,
    /// Weight α of the anchor term.
    pub alpha: f64,
    /// Weight β of the L2-SP term.
    pub beta: f64,
    /// Dropout probability while training (0 = off).
    pub dropout: f64,
    /// Adam's `beta1` for steps whose schedule does not set one.
    pub adam_beta1: f64,
    /// Adam's `beta2`.
    pub adam_beta2: f64,
    /// Adam's `eps`.
    pub adam_eps: f64,
    /// Floating-point type on the device.
    pub precision: Precision,
    /// Seed of the dropout masks.
    pub dropout_seed: u64,
    /// Where the steps run: ueb's host kernels on a CPU device (`auto`), or burn's autodiff.
    pub engine: Engine,
}

/// Where a trainer computes its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// ueb's host kernels (`host.rs`) on a CPU device (flex, ndarray), burn's autodiff on every
    /// other device (the default).
    #[default]
    Auto,
    /// burn's autodiff on every device (the reference path; slower on a CPU).
    Burn,
}

/// Stream of the dropout masks within `dropout_seed` (the shuffle uses another).
const DROPOUT_STREAM: u64 = 0x4452_4f50; // "DROP"

/// A head being trained: its parameters and Adam's moments, on a burn device or on the host
/// (see [`Engine`]).
pub struct HeadTrainer {
    method: Method,
    template: Classifier,
    opts: HeadTrainerOptions,
    rng: Xoshiro256,
    engine: State,
}

/// A trainer's state where its steps run.
enum State {
    /// On a burn device, through autodiff.
    Burn(BurnState),
    /// On the host in f32.
    HostF32(HostTrainer<f32>),
    /// On the host in f64.
    HostF64(HostTrainer<f64>),
}

/// Parameters and Adam's moments on a burn device.
struct BurnState {
    net: HeadNetConfig,
    dtype: FloatDType,
    device: Device,
    params: ParamSet,
    init: ParamSet,
    exp_avg: Vec<Tensor<2>>,
    exp_avg_sq: Vec<Tensor<2>>,
    steps: u64,
}

/// A trainer's parameters kept at one point of training (the best epoch), where they live.
pub(crate) enum Kept {
    /// Device tensors.
    Device(ParamSet),
    /// Host values (PyTorch layout, f64).
    Host(HeadParams),
}

impl Kept {
    /// The parameters on the host.
    pub(crate) fn into_params(self, head: &str) -> Result<HeadParams, HeadError> {
        match self {
            Kept::Device(set) => read_param_set(head, &set),
            Kept::Host(p) => Ok(p),
        }
    }
}

/// Dropout masks of a batch of `rows` (none when `p` is 0): for the input, and for the hidden
/// state when `mlp`, drawn in that order from `rng`.
fn draw_masks(rng: &mut Xoshiro256, p: f64, rows: usize, d: usize, mlp: bool) -> Option<HostMasks> {
    if p <= 0.0 {
        return None;
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    // `unit()` is `(next_u64() >> 11)·2⁻⁵³`, exact, so `unit() < p` is the integer test
    // `next_u64() >> 11 < ⌈p·2⁵³⌉`: the same masks, without an int → float conversion per
    // element.
    let below = (p * (1u64 << 53) as f64).ceil() as u64;
    // A local generator stays in registers; through `&mut` it is reloaded and stored per draw
    // (measured: `docs/performance-log.md`).
    let mut local = rng.clone();
    let mut draw = || -> Vec<f32> {
        (0..rows * d)
            .map(|_| if local.next_u64() >> 11 < below { 0.0 } else { keep })
            .collect()
    };
    let input = draw();
    let hidden = mlp.then(&mut draw);
    *rng = local;
    Some(HostMasks { input, hidden })
}

fn read_err(head: &str, e: impl std::fmt::Display) -> HeadError {
    HeadError::fit(head, format!("reading a tensor back from the device failed: {e}"))
}

/// `[rows, cols]` host values (row-major) on `device` in `dtype`.
pub(crate) fn upload2<E: burn::tensor::Element>(
    values: Vec<E>,
    rows: usize,
    cols: usize,
    device: &Device,
    dtype: FloatDType,
) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), (device, DType::from(dtype)))
}

/// `[n]` host values on `device` in `dtype`.
pub(crate) fn upload1<E: burn::tensor::Element>(values: Vec<E>, device: &Device, dtype: FloatDType) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), (device, DType::from(dtype)))
}

/// Row indices `[n]` on `device`.
pub(crate) fn upload_index(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// The parameter tensors of `c` on `device`, in the device layout of [`Slot`].
fn param_set(c: &Classifier, device: &Device, dtype: FloatDType) -> ParamSet {
    let (d, k) = (c.dim, c.num_classes);
    let mut set = Vec::with_capacity(4);
    if let (ClassifierKind::Mlp, Some(w)) = (c.kind, &c.dense_weight) {
        set.push((Slot::DenseWeight, upload2(transpose(w, d, d), d, d, device, dtype)));
        if let Some(b) = &c.dense_bias {
            set.push((Slot::DenseBias, upload2(b.clone(), 1, d, device, dtype)));
        }
    }
    set.push((
        Slot::OutWeight,
        upload2(transpose(&c.out_weight, k, d), d, k, device, dtype),
    ));
    if let Some(b) = &c.out_bias {
        set.push((Slot::OutBias, upload2(b.clone(), 1, k, device, dtype)));
    }
    set
}

/// Checks that a classifier is well-formed (lengths match its dimensions and kind).
pub(crate) fn check_classifier(head: &str, c: &Classifier) -> Result<(), HeadError> {
    let (d, k) = (c.dim, c.num_classes);
    let bad = |what: String| Err(HeadError::config(head, format!("classifier: {what}")));
    if d == 0 || k < 2 {
        return bad(format!("dimension {d} and {k} classes (need d ≥ 1, C ≥ 2)"));
    }
    if c.out_weight.len() != k * d {
        return bad(format!(
            "out_proj.weight has {} values, expected {k}×{d}",
            c.out_weight.len()
        ));
    }
    if c.out_bias.as_ref().is_some_and(|b| b.len() != k) {
        return bad(format!("out_proj.bias must have {k} values"));
    }
    match c.kind {
        ClassifierKind::Mlp => {
            if c.dense_weight.as_ref().is_none_or(|w| w.len() != d * d)
                || c.dense_bias.as_ref().is_none_or(|b| b.len() != d)
            {
                return bad(format!("kind mlp needs dense.weight {d}×{d} and dense.bias {d}"));
            }
        }
        ClassifierKind::Linear => {
            if c.dense_weight.is_some() || c.dense_bias.is_some() {
                return bad("kind linear has no dense layer".into());
            }
        }
    }
    Ok(())
}

impl HeadTrainer {
    /// A trainer whose head starts at `start` and is anchored (L2-SP) to `init`; both must have
    /// the same architecture. `device` may or may not have autodiff enabled: the trainer keeps
    /// its state on the plain device (or on the host, see [`Engine`]) and enables autodiff per
    /// step.
    ///
    /// # Errors
    /// Malformed classifiers, different architectures, or a device that does not compute in
    /// the requested precision.
    pub fn new(
        method: Method,
        start: &Classifier,
        init: &Classifier,
        opts: HeadTrainerOptions,
        device: &Device,
    ) -> Result<Self, HeadError> {
        let name = method.name();
        check_classifier(name, start)?;
        check_classifier(name, init)?;
        let same = start.kind == init.kind
            && start.activation == init.activation
            && start.dim == init.dim
            && start.num_classes == init.num_classes
            && start.out_bias.is_some() == init.out_bias.is_some();
        if !same {
            return Err(HeadError::config(
                name,
                "start and init classifiers differ in architecture",
            ));
        }
        let engine = if runs_on_host(opts.engine, device) {
            match opts.precision {
                Precision::F32 => State::HostF32(HostTrainer::new(method, start, init)),
                Precision::F64 => State::HostF64(HostTrainer::new(method, start, init)),
            }
        } else {
            let device = device.clone().without_autodiff();
            let dtype = opts.precision.dtype();
            if !device.supports_dtype(DType::from(dtype)) {
                return Err(HeadError::config(
                    name,
                    format!("device {device:?} does not compute in {:?}", opts.precision),
                ));
            }
            let params = param_set(start, &device, dtype);
            let init_set = param_set(init, &device, dtype);
            let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
            let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
            State::Burn(BurnState {
                net: HeadNetConfig {
                    kind: start.kind,
                    activation: start.activation,
                },
                dtype,
                device,
                params,
                init: init_set,
                exp_avg,
                exp_avg_sq,
                steps: 0,
            })
        };
        Ok(Self {
            method,
            template: start.clone(),
            opts,
            rng: Xoshiro256::new(opts.dropout_seed, DROPOUT_STREAM),
            engine,
        })
    }

    /// Whether the steps run on the host (`host.rs`) rather than through burn.
    pub fn on_host(&self) -> bool {
        !matches!(self.engine, State::Burn(_))
    }

    /// The burn state; an internal error on the host engine (the fit loop asks only for the
    /// state it prepared its data for).
    fn burn(&mut self) -> Result<&mut BurnState, HeadError> {
        match &mut self.engine {
            State::Burn(b) => Ok(b),
            _ => Err(HeadError::fit(
                self.method.name(),
                "internal: a device operation on a trainer that runs on the host",
            )),
        }
    }

    fn burn_ref(&self) -> Result<&BurnState, HeadError> {
        match &self.engine {
            State::Burn(b) => Ok(b),
            _ => Err(HeadError::fit(
                self.method.name(),
                "internal: a device operation on a trainer that runs on the host",
            )),
        }
    }

    /// The plain (non-autodiff) device the state lives on (burn engine).
    pub(crate) fn device(&self) -> Result<&Device, HeadError> {
        self.burn_ref().map(|b| &b.device)
    }

    fn weights(&self) -> LossWeights {
        LossWeights {
            lambda: self.opts.lambda,
            alpha: self.opts.alpha,
            beta: self.opts.beta,
        }
    }

    /// Fresh dropout masks for a batch of `rows` (none when dropout is off).
    fn masks(&mut self, rows: usize) -> Option<HostMasks> {
        let mlp = self.template.kind == ClassifierKind::Mlp;
        draw_masks(&mut self.rng, self.opts.dropout, rows, self.template.dim, mlp)
    }

    /// Forward and loss on autodiff leaves of the current parameters; also `θ − θ_init` per
    /// parameter (plain tensors), for the L2-SP gradient.
    ///
    /// Shapes: `x` `[B, d]`, `e` and `anchor` `[B]`, all on the trainer's device.
    fn forward_loss(
        &mut self,
        x: Tensor<2>,
        e: Tensor<1>,
        anchor: Tensor<1>,
        train: bool,
    ) -> Result<(ParamSet, LossTensors, Vec<Tensor<2>>), HeadError> {
        let [rows, _] = x.dims();
        let masks = if train { self.masks(rows) } else { None };
        let (method, opts, d) = (self.method, self.opts, self.template.dim);
        let b = self.burn()?;
        let leaves: ParamSet = b
            .params
            .iter()
            .map(|(s, p)| (*s, p.clone().autodiff().require_grad()))
            .collect();
        let (dist, diffs) = l2sp(&b.params, &b.init);
        let masks = masks.map(|m| DropoutMasks {
            input: upload2(m.input, rows, d, &b.device, b.dtype).autodiff(),
            hidden: m.hidden.map(|h| upload2(h, rows, d, &b.device, b.dtype).autodiff()),
        });
        let net = b.net.init(&leaves);
        let z = net.forward(x.autodiff(), masks.as_ref());
        let u = scores(method, z, opts.lambda, b.dtype);
        let e = e.autodiff();
        // A head always has out_proj.weight; the zero keeps an impossible empty set well-defined.
        let dist = dist.map_or_else(|| e.zeros_like().sum(), Tensor::autodiff);
        let l = loss(u, e, anchor.autodiff(), dist, opts.alpha, opts.beta);
        Ok((leaves, l, diffs))
    }

    /// Gradients of `l.total` with respect to `leaves` (the graph's, plus the L2-SP term's from
    /// `diffs`), on the plain device, taken out of the gradient store (so that each is the only
    /// handle to its buffer).
    fn gradients(
        &self,
        leaves: &ParamSet,
        l: &LossTensors,
        diffs: Vec<Tensor<2>>,
    ) -> Result<Vec<Tensor<2>>, HeadError> {
        let mut grads = l.total.backward();
        leaves
            .iter()
            .zip(diffs)
            .map(|((slot, leaf), dp)| {
                let g = leaf
                    .grad_remove(&mut grads)
                    .ok_or_else(|| HeadError::fit(self.method.name(), format!("no gradient reached {}", slot.key())))?;
                Ok(g + l2sp_gradient(dp, self.opts.beta))
            })
            .collect()
    }

    /// One Adam step on a batch already on the device (burn engine); returns the batch's loss
    /// terms before the step (plain `[1]` tensors, not read back, so steps do not wait on the
    /// device).
    ///
    /// PyTorch's single-tensor Adam: `m ← m + (g − m)(1 − β1)`, `v ← β2 v + (1 − β2) g²`,
    /// `θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)`, with β1 the current step's
    /// (bias corrections use the current β1, as PyTorch does when OneCycleLR changes it).
    pub(crate) fn step_device(
        &mut self,
        x: Tensor<2>,
        e: Tensor<1>,
        anchor: Tensor<1>,
        at: ScheduleStep,
    ) -> Result<LossTensors, HeadError> {
        let (leaves, l, diffs) = self.forward_loss(x, e, anchor, true)?;
        let grads = self.gradients(&leaves, &l, diffs)?;
        // The leaves share their storage with the parameters: dropped here, the parameters (and
        // the moments, which nothing else holds) are the only handles to their buffers, and the
        // CPU backends update them in place instead of allocating a d × d buffer per operation.
        drop(leaves);
        let opts = self.opts;
        let b = self.burn()?;
        b.steps += 1;
        let t = b.steps as f64;
        let beta1 = at.beta1.unwrap_or(opts.adam_beta1);
        let beta2 = opts.adam_beta2;
        let bias1 = 1.0 - beta1.powf(t);
        let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        let step_size = at.lr / bias1;
        let params = std::mem::take(&mut b.params);
        let exp_avg = std::mem::take(&mut b.exp_avg);
        let exp_avg_sq = std::mem::take(&mut b.exp_avg_sq);
        for ((((slot, p), m), v), g) in params.into_iter().zip(exp_avg).zip(exp_avg_sq).zip(grads) {
            // The same operations in the same order as before (and as PyTorch's single-tensor
            // Adam), written so that the left operand is the last handle to its buffer wherever
            // the value is not needed again.
            let m = m.clone() + (g.clone() - m).mul_scalar(1.0 - beta1);
            let v = v.mul_scalar(beta2) + (g.clone() * g).mul_scalar(1.0 - beta2);
            let denom = v.clone().sqrt().div_scalar(bias2_sqrt).add_scalar(opts.adam_eps);
            let p = p - (m.clone() / denom).mul_scalar(step_size);
            b.params.push((slot, p));
            b.exp_avg.push(m);
            b.exp_avg_sq.push(v);
        }
        Ok(LossTensors {
            bce: l.bce.inner(),
            reg: l.reg.inner(),
            l2sp: l.l2sp.inner(),
            total: l.total.inner(),
        })
    }

    /// One Adam step on the host engine, on the rows `rows` of the row-major features `[n, d]`
    /// with their errors and anchors (indexed by the same rows); returns the loss before the
    /// update. The rows are gathered here, as `select` gathers them on a device.
    pub(crate) fn step_host_rows(
        &mut self,
        features: &[f32],
        errors: &[bool],
        anchors: &[f64],
        rows: &[usize],
        at: ScheduleStep,
        gathered: &mut HostBatch,
    ) -> Result<LossTerms, HeadError> {
        let d = self.template.dim;
        gathered.x.clear();
        gathered.errors.clear();
        gathered.anchors.clear();
        for &r in rows {
            gathered.x.extend_from_slice(&features[r * d..(r + 1) * d]);
            gathered.errors.push(errors[r]);
            gathered.anchors.push(anchors[r]);
        }
        self.step_host(&gathered.x, &gathered.errors, &gathered.anchors, at)
    }

    fn step_host(
        &mut self,
        features: &[f32],
        errors: &[bool],
        anchors: &[f64],
        at: ScheduleStep,
    ) -> Result<LossTerms, HeadError> {
        let masks = self.masks(errors.len());
        let (w, opts) = (self.weights(), self.opts);
        let adam = Adam {
            lr: at.lr,
            beta1: at.beta1.unwrap_or(opts.adam_beta1),
            beta2: opts.adam_beta2,
            eps: opts.adam_eps,
        };
        let t = Targets { errors, anchors };
        match &mut self.engine {
            State::HostF32(h) => Ok(h.step(features, &t, masks.as_ref(), w, adam)?),
            State::HostF64(h) => Ok(h.step(features, &t, masks.as_ref(), w, adam)?),
            State::Burn(_) => Err(HeadError::fit(
                self.method.name(),
                "internal: a host step on a burn trainer",
            )),
        }
    }

    /// One Adam step on a host batch (row-major features `[B, d]`, errors and anchors `[B]`),
    /// with the learning rate and `beta1` of `at`; returns the step's loss (before the update,
    /// with this step's dropout masks).
    ///
    /// # Errors
    /// Lengths that do not match, or a device read-back failure.
    pub fn step(
        &mut self,
        features: &[f32],
        errors: &[bool],
        anchors: &[f64],
        at: ScheduleStep,
    ) -> Result<LossTerms, HeadError> {
        self.check_batch(features, errors, anchors)?;
        if self.on_host() {
            return self.step_host(features, errors, anchors, at);
        }
        let (x, e, a) = self.upload_batch(features, errors, anchors)?;
        let l = self.step_device(x, e, a, at)?;
        self.read_terms(&l)
    }

    /// The loss on a host batch and its gradient with respect to every head parameter (PyTorch
    /// layout), with dropout OFF; the state is not changed.
    ///
    /// # Errors
    /// Lengths that do not match, or a device read-back failure.
    pub fn loss_and_gradients(
        &mut self,
        features: &[f32],
        errors: &[bool],
        anchors: &[f64],
    ) -> Result<(LossTerms, HeadParams), HeadError> {
        self.check_batch(features, errors, anchors)?;
        let w = self.weights();
        let t = Targets { errors, anchors };
        match &mut self.engine {
            State::HostF32(h) => return Ok(h.loss_and_gradients(features, &t, w)?),
            State::HostF64(h) => return Ok(h.loss_and_gradients(features, &t, w)?),
            State::Burn(_) => {}
        }
        let (x, e, a) = self.upload_batch(features, errors, anchors)?;
        let (leaves, l, diffs) = self.forward_loss(x, e, a, false)?;
        let terms = self.read_terms(&l)?;
        let grads = self.gradients(&leaves, &l, diffs)?;
        let set: ParamSet = leaves.iter().map(|(s, _)| *s).zip(grads).collect();
        Ok((terms, read_param_set(self.method.name(), &set)?))
    }

    fn read_terms(&self, l: &LossTensors) -> Result<LossTerms, HeadError> {
        let name = self.method.name();
        let read = |t: &Tensor<1>| -> Result<f64, HeadError> {
            t.clone()
                .inner()
                .try_into_scalar::<f64>()
                .map_err(|e| read_err(name, e))
        };
        Ok(LossTerms {
            bce: read(&l.bce)?,
            reg: read(&l.reg)?,
            l2sp: read(&l.l2sp)?,
            total: read(&l.total)?,
        })
    }

    fn check_batch(&self, features: &[f32], errors: &[bool], anchors: &[f64]) -> Result<(), HeadError> {
        let d = self.template.dim;
        let rows = errors.len();
        if rows == 0 || features.len() != rows * d || anchors.len() != rows {
            return Err(HeadError::config(
                self.method.name(),
                format!(
                    "a batch of {rows} errors needs {rows}×{d} features and {rows} anchors, got {} and {}",
                    features.len(),
                    anchors.len()
                ),
            ));
        }
        Ok(())
    }

    fn upload_batch(
        &self,
        features: &[f32],
        errors: &[bool],
        anchors: &[f64],
    ) -> Result<(Tensor<2>, Tensor<1>, Tensor<1>), HeadError> {
        let b = self.burn_ref()?;
        let rows = errors.len();
        let e: Vec<f32> = errors.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        Ok((
            upload2(features.to_vec(), rows, self.template.dim, &b.device, b.dtype),
            upload1(e, &b.device, b.dtype),
            upload1(anchors.to_vec(), &b.device, b.dtype),
        ))
    }

    /// Logits of features on the device with the current parameters, no dropout (burn
    /// engine).
    ///
    /// Shapes: `x` `[B, d]` → `[B, C]` (plain tensors).
    pub(crate) fn logits_device(&self, x: Tensor<2>) -> Result<Tensor<2>, HeadError> {
        let b = self.burn_ref()?;
        Ok(b.net.init(&b.params).forward(x, None))
    }

    /// Logits `[n, C]` (row-major, f64) of row-major host features `[n, d]` with the current
    /// parameters, no dropout, computed in the training precision (host engine).
    pub(crate) fn logits_host(&mut self, features: &[f32]) -> Result<Vec<f64>, HeadError> {
        match &mut self.engine {
            State::HostF32(h) => Ok(h.logits(features)?),
            State::HostF64(h) => Ok(h.logits(features)?),
            State::Burn(_) => Err(HeadError::fit(
                self.method.name(),
                "internal: host logits of a burn trainer",
            )),
        }
    }

    /// The current parameters, kept where they are (cheap handles on a device; a copy on the
    /// host).
    pub(crate) fn snapshot(&self) -> Kept {
        match &self.engine {
            State::Burn(b) => Kept::Device(b.params.clone()),
            State::HostF32(h) => Kept::Host(h.params()),
            State::HostF64(h) => Kept::Host(h.params()),
        }
    }

    /// The current parameters on the host.
    ///
    /// # Errors
    /// A device read-back failure.
    pub fn params(&self) -> Result<HeadParams, HeadError> {
        self.snapshot().into_params(self.method.name())
    }
}

/// Reusable buffers of the host engine's gathered batch.
#[derive(Debug, Default)]
pub(crate) struct HostBatch {
    x: Vec<f32>,
    errors: Vec<bool>,
    anchors: Vec<f64>,
}

/// Whether a trainer with `engine` on `device` runs on the host.
pub(crate) fn runs_on_host(engine: Engine, device: &Device) -> bool {
    engine == Engine::Auto && ueb_kernels::burn_ops::is_cpu_device(device)
}

/// Reads a parameter set (device layout) back into PyTorch layout, widened to f64.
pub(crate) fn read_param_set(head: &str, set: &ParamSet) -> Result<HeadParams, HeadError> {
    HeadParams::from_slots(set.iter().map(|(slot, t)| {
        let v = t.clone().try_into_vec_as::<f64>().map_err(|e| read_err(head, e))?;
        Ok((*slot, v, t.dims()))
    }))
}
