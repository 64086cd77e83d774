//! Fine-tuning a sequence classifier: `full`, `lora` or `frozen`, with AdamW, a linear
//! warm-up and decay (transformers' `get_linear_schedule_with_warmup`), gradient accumulation,
//! gradient-norm clipping and the best epoch by validation accuracy.
//!
//! `frozen` trains only the head; since the frozen backbone runs without dropout, its features
//! are the same every epoch, so they are computed once and the head trains on them: the same
//! result as re-running the backbone every step, at a fraction of the cost.

use std::any::Any;
use std::time::Instant;

use burn::module::{Lora, Module, ParamGroup};
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use ueb_rng::{Rng64, Xoshiro256};

use crate::config::Family;
use crate::decoder::DecoderClassifier;
use crate::encoder::{EncoderInput, SequenceClassifier, SequenceHead, SequenceOutput};
use crate::error::{BackboneError, Result};
use crate::extract::Extractor;
use crate::host::{AdamW, Dropouts, HostTrainer};
use crate::readback::linear_to_torch;
use crate::readback::to_host;
use crate::tokenize::{Encoded, TextTokenizer};
use ueb_cache::{Activation, Classifier, ClassifierKind};

/// Which parameters train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum FinetuneMode {
    /// Every parameter.
    Full,
    /// Low-rank adapters on the target projections; the base weights stay frozen and the
    /// classification head trains fully.
    Lora {
        /// Rank r.
        #[serde(default = "default_rank")]
        r: usize,
        /// Scale numerator α (the update is scaled by α / r).
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// Module names whose weights get adapters (`query`, `key`, `value`, `dense`, …).
        #[serde(default = "default_targets")]
        targets: Vec<String>,
    },
    /// Only the classification head.
    Frozen,
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["query".into(), "key".into(), "value".into()]
}

impl FinetuneMode {
    /// LoRA with the defaults (r = 8, α = 16 on query/key/value).
    pub fn lora() -> Self {
        FinetuneMode::Lora {
            r: default_rank(),
            alpha: default_alpha(),
            targets: default_targets(),
        }
    }

    /// `full`, `lora` or `frozen`.
    pub fn name(&self) -> &'static str {
        match self {
            FinetuneMode::Full => "full",
            FinetuneMode::Lora { .. } => "lora",
            FinetuneMode::Frozen => "frozen",
        }
    }
}

/// Fine-tuning hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// What trains.
    #[serde(flatten)]
    pub mode: FinetuneMode,
    /// Passes over the training split.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Forward passes per optimizer step (effective batch = batch_size × this).
    pub grad_accumulation: usize,
    /// Fraction of the optimizer steps spent warming up linearly from 0.
    pub warmup_ratio: f64,
    /// AdamW's decoupled weight decay (not applied to biases and normalisation parameters).
    pub weight_decay: f64,
    /// Global gradient-norm clipping (none when absent).
    pub max_grad_norm: Option<f64>,
    /// Seed of the shuffling, dropout and new parameters.
    pub seed: u64,
    /// Which training engine runs `full` and `lora` (absent: `auto`).
    #[serde(default, skip_serializing_if = "FinetuneEngine::is_auto")]
    pub engine: FinetuneEngine,
}

/// The engine that runs `full` and `lora` fine-tuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinetuneEngine {
    /// The host engine ([`crate::HostTrainer`]) for an encoder on a CPU device in f32 with LoRA
    /// on query, key and value (or `full`); burn's autodiff otherwise.
    #[default]
    Auto,
    /// The host engine; an error where it does not apply.
    Host,
    /// burn's autodiff on the device.
    Burn,
}

impl FinetuneEngine {
    /// Whether this is `auto`.
    pub fn is_auto(&self) -> bool {
        *self == FinetuneEngine::Auto
    }
}

/// Why the host engine cannot run `cfg` on `device` for a model (`None`: it can).
fn host_refusal(cfg: &FinetuneConfig, device: &Device, encoder: bool) -> Option<String> {
    if !encoder {
        return Some("the host engine trains encoders (BERT, RoBERTa, ELECTRA), not decoders".into());
    }
    if !ueb_kernels::burn_ops::is_cpu_device(device) {
        return Some("the host engine runs on a CPU device (flex, ndarray)".into());
    }
    if device.settings().float_dtype != burn::tensor::FloatDType::F32 {
        return Some("the host engine computes in f32".into());
    }
    match &cfg.mode {
        FinetuneMode::Lora { targets, .. } => targets
            .iter()
            .find(|t| !["query", "key", "value"].contains(&t.as_str()))
            .map(|t| format!("the host engine puts LoRA on query, key and value, not `{t}`")),
        FinetuneMode::Full => None,
        FinetuneMode::Frozen => Some("`frozen` trains the head on cached features".into()),
    }
}

