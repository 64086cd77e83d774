//! Fine-tuning a sequence classifier: `full`, `lora` or `frozen`, with AdamW, a linear
//! warm-up and decay (transformers' `get_linear_schedule_with_warmup`), gradient accumulation,
//! gradient-norm clipping and the best epoch by validation accuracy.
//!
//! `frozen` trains only the head; since the frozen backbone runs without dropout, its features
//! are the same every epoch, so they are computed once and the head trains on them: the same
//! result as re-running the backbone every step, at a fraction of the cost.

use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Lora, Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use ueb_rng::{Rng64, Xoshiro256};

use crate::encoder::{SequenceClassifier, SequenceHead};
use crate::error::{BackboneError, Result};
use crate::extract::{Extractor, to_host};
use crate::tokenize::{Encoded, TextTokenizer};

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
    /// AdamW's decoupled weight decay (not applied to biases and LayerNorm parameters).
    pub weight_decay: f64,
    /// Global gradient-norm clipping (none when absent).
    pub max_grad_norm: Option<f64>,
    /// Seed of the shuffling, dropout and new parameters.
    pub seed: u64,
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
    ParamGroup::from_any_regexes(vec![r"\.bias$", r"layer_norm\.(gamma|beta)$"])
        .map_err(|e| BackboneError::Invalid(format!("parameter group: {e:?}")))
}