/// The engine [`finetune`] uses for `cfg` on `device` (`"host"` or `"burn"`), `encoder` telling
/// whether the model is an encoder classifier; `frozen` reports `"burn"` (its head trains on
/// cached features with burn).
///
/// # Errors
/// `engine: host` where the host engine does not apply, saying why.
pub fn finetune_engine(cfg: &FinetuneConfig, device: &Device, encoder: bool) -> Result<&'static str> {
    let refusal = host_refusal(cfg, device, encoder);
    match (cfg.engine, refusal) {
        (FinetuneEngine::Burn, _) => Ok("burn"),
        (_, None) if cfg.mode != FinetuneMode::Frozen => Ok("host"),
        (FinetuneEngine::Host, Some(why)) => Err(BackboneError::Invalid(format!("finetune.engine host: {why}"))),
        _ => Ok("burn"),
    }
}

impl Default for FinetuneConfig {
    /// transformers' Trainer defaults where it has them (lr 5e-5, no warm-up, weight decay 0,
    /// clipping at 1), with 3 epochs and batch 32.
    fn default() -> Self {
        Self {
            mode: FinetuneMode::Full,
            epochs: 3,
            lr: 5e-5,
            batch_size: 32,
            grad_accumulation: 1,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            seed: 0,
            engine: FinetuneEngine::Auto,
        }
    }
}

impl FinetuneConfig {
    /// Checks the hyperparameters.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BackboneError::Invalid(m));
        if self.epochs == 0 {
            return bad("finetune.epochs must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("finetune.lr = {} must be positive", self.lr));
        }
        if self.batch_size == 0 || self.grad_accumulation == 0 {
            return bad("finetune.batch_size and finetune.grad_accumulation must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "finetune.warmup_ratio = {} is not in [0, 1)",
                self.warmup_ratio
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "finetune.weight_decay = {} must be non-negative",
                self.weight_decay
            ));
        }
        if let Some(g) = self.max_grad_norm
            && !(g.is_finite() && g > 0.0)
        {
            return bad(format!("finetune.max_grad_norm = {g} must be positive"));
        }
        if let FinetuneMode::Lora { r, alpha, targets } = &self.mode {
            if *r == 0 || !(alpha.is_finite() && *alpha > 0.0) {
                return bad(format!("finetune lora: r = {r} and alpha = {alpha} must be positive"));
            }
            if targets.is_empty()
                || targets
                    .iter()
                    .any(|t| t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return bad(format!(
                    "finetune lora: targets {targets:?} must be non-empty module names"
                ));
            }
        }
        Ok(())
    }
}

/// A sequence classifier that [`finetune`] trains and `export_cache` exports: an encoder with
/// its head ([`SequenceClassifier`]) or a decoder with `score` ([`DecoderClassifier`]).
pub trait ClassifierModel: Module + 'static {
    /// The classification head alone (what `frozen` trains on cached features).
    type Head: Module + 'static;

    /// Shapes: ids `[B, L]` → features `[B, d]` (the head's input), logits `[B, C]`.
    fn classify(&self, input: &EncoderInput) -> SequenceOutput;

    /// Number of classes C.
    fn num_classes(&self) -> usize;

    /// Input width of the LoRA targets (PEFT's initialisation scale depends on it).
    fn lora_fan_in(&self) -> usize;

    /// The module path prefix of the head, which trains fully under LoRA.
    fn head_prefix(&self) -> &'static str;

    /// The module name of a LoRA target. `query`, `key` and `value` name roles, so the
    /// defaults apply to every family (a decoder maps them to `q_proj`, `k_proj`, `v_proj`);
    /// other names are taken as they are.
    fn lora_target(&self, name: &str) -> String {
        name.to_string()
    }

    /// The head as the cache's classifier.
    ///
    /// # Errors
    /// A tensor that cannot be read back.
    fn cache_classifier(&self) -> Result<Classifier>;

    /// Wraps the model for batched inference.
    fn into_extractor(self) -> Extractor;

    /// Splits into the backbone (as a features-only extractor) and the head.
    fn split(self) -> (Extractor, Self::Head);

    /// Puts a backbone from [`ClassifierModel::split`] and a head back together.
    ///
    /// # Errors
    /// An extractor of another kind than `split` gave.
    fn join(backbone: Extractor, head: Self::Head) -> Result<Self>;

    /// The head's forward pass. Shapes: features `[B, d]` → logits `[B, C]`.
    fn head_forward(head: &Self::Head, features: Tensor<2>) -> Tensor<2>;
}

impl ClassifierModel for SequenceClassifier {
    type Head = SequenceHead;

    fn classify(&self, input: &EncoderInput) -> SequenceOutput {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.head.out_proj.weight.dims()[1]
    }

    fn lora_fan_in(&self) -> usize {
        self.backbone
            .encoder
            .layer
            .first()
            .map_or(1, |l| l.attention.self_attn.query.weight.dims()[0])
    }

    fn head_prefix(&self) -> &'static str {
        "head."
    }

    fn cache_classifier(&self) -> Result<Classifier> {
        let dense = linear_to_torch(&self.head.dense)?;
        let out = linear_to_torch(&self.head.out_proj)?;
        Ok(Classifier {
            kind: ClassifierKind::Mlp,
            activation: match self.head.family {
                Family::Electra => Activation::Gelu,
                Family::Bert | Family::Roberta => Activation::Tanh,
            },
            dim: dense.d_in,
            num_classes: out.d_out,
            dense_weight: Some(dense.weight),
            dense_bias: dense.bias,
            out_weight: out.weight,
            out_bias: out.bias,
        })
    }

    fn into_extractor(self) -> Extractor {
        Extractor::Classifier(Box::new(self))
    }

    fn split(self) -> (Extractor, SequenceHead) {
        (Extractor::Backbone(Box::new(self.backbone)), self.head)
    }

    fn join(backbone: Extractor, head: SequenceHead) -> Result<Self> {
        match backbone {
            Extractor::Backbone(backbone) => Ok(Self {
                backbone: *backbone,
                head,
            }),
            _ => Err(BackboneError::Invalid(
                "an encoder head joined to another backbone".into(),
            )),
        }
    }

    fn head_forward(head: &SequenceHead, features: Tensor<2>) -> Tensor<2> {
        head.forward(features)
    }
}

impl ClassifierModel for DecoderClassifier {
    type Head = Linear;

    fn classify(&self, input: &EncoderInput) -> SequenceOutput {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.score.weight.dims()[1]
    }

    fn lora_fan_in(&self) -> usize {
        self.model.hidden_size()
    }

    fn head_prefix(&self) -> &'static str {
        "score."
    }

    fn lora_target(&self, name: &str) -> String {
        match name {
            "query" => "q_proj".into(),
            "key" => "k_proj".into(),
            "value" => "v_proj".into(),
            other => other.to_string(),
        }
    }

    fn cache_classifier(&self) -> Result<Classifier> {
        let out = linear_to_torch(&self.score)?;
        Ok(Classifier {
            kind: ClassifierKind::Linear,
            activation: Activation::None,
            dim: out.d_in,
            num_classes: out.d_out,
            dense_weight: None,
            dense_bias: None,
            out_weight: out.weight,
            out_bias: out.bias,
        })
    }

    fn into_extractor(self) -> Extractor {
        Extractor::DecoderClassifier(Box::new(self))
    }

    fn split(self) -> (Extractor, Linear) {
        (Extractor::Decoder(Box::new(self.model)), self.score)
    }

    fn join(backbone: Extractor, score: Linear) -> Result<Self> {
        match backbone {
            Extractor::Decoder(model) => Ok(Self { model: *model, score }),
            _ => Err(BackboneError::Invalid(
                "a decoder score joined to another backbone".into(),
            )),
        }
    }

    fn head_forward(head: &Linear, features: Tensor<2>) -> Tensor<2> {
        head.forward(features)
    }
}

/// The learning rate after `step` optimizer steps of `total`, with `warmup` warm-up steps
/// (transformers' linear schedule: 0 at step 0 when warming up, 0 at the end).
pub fn linear_schedule(lr: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return lr * step as f64 / warmup as f64;
    }
    let rest = total.saturating_sub(warmup).max(1);
    lr * (total.saturating_sub(step) as f64 / rest as f64).max(0.0)
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Mean validation cross-entropy.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Seconds the epoch took (training and evaluation).
    pub seconds: f64,
}

/// What fine-tuning did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinetuneReport {
    /// The configuration used.
    pub config: FinetuneConfig,
    /// Every epoch.
    pub epochs: Vec<EpochRecord>,
    /// The epoch kept (best validation accuracy, ties to the lower loss, then the earlier).
    pub best_epoch: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Trainable parameters.
    pub trainable_parameters: usize,
}

/// Labeled, tokenized examples.
#[derive(Debug, Clone, Copy)]
pub struct LabeledSplit<'a> {
    /// Tokenized inputs.
    pub encoded: &'a [Encoded],
    /// Class indices, one per input.
    pub labels: &'a [usize],
}