fn optimizer(cfg: &FinetuneConfig) -> Result<ModuleOptimizer> {
    let base = |wd: f64| {
        AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32)
            .with_grad_clipping(cfg.max_grad_norm.map(|g| GradientClippingConfig::Norm(g as f32)))
    };
    Ok(base(cfg.weight_decay).init().with_group(
        no_decay_group()?,
        base(0.0).build(),
        cfg.max_grad_norm.map(|g| GradientClippingConfig::Norm(g as f32).init()),
    ))
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
pub fn finetune(
    model: SequenceClassifier,
    tokenizer: &TextTokenizer,
    train: LabeledSplit<'_>,
    val: LabeledSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(SequenceClassifier, FinetuneReport)> {
    cfg.validate()?;
    let classes = model.head.out_proj.weight.dims()[1];
    train.check("train", classes)?;
    val.check("val", classes)?;
    device.seed(cfg.seed);
    if cfg.mode == FinetuneMode::Frozen {
        return finetune_frozen(model, tokenizer, train, val, cfg, device, show_progress);
    }
    let batches_per_epoch = train.encoded.len().div_ceil(cfg.batch_size);
    let mut trainer = Trainer::new(model, cfg, batches_per_epoch * cfg.epochs, device)?;
    let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
    let mut epochs = Vec::new();
    let mut best: Option<(f64, f64, usize, SequenceClassifier)> = None;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let bar = show_progress.then(|| {
            progress_bar(
                batches_per_epoch as u64,
                format!("{} epoch {epoch}/{}", cfg.mode.name(), cfg.epochs),
            )
        });
        let mut order: Vec<usize> = (0..train.encoded.len()).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (bi, rows) in order.chunks(cfg.batch_size).enumerate() {
            let loss = trainer
                .batch(tokenizer, train, rows, bi + 1 == batches_per_epoch)
                .map_err(|e| match e {
                    BackboneError::NonFinite(m) => {
                        BackboneError::NonFinite(format!("{m} (epoch {epoch}, batch {})", bi + 1))
                    }
                    e => e,
                })?;
            loss_sum += loss * rows.len() as f64;
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let eval = trainer.model.valid();
        let logits = Extractor::Classifier(Box::new(eval.clone())).run(
            tokenizer,
            val.encoded,
            cfg.batch_size.max(32),
            device,
            None,
        )?;
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
            .is_none_or(|(acc, loss, _, _)| val_accuracy > *acc || (val_accuracy == *acc && val_loss < *loss))
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

/// The optimisation state of a `full` or `lora` run: the model on the autodiff device, AdamW,
/// the schedule and the gradient accumulator. [`finetune`] drives it epoch by epoch; benches
/// drive it batch by batch.
pub struct Trainer {
    /// The model being trained (on the autodiff device).
    pub model: SequenceClassifier,
    optim: ModuleOptimizer,
    loss_fn: burn::nn::loss::CrossEntropyLoss,
    accum: GradientsAccumulator<SequenceClassifier>,
    in_accum: usize,
    grad_accumulation: usize,
    lr: f64,
    warmup: usize,
    total: usize,
    ad: Device,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Scalars that require gradients.
    pub trainable_parameters: usize,
}

impl Trainer {
    /// Moves `model` to `device`'s autodiff twin and prepares it for `cfg.mode` (`full` or
    /// `lora`); `total_batches` sizes the learning-rate schedule.
    ///
    /// # Errors
    /// `frozen` (which [`finetune`] trains on cached features), or a bad LoRA target list.
    pub fn new(model: SequenceClassifier, cfg: &FinetuneConfig, total_batches: usize, device: &Device) -> Result<Self> {
        let ad = device.clone().autodiff();
        let model = model.fork(&ad).train();
        let model = match &cfg.mode {
            FinetuneMode::Full => model,
            FinetuneMode::Lora { r, alpha, targets } => {
                let pattern = format!(r"\.({})\.weight$", targets.join("|"));
                let group = ParamGroup::from_regex(&pattern)
                    .map_err(|e| BackboneError::Invalid(format!("lora targets: {e:?}")))?;
                let head = ParamGroup::from_regex(r"^head\.")
                    .map_err(|e| BackboneError::Invalid(format!("head group: {e:?}")))?;
                // PEFT draws A from kaiming_uniform(a = √5): variance 1 / (3 · fan_in). burn's
                // LoRA draws a normal; the same variance keeps the early updates the same size.
                let d = model
                    .backbone
                    .encoder
                    .layer
                    .first()
                    .map_or(1, |l| l.attention.self_attn.query.weight.dims()[0]);
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
        let total = total_batches.div_ceil(cfg.grad_accumulation).max(1);
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
        let loss = self.loss_fn.forward(self.model.forward(&input).logits, targets);
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
            self.model = self.optim.step(lr, self.model.clone(), self.accum.grads());
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
fn finetune_frozen(
    model: SequenceClassifier,
    tokenizer: &TextTokenizer,
    train: LabeledSplit<'_>,
    val: LabeledSplit<'_>,
    cfg: &FinetuneConfig,
    device: &Device,
    show_progress: bool,
) -> Result<(SequenceClassifier, FinetuneReport)> {
    let SequenceClassifier { backbone, head } = model;
    let extractor = Extractor::Backbone(Box::new(backbone));
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
    let Extractor::Backbone(backbone) = extractor else {
        return Err(BackboneError::Invalid("extractor changed kind".into()));
    };
    let d = ftrain.dim;
    let ad = device.clone().autodiff();
    let mut head: SequenceHead = head.fork(&ad).train();
    let trainable = trainable_parameters(&head);
    let classes = head.out_proj.weight.dims()[1];
    let mut optim = optimizer(cfg)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
    let n = train.encoded.len();
    let batches_per_epoch = n.div_ceil(cfg.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(cfg.grad_accumulation);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as usize;
    let val_x = Tensor::<2>::from_data(TensorData::new(fval.features.clone(), [val.encoded.len(), d]), device);
    let mut step = 0;
    let mut epochs = Vec::new();
    let mut best: Option<(f64, f64, usize, SequenceHead)> = None;
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
                x.extend_from_slice(&ftrain.features[r * d..(r + 1) * d]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(x, [rows.len(), d]), &ad);
            let loss = loss_fn.forward(head.forward(x), labels_tensor(train.labels, rows, &ad));
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
                head = optim.step(linear_schedule(cfg.lr, step, warmup, total), head, accum.grads());
                step += 1;
                in_accum = 0;
            }
        }
        let eval = head.valid();
        let logits = to_host(eval.forward(val_x.clone()))?;
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
            .is_none_or(|(acc, loss, _, _)| val_accuracy > *acc || (val_accuracy == *acc && val_loss < *loss))
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
    Ok((
        SequenceClassifier {
            backbone: *backbone,
            head,
        },
        report,
    ))
}