impl LabeledSplit<'_> {
    fn check(&self, name: &str, classes: usize) -> Result<()> {
        if self.encoded.is_empty() {
            return Err(BackboneError::Invalid(format!("the {name} split is empty")));
        }
        if self.encoded.len() != self.labels.len() {
            return Err(BackboneError::Invalid(format!(
                "the {name} split has {} inputs but {} labels",
                self.encoded.len(),
                self.labels.len()
            )));
        }
        if let Some((i, l)) = self.labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(BackboneError::Invalid(format!(
                "{name} row {i}: label {l} is out of range for {classes} classes"
            )));
        }
        Ok(())
    }
}

fn progress_bar(len: u64, msg: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

fn labels_tensor(labels: &[usize], rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| labels[r] as i64).collect();
    Tensor::from_data(TensorData::new(v, [rows.len()]), device)
}

/// The parameters that AdamW must not decay (transformers' Trainer convention).
fn no_decay_group() -> Result<ParamGroup> {
    // `norm.gamma` covers LayerNorm (`layer_norm.gamma`) and the decoders' RMSNorms
    // (`input_layernorm`, `norm`, `q_norm`, …), as transformers' Trainer exempts both.
    ParamGroup::from_any_regexes(vec![r"\.bias$", r"norm\.(gamma|beta)$"])
        .map_err(|e| BackboneError::Invalid(format!("parameter group: {e:?}")))
}

/// AdamW with the two groups; no clipping here: burn's clips each tensor by its own norm, where
/// PyTorch's `clip_grad_norm_` (transformers' Trainer) scales all by the global one
/// ([`clip_global`]).
fn optimizer(cfg: &FinetuneConfig) -> Result<ModuleOptimizer> {
    let base = |wd: f64| {
        AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32)
    };
    Ok(base(cfg.weight_decay)
        .init()
        .with_group(no_decay_group()?, base(0.0).build(), None))
}

/// Scales `grads` so that their global L2 norm over every trainable tensor of `module` is at
/// most `max`: PyTorch's `clip_grad_norm_` (coefficient `max / (norm + 1e-6)` when below 1).
///
/// # Errors
/// A norm that cannot be read back from the device.
fn clip_global<M: Module>(module: &M, grads: &mut GradientsParams, max: Option<f64>) -> Result<()> {
    use burn::module::{ModuleVisitor, Param};
    let Some(max) = max else {
        return Ok(());
    };
    struct Squares<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Squares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.coef));
            }
        }
    }
    let mut sq = Squares { grads, sum: None };
    module.visit(&mut sq);
    let Some(sum) = sq.sum else {
        return Ok(());
    };
    let norm = to_host(sum)?.first().map_or(0.0, |&v| f64::from(v).sqrt());
    let coef = max / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        module.visit(&mut Scale { grads, coef });
    }
    Ok(())
}

/// Mean cross-entropy and accuracy of `logits` (host) against `labels`.
fn host_metrics(logits: &[f32], c: usize, labels: &[usize]) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0usize;
    for (row, &y) in logits.chunks(c).zip(labels) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
        let lse = m + row.iter().map(|&z| (f64::from(z) - m).exp()).sum::<f64>().ln();
        loss += lse - f64::from(row[y]);
        let argmax = row
            .iter()
            .enumerate()
            .fold(0, |best, (i, &z)| if z > row[best] { i } else { best });
        correct += usize::from(argmax == y);
    }
    (loss / labels.len() as f64, correct as f64 / labels.len() as f64)
}

/// Fine-tunes `model` on `train`, selecting the epoch by `val`. Runs on `device` with
/// autodiff; the returned model lives on `device` without autodiff, ready for export.
///
/// # Errors
/// Bad hyperparameters or splits, or a non-finite loss (naming the epoch and step).
pub fn finetune<M: ClassifierModel>(
    model: M,
    tokenizer: &TextTokenizer,
    train: LabeledSplit<'_>,
    val: LabeledSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(M, FinetuneReport)> {
    cfg.validate()?;
    let classes = model.num_classes();
    train.check("train", classes)?;
    val.check("val", classes)?;
    device.seed(cfg.seed);
    if cfg.mode == FinetuneMode::Frozen {
        return finetune_frozen(model, tokenizer, train, val, cfg, device, show_progress);
    }
    let encoder = (&model as &dyn Any).is::<SequenceClassifier>();
    if finetune_engine(cfg, device, encoder)? == "host" {
        let boxed: Box<dyn Any> = Box::new(model);
        let enc = boxed
            .downcast::<SequenceClassifier>()
            .map_err(|_| BackboneError::Invalid("internal: the host engine got another model".into()))?;
        let (trained, report) = finetune_host(*enc, tokenizer, train, val, cfg, show_progress)?;
        let boxed: Box<dyn Any> = Box::new(trained);
        let m = boxed
            .downcast::<M>()
            .map_err(|_| BackboneError::Invalid("internal: the host engine returned another model".into()))?;
        return Ok((*m, report));
    }
    let batches_per_epoch = train.encoded.len().div_ceil(cfg.batch_size);
    let mut trainer = Trainer::new(model, cfg, batches_per_epoch, device)?;
    let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
    let mut epochs = Vec::new();
    let mut best: Option<(f64, f64, usize, M)> = None;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let bar = show_progress.then(|| epoch_bar(cfg, epoch, batches_per_epoch));
        let mut order: Vec<usize> = (0..train.encoded.len()).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (bi, rows) in order.chunks(cfg.batch_size).enumerate() {
            let loss = trainer
                .batch(tokenizer, train, rows, bi + 1 == batches_per_epoch)
                .map_err(|e| at_batch(e, epoch, bi))?;
            loss_sum += loss * rows.len() as f64;
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let eval = trainer.model.valid();
        let logits = eval
            .clone()
            .into_extractor()
            .run(tokenizer, val.encoded, cfg.batch_size.max(32), device, None)?;
        let (val_loss, val_accuracy) = host_metrics(logits.logits.as_deref().unwrap_or_default(), classes, val.labels);
        epochs.push(EpochRecord {
            epoch,
            train_loss: loss_sum / train.encoded.len() as f64,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        });
        if best
            .as_ref()
            .is_none_or(|(acc, loss, _, _)| better(val_accuracy, val_loss, *acc, *loss))
        {
            best = Some((val_accuracy, val_loss, epoch, eval));
        }
    }
    let (_, _, best_epoch, best_model) = best.ok_or_else(|| BackboneError::Invalid("no epoch ran".into()))?;
    let report = FinetuneReport {
        config: cfg.clone(),
        epochs,
        best_epoch,
        steps: trainer.steps,
        trainable_parameters: trainer.trainable_parameters,
    };
    Ok((best_model.materialize(), report))
}

/// The progress bar of one epoch of `full` or `lora`.
fn epoch_bar(cfg: &FinetuneConfig, epoch: usize, batches: usize) -> ProgressBar {
    progress_bar(
        batches as u64,
        format!("{} epoch {epoch}/{}", cfg.mode.name(), cfg.epochs),
    )
}

/// A non-finite loss, with the epoch and batch (0-based `bi`) where it appeared.
fn at_batch(e: BackboneError, epoch: usize, bi: usize) -> BackboneError {
    match e {
        BackboneError::NonFinite(m) => BackboneError::NonFinite(format!("{m} (epoch {epoch}, batch {})", bi + 1)),
        e => e,
    }
}

/// The best-epoch rule: higher validation accuracy, then lower validation loss (an equal pair
/// keeps the earlier epoch).
fn better(acc: f64, loss: f64, best_acc: f64, best_loss: f64) -> bool {
    acc > best_acc || (acc == best_acc && loss < best_loss)
}

/// Optimizer steps of a run: every `grad_accumulation` batches and at the end of each epoch.
fn total_steps(cfg: &FinetuneConfig, batches_per_epoch: usize) -> usize {
    (batches_per_epoch.div_ceil(cfg.grad_accumulation) * cfg.epochs).max(1)
}

/// `full` or `lora` on the host engine ([`HostTrainer`]): the same loop as burn's (order,
/// schedule, accumulation, best epoch), PyTorch's AdamW and global clipping.
fn finetune_host(
    mut model: SequenceClassifier,
    tokenizer: &TextTokenizer,
    train: LabeledSplit<'_>,
    val: LabeledSplit<'_>,
    cfg: &FinetuneConfig,
    show_progress: bool,
) -> Result<(SequenceClassifier, FinetuneReport)> {
    let classes = model.num_classes();
    let mut t = HostTrainer::new(&model, &cfg.mode, Dropouts::of(&model), cfg.seed)?;
    let (pad, positions) = (tokenizer.pad_id(), tokenizer.positions());
    let batches_per_epoch = train.encoded.len().div_ceil(cfg.batch_size);
    let total = total_steps(cfg, batches_per_epoch);
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as usize;
    let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
    let mut epochs = Vec::new();
    // (val accuracy, val loss, epoch, the trainable values unless they are the last epoch's)
    type Best = (f64, f64, usize, Option<Vec<Vec<f32>>>);
    let mut best: Option<Best> = None;
    let mut steps = 0;
    let val_refs: Vec<&Encoded> = val.encoded.iter().collect();
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let bar = show_progress.then(|| epoch_bar(cfg, epoch, batches_per_epoch));
        let mut order: Vec<usize> = (0..train.encoded.len()).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        let mut in_accum = 0;
        for (bi, rows) in order.chunks(cfg.batch_size).enumerate() {
            let batch: Vec<&Encoded> = rows.iter().map(|&r| &train.encoded[r]).collect();
            let labels: Vec<usize> = rows.iter().map(|&r| train.labels[r]).collect();
            // Errors name the split's rows.
            let loss = t
                .accumulate(
                    &batch,
                    Some(rows),
                    &labels,
                    pad,
                    positions,
                    1.0 / cfg.grad_accumulation as f64,
                )
                .map_err(|e| at_batch(e, epoch, bi))?;
            loss_sum += loss * rows.len() as f64;
            in_accum += 1;
            if in_accum == cfg.grad_accumulation || bi + 1 == batches_per_epoch {
                t.step(&AdamW {
                    lr: linear_schedule(cfg.lr, steps, warmup, total),
                    weight_decay: cfg.weight_decay,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    max_grad_norm: cfg.max_grad_norm,
                });
                steps += 1;
                in_accum = 0;
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let mut logits = Vec::with_capacity(val.encoded.len() * classes);
        let val_rows: Vec<usize> = (0..val_refs.len()).collect();
        let chunk = cfg.batch_size.max(32);
        for (refs, names) in val_refs.chunks(chunk).zip(val_rows.chunks(chunk)) {
            logits.extend(t.logits(refs, Some(names), pad, positions)?);
        }
        let (val_loss, val_accuracy) = host_metrics(&logits, classes, val.labels);
        epochs.push(EpochRecord {
            epoch,
            train_loss: loss_sum / train.encoded.len() as f64,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        });
        if best
            .as_ref()
            .is_none_or(|(acc, loss, _, _)| better(val_accuracy, val_loss, *acc, *loss))
        {
            // The last epoch's values are the trainer's own: no copy (a whole model in `full`).
            let snapshot = (epoch < cfg.epochs).then(|| t.snapshot());
            best = Some((val_accuracy, val_loss, epoch, snapshot));
        }
    }
    let (_, _, best_epoch, snapshot) = best.ok_or_else(|| BackboneError::Invalid("no epoch ran".into()))?;
    let trainable_parameters = t.trainable_parameters();
    if let Some(snapshot) = snapshot {
        t.restore(snapshot)?;
    }
    t.write_into(&mut model)?;
    let report = FinetuneReport {
        config: cfg.clone(),
        epochs,
        best_epoch,
        steps,
        trainable_parameters,
    };
    Ok((model, report))
}

/// The optimisation state of a `full` or `lora` run: the model on the autodiff device, AdamW,
/// the schedule and the gradient accumulator. [`finetune`] drives it epoch by epoch; benches
/// drive it batch by batch.
pub struct Trainer<M: ClassifierModel> {
    /// The model being trained (on the autodiff device).
    pub model: M,
    optim: ModuleOptimizer,
    loss_fn: burn::nn::loss::CrossEntropyLoss,
    accum: GradientsAccumulator<M>,
    in_accum: usize,
    grad_accumulation: usize,
    lr: f64,
    warmup: usize,
    total: usize,
    ad: Device,
    max_grad_norm: Option<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Scalars that require gradients.
    pub trainable_parameters: usize,
}

impl<M: ClassifierModel> Trainer<M> {
    /// Moves `model` to `device`'s autodiff twin and prepares it for `cfg.mode` (`full` or
    /// `lora`); `batches_per_epoch` and `cfg.epochs` size the learning-rate schedule (the steps
    /// [`finetune`] takes: every `grad_accumulation` batches and at each epoch's end).
    ///
    /// # Errors
    /// `frozen` (which [`finetune`] trains on cached features), or a bad LoRA target list.
    pub fn new(model: M, cfg: &FinetuneConfig, batches_per_epoch: usize, device: &Device) -> Result<Self> {
        let ad = device.clone().autodiff();
        let model = model.fork(&ad).train();
        let model = match &cfg.mode {
            FinetuneMode::Full => model,
            FinetuneMode::Lora { r, alpha, targets } => {
                let names: Vec<String> = targets.iter().map(|t| model.lora_target(t)).collect();
                let pattern = format!(r"\.({})\.weight$", names.join("|"));
                let group = ParamGroup::from_regex(&pattern)
                    .map_err(|e| BackboneError::Invalid(format!("lora targets: {e:?}")))?;
                let head = ParamGroup::from_regex(format!("^{}", regex_escape(model.head_prefix())))
                    .map_err(|e| BackboneError::Invalid(format!("head group: {e:?}")))?;
                // PEFT draws A from kaiming_uniform(a = √5): variance 1 / (3 · fan_in). burn's
                // LoRA draws a normal; the same variance keeps the early updates the same size.
                let d = model.lora_fan_in();
                let mut lora = Lora::new(*r, *alpha).set_param_group(group);
                lora.init_std = Some((1.0 / (3.0 * d as f64)).sqrt());
                model.apply_lora(lora).unfreeze_group(head)
            }
            FinetuneMode::Frozen => {
                return Err(BackboneError::Invalid(
                    "frozen fine-tuning trains the head on cached features".into(),
                ));
            }
        };
        let total = total_steps(cfg, batches_per_epoch);
        Ok(Self {
            trainable_parameters: trainable_parameters(&model),
            model,
            optim: optimizer(cfg)?,
            loss_fn: CrossEntropyLossConfig::new().init(&ad),
            accum: GradientsAccumulator::new(),
            in_accum: 0,
            grad_accumulation: cfg.grad_accumulation,
            lr: cfg.lr,
            warmup: (cfg.warmup_ratio * total as f64).ceil() as usize,
            total,
            ad,
            max_grad_norm: cfg.max_grad_norm,
            steps: 0,
        })
    }

    /// Forward and backward on the rows `rows` of `split`, accumulating gradients; an
    /// optimizer step every `grad_accumulation` batches or when `last` (end of an epoch).
    /// Returns the batch's mean loss.
    ///
    /// # Errors
    /// A non-finite loss.
    pub fn batch(
        &mut self,
        tokenizer: &TextTokenizer,
        split: LabeledSplit<'_>,
        rows: &[usize],
        last: bool,
    ) -> Result<f64> {
        let input = tokenizer.collate(split.encoded, rows, &self.ad);
        let targets = labels_tensor(split.labels, rows, &self.ad);
        let loss = self.loss_fn.forward(self.model.classify(&input).logits, targets);
        let value = f64::from(loss.clone().into_scalar::<f32>());
        if !value.is_finite() {
            return Err(BackboneError::NonFinite("non-finite training loss".into()));
        }
        let grads = (loss / self.grad_accumulation as f64).backward();
        self.accum
            .accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
        self.in_accum += 1;
        if self.in_accum == self.grad_accumulation || last {
            let lr = linear_schedule(self.lr, self.steps, self.warmup, self.total);
            let mut grads = self.accum.grads();
            clip_global(&self.model, &mut grads, self.max_grad_norm)?;
            self.model = self.optim.step(lr, self.model.clone(), grads);
            self.steps += 1;
            self.in_accum = 0;
        }
        Ok(value)
    }
}

/// Number of scalars that require gradients.
fn trainable_parameters<M: Module>(model: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// `frozen`: features once (backbone without dropout), then the head alone.
fn finetune_frozen<M: ClassifierModel>(
    model: M,
    tokenizer: &TextTokenizer,
    train: LabeledSplit<'_>,
    val: LabeledSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(M, FinetuneReport)> {
    let classes = model.num_classes();
    let (extractor, head) = model.split();
    let bar = show_progress.then(|| {
        progress_bar(
            (train.encoded.len() + val.encoded.len()) as u64,
            "frozen: features".into(),
        )
    });
    let ftrain = extractor.run(tokenizer, train.encoded, 64, device, bar.as_ref())?;
    let fval = extractor.run(tokenizer, val.encoded, 64, device, bar.as_ref())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (head, report) = train_head::<M>(
        head,
        classes,
        FeatureSplit::new(&ftrain.features, ftrain.dim, train.labels)?,
        FeatureSplit::new(&fval.features, fval.dim, val.labels)?,
        cfg,
        device,
        show_progress,
    )?;
    Ok((M::join(extractor, head)?, report))
}

/// Features `[N, d]` (row-major) of one split with its labels, as a frozen backbone computed
/// them: what `frozen` trains on, and what a runner computes once and reuses for every seed.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSplit<'a> {
    /// `[N, d]`, row-major.
    pub features: &'a [f32],
    /// d.
    pub dim: usize,
    /// Gold class per row.
    pub labels: &'a [usize],
}

impl<'a> FeatureSplit<'a> {
    /// Checks that `features` holds one `dim`-wide row per label.
    ///
    /// # Errors
    /// A zero width or a row count that differs from the number of labels.
    pub fn new(features: &'a [f32], dim: usize, labels: &'a [usize]) -> Result<Self> {
        if dim == 0 || features.len() != dim * labels.len() {
            return Err(BackboneError::Invalid(format!(
                "{} feature values are not {} rows of width {dim}",
                features.len(),
                labels.len()
            )));
        }
        Ok(Self { features, dim, labels })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// `frozen` fine-tuning on precomputed features: trains the head of `model` (initialised or
/// loaded as it is) on `train`, selecting the epoch by `val`, and leaves the backbone as it was.
/// Gives the same model as [`finetune`] in `frozen` mode on the texts those features came from.
///
/// # Errors
/// Bad hyperparameters, features of the wrong width, labels out of range, a non-finite loss.
pub fn finetune_on_features<M: ClassifierModel>(
    model: M,
    train: FeatureSplit<'_>,
    val: FeatureSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(M, FinetuneReport)> {
    cfg.validate()?;
    if cfg.mode != FinetuneMode::Frozen {
        return Err(BackboneError::Invalid(format!(
            "training on precomputed features needs a frozen backbone, not `{}`",
            cfg.mode.name()
        )));
    }
    let classes = model.num_classes();
    for (name, s) in [("train", &train), ("val", &val)] {
        if s.is_empty() {
            return Err(BackboneError::Invalid(format!("the {name} split is empty")));
        }
        if let Some((i, l)) = s.labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(BackboneError::Invalid(format!(
                "{name} row {i}: label {l} is out of range for {classes} classes"
            )));
        }
    }
    device.seed(cfg.seed);
    let (extractor, head) = model.split();
    let (head, report) = train_head::<M>(head, classes, train, val, cfg, device, show_progress)?;
    Ok((M::join(extractor, head)?, report))
}

/// The head alone on features: AdamW with the linear schedule, best epoch by val accuracy
/// (then loss).
fn train_head<M: ClassifierModel>(
    head: M::Head,
    classes: usize,
    train: FeatureSplit<'_>,
    val: FeatureSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(M::Head, FinetuneReport)> {
    let d = train.dim;
    if val.dim != d {
        return Err(BackboneError::Invalid(format!(
            "train features have width {d} but val features {}",
            val.dim
        )));
    }
    let ad = device.clone().autodiff();
    let mut head: M::Head = head.fork(&ad).train();
    let trainable = trainable_parameters(&head);
    let mut optim = optimizer(cfg)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
    let n = train.len();
    let batches_per_epoch = n.div_ceil(cfg.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(cfg.grad_accumulation);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as usize;
    let val_x = Tensor::<2>::from_data(TensorData::new(val.features.to_vec(), [val.len(), d]), device);
    let mut step = 0;
    let mut epochs = Vec::new();
    let mut best: Option<(f64, f64, usize, M::Head)> = None;
    let bar = show_progress.then(|| progress_bar(cfg.epochs as u64, "frozen: head".into()));
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut accum = GradientsAccumulator::new();
        let mut in_accum = 0;
        let mut loss_sum = 0.0;
        for (bi, rows) in order.chunks(cfg.batch_size).enumerate() {
            let mut x = Vec::with_capacity(rows.len() * d);
            for &r in rows {
                x.extend_from_slice(&train.features[r * d..(r + 1) * d]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(x, [rows.len(), d]), &ad);
            let loss = loss_fn.forward(M::head_forward(&head, x), labels_tensor(train.labels, rows, &ad));
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            if !loss_value.is_finite() {
                return Err(BackboneError::NonFinite(format!(
                    "non-finite training loss at epoch {epoch}, batch {}",
                    bi + 1
                )));
            }
            loss_sum += loss_value * rows.len() as f64;
            let grads = (loss / cfg.grad_accumulation as f64).backward();
            accum.accumulate(&head, GradientsParams::from_grads(grads, &head));
            in_accum += 1;
            if in_accum == cfg.grad_accumulation || bi + 1 == batches_per_epoch {
                let mut grads = accum.grads();
                clip_global(&head, &mut grads, cfg.max_grad_norm)?;
                head = optim.step(linear_schedule(cfg.lr, step, warmup, total), head, grads);
                step += 1;
                in_accum = 0;
            }
        }
        let eval = head.valid();
        let logits = to_host(M::head_forward(&eval, val_x.clone()))?;
        let (val_loss, val_accuracy) = host_metrics(&logits, classes, val.labels);
        epochs.push(EpochRecord {
            epoch,
            train_loss: loss_sum / n as f64,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        });
        if best
            .as_ref()
            .is_none_or(|(acc, loss, _, _)| better(val_accuracy, val_loss, *acc, *loss))
        {
            best = Some((val_accuracy, val_loss, epoch, eval));
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (_, _, best_epoch, head) = best.ok_or_else(|| BackboneError::Invalid("no epoch ran".into()))?;
    let report = FinetuneReport {
        config: cfg.clone(),
        epochs,
        best_epoch,
        steps: step,
        trainable_parameters: trainable,
    };
    Ok((head, report))
}

/// `s` with the regex metacharacters it may hold (`.`) escaped.
fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}
