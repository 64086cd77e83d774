//! The grid search: one training run per grid point, each with the same seeded shuffles and
//! dropout masks, selected by the ROC-AUC of `u` against the model's errors on the selection
//! split.

use burn::tensor::{Device, FloatDType, Tensor};
use serde::Serialize;
use serde_json::json;
use ueb_metrics::ErrorDetection;
use ueb_rng::{Rng64, Xoshiro256};

use super::schedule::OneCycle;
use super::score::Method;
use super::trainer::{
    HeadTrainer, HeadTrainerOptions, HostBatch, Kept, check_classifier, runs_on_host, upload_index, upload1, upload2,
};
use super::{ResolvedConfig, TrainableConfig, TrainedHead};
use crate::error::HeadError;
use crate::head::FitContext;
use ueb_cache::{Classifier, SplitData};

/// Stream of the epoch shuffles within the fit seed (dropout masks use another).
const SHUFFLE_STREAM: u64 = 0x5348_5546; // "SHUF"
/// Rows per forward pass when scoring the selection split on the device.
const EVAL_ROWS: usize = 8192;
/// ECE bins of the error-detection report (only its ROC-AUC is used here).
const BINS: usize = 15;

/// One grid point's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Hyper {
    lr: f64,
    alpha: f64,
    beta: f64,
    /// AdUE: epochs trained; ALIEN: most epochs (the schedule's span).
    epochs: usize,
}

/// One epoch of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct EpochRecord {
    epoch: usize,
    /// `null` when the run diverged in this epoch (non-finite loss, or selection scores that
    /// are non-finite or all equal).
    val_roc_auc: Option<f64>,
    /// Mean training loss over the epoch's batches (with dropout), weighted by batch size.
    train_loss: f64,
}

/// What one run produced.
struct Run {
    /// Selection ROC-AUC of the kept weights; `None` when nothing usable was kept.
    val_roc_auc: Option<f64>,
    best_epoch: usize,
    epochs_run: usize,
    diverged: bool,
    curve: Vec<EpochRecord>,
    kept: Option<Kept>,
}

/// The data of one fit, placed once for every grid point.
struct FitData<'a> {
    n: usize,
    select_errors: Vec<bool>,
    placed: Placed<'a>,
}

/// A fit's data on a burn device.
struct DeviceData {
    x: Tensor<2>,
    e: Tensor<1>,
    anchor: Tensor<1>,
    select_blocks: Vec<Tensor<2>>,
}

/// Where a fit's data lives: on the device for burn's engine, read in place for the host's.
enum Placed<'a> {
    /// Uploaded once.
    Device(Box<DeviceData>),
    /// The splits' own rows.
    Host {
        features: &'a [f32],
        errors: Vec<bool>,
        anchors: Vec<f64>,
        select: &'a [f32],
    },
}

fn check_split(name: &str, which: &str, split: &SplitData, cls: &Classifier) -> Result<(), HeadError> {
    if split.n() == 0 {
        return Err(HeadError::fit(name, format!("the {which} split is empty")));
    }
    if split.dim() != cls.dim
        || split.num_classes() != cls.num_classes
        || split.features.len() != split.n() * cls.dim
        || split.logits.len() != split.n() * cls.num_classes
    {
        return Err(HeadError::config(
            name,
            format!(
                "the {which} split ({} rows, d = {}, C = {}) does not match the classifier (d = {}, C = {})",
                split.n(),
                split.dim(),
                split.num_classes(),
                cls.dim,
                cls.num_classes
            ),
        ));
    }
    Ok(())
}

/// Selection ROC-AUC of the current weights, or `None` when a score is not finite (the run
/// diverged).
fn select_auc(
    method: Method,
    trainer: &mut HeadTrainer,
    data: &FitData<'_>,
    lambda: f64,
    c: usize,
) -> Result<Option<f64>, HeadError> {
    let name = method.name();
    let mut u = Vec::with_capacity(data.select_errors.len());
    match &data.placed {
        Placed::Device(dev) => {
            let mut row = vec![0.0f64; c];
            for block in &dev.select_blocks {
                let z: Vec<f32> = trainer
                    .logits_device(block.clone())?
                    .try_into_vec_as::<f32>()
                    .map_err(|e| HeadError::fit(name, format!("reading logits back from the device failed: {e}")))?;
                for zr in z.chunks_exact(c) {
                    for (r, &v) in row.iter_mut().zip(zr) {
                        *r = f64::from(v);
                    }
                    u.push(method.score_row(&row, lambda));
                }
            }
        }
        Placed::Host { select, .. } => {
            let z = trainer.logits_host(select)?;
            u.extend(z.chunks_exact(c).map(|zr| method.score_row(zr, lambda)));
        }
    }
    if u.iter().any(|v| !v.is_finite()) {
        return Ok(None);
    }
    // Scores that no longer vary rank nothing: weights blown up to huge finite values saturate
    // the softmax, every score is the same and the ROC-AUC a meaningless ½ (decision T24).
    let (lo, hi) = u.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if u.len() > 1 && lo == hi {
        return Ok(None);
    }
    let report = ErrorDetection::compute(&data.select_errors, &u, BINS)?;
    report
        .roc_auc
        .map(Some)
        .map_err(|why| HeadError::fit(name, format!("selection ROC-AUC is undefined: {why:?}")))
}

/// One training run of one grid point.
fn run(
    method: Method,
    rc: &ResolvedConfig,
    hp: Hyper,
    cls: &Classifier,
    data: &FitData<'_>,
    seed: u64,
    device: &Device,
) -> Result<Run, HeadError> {
    let opts = HeadTrainerOptions {
        lambda: rc.lambda,
        alpha: hp.alpha,
        beta: hp.beta,
        dropout: rc.dropout,
        adam_beta1: rc.adam_beta1,
        adam_beta2: rc.adam_beta2,
        adam_eps: rc.adam_eps,
        precision: rc.precision,
        dropout_seed: seed,
        engine: rc.engine,
    };
    let mut trainer = HeadTrainer::new(method, cls, cls, opts, device)?;
    let n = data.n;
    let steps_per_epoch = n.div_ceil(rc.batch_size);
    let total_steps = hp.epochs * steps_per_epoch;
    let pct_start = if rc.whole_warmup_steps {
        (rc.pct_start * total_steps as f64).floor() / total_steps as f64
    } else {
        rc.pct_start
    };
    let schedule = OneCycle {
        total_steps,
        max_lr: hp.lr,
        pct_start,
        div_factor: rc.div_factor,
        final_div_factor: rc.final_div_factor,
        cycle_momentum: rc.cycle_momentum,
        base_momentum: rc.base_momentum,
        max_momentum: rc.max_momentum,
    };
    let mut shuffle = Xoshiro256::new(seed, SHUFFLE_STREAM);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut step = 0usize;
    let mut out = Run {
        val_roc_auc: None,
        best_epoch: 0,
        epochs_run: 0,
        diverged: false,
        curve: Vec::new(),
        kept: None,
    };
    let mut wait = 0usize;
    let c = cls.num_classes;
    let mut batch = HostBatch::default();
    for epoch in 1..=hp.epochs {
        // A fresh permutation per epoch, as PyTorch's RandomSampler draws one.
        order.clear();
        order.extend(0..n);
        shuffle.shuffle(&mut order);
        // The device's sum stays on the device until the epoch ends (no wait per step).
        let mut loss_sum: Option<Tensor<1>> = None;
        let mut host_sum = 0.0f64;
        for rows in order.chunks(rc.batch_size) {
            let at = schedule.at(step);
            step += 1;
            match &data.placed {
                Placed::Device(dev) => {
                    let idx = upload_index(rows, trainer.device()?);
                    let x = dev.x.clone().select(0, idx.clone());
                    let e = dev.e.clone().select(0, idx.clone());
                    let a = dev.anchor.clone().select(0, idx);
                    let l = trainer.step_device(x, e, a, at)?;
                    let weighted = l.total.mul_scalar(rows.len() as f64);
                    loss_sum = Some(match loss_sum {
                        Some(acc) => acc + weighted,
                        None => weighted,
                    });
                }
                Placed::Host {
                    features,
                    errors,
                    anchors,
                    ..
                } => {
                    let l = trainer.step_host_rows(features, errors, anchors, rows, at, &mut batch)?;
                    host_sum += l.total * rows.len() as f64;
                }
            }
        }
        // `n > 0`: `check_split` refuses an empty fit split.
        let train_loss = match (&data.placed, loss_sum) {
            (Placed::Host { .. }, _) => host_sum / n as f64,
            (Placed::Device(_), Some(t)) => {
                t.try_into_scalar::<f64>()
                    .map_err(|e| HeadError::fit(method.name(), format!("reading the loss back failed: {e}")))?
                    / n as f64
            }
            (Placed::Device(_), None) => f64::NAN,
        };
        out.epochs_run = epoch;
        let auc = if train_loss.is_finite() {
            select_auc(method, &mut trainer, data, rc.lambda, c)?
        } else {
            None
        };
        out.curve.push(EpochRecord {
            epoch,
            val_roc_auc: auc,
            train_loss,
        });
        let Some(auc) = auc else {
            // Diverged: ALIEN keeps its best epoch so far (Lightning's EarlyStopping stops on a
            // non-finite monitor, the checkpoint survives); AdUE's last epoch is unusable.
            out.diverged = true;
            if rc.patience.is_none() {
                out.val_roc_auc = None;
                out.kept = None;
            }
            break;
        };
        match rc.patience {
            // AdUE: the weights after the last epoch.
            None => {
                out.val_roc_auc = Some(auc);
                out.best_epoch = epoch;
                if epoch == hp.epochs {
                    out.kept = Some(trainer.snapshot());
                }
            }
            // ALIEN: keep the best epoch (strict improvement, first wins), stop after
            // `patience` epochs without one.
            Some(patience) => {
                if out.val_roc_auc.is_none_or(|best| auc > best) {
                    out.val_roc_auc = Some(auc);
                    out.best_epoch = epoch;
                    out.kept = Some(trainer.snapshot());
                    wait = 0;
                } else {
                    wait += 1;
                    if wait >= patience {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn fit(method: Method, cfg: &TrainableConfig, ctx: &FitContext<'_>) -> Result<TrainedHead, HeadError> {
    let name = method.name();
    let cls = &ctx.cache.classifier;
    check_classifier(name, cls)?;
    let rc = cfg.resolve(method, cls.kind)?;
    let fit_split = ctx.split(ctx.fit);
    let select = ctx.split(ctx.select);
    check_split(name, ctx.fit.as_str(), fit_split, cls)?;
    check_split(name, ctx.select.as_str(), select, cls)?;
    let fit_errors = fit_split.errors();
    let n_fit_err = fit_errors.iter().filter(|&&e| e).count();
    if n_fit_err == 0 {
        return Err(HeadError::fit(
            name,
            format!(
                "the model makes no error on the {} split: there is nothing to learn",
                ctx.fit
            ),
        ));
    }
    let select_errors = select.errors();
    let n_sel_err = select_errors.iter().filter(|&&e| e).count();
    if n_sel_err == 0 || n_sel_err == select_errors.len() {
        return Err(HeadError::fit(
            name,
            format!(
                "the {} split has {n_sel_err} errors in {} rows: its ROC-AUC, which selects the grid point, is undefined",
                ctx.select,
                select_errors.len()
            ),
        ));
    }

    let device = ctx.device.clone().without_autodiff();
    let dtype: FloatDType = rc.precision.dtype();
    let (n, d) = (fit_split.n(), cls.dim);
    let placed = if runs_on_host(rc.engine, &device) {
        Placed::Host {
            features: &fit_split.features,
            errors: fit_errors,
            anchors: method.anchors(fit_split),
            select: &select.features,
        }
    } else {
        let e: Vec<f32> = fit_errors.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        Placed::Device(Box::new(DeviceData {
            x: upload2(fit_split.features.clone(), n, d, &device, dtype),
            e: upload1(e, &device, dtype),
            anchor: upload1(method.anchors(fit_split), &device, dtype),
            select_blocks: select
                .features
                .chunks(EVAL_ROWS * d)
                .map(|block| upload2(block.to_vec(), block.len() / d, d, &device, dtype))
                .collect(),
        }))
    };
    let engine = if matches!(placed, Placed::Host { .. }) {
        "host"
    } else {
        "burn"
    };
    let data = FitData {
        n,
        select_errors,
        placed,
    };

    let init_auc = {
        let init = TrainedHead::at_initialisation(method, rc.lambda, cls)?;
        let u = crate::head::Head::score(&init, select)?;
        ErrorDetection::compute(&data.select_errors, &u, BINS)?.roc_auc.ok()
    };

    let mut grid = Vec::new();
    let mut best: Option<(Hyper, Run)> = None;
    // The reference's loop order: α, (λ), lr, β, epochs.
    for &alpha in &rc.alpha {
        for &lr in &rc.lr {
            for &beta in &rc.beta {
                for &epochs in &rc.epochs {
                    let hp = Hyper {
                        lr,
                        alpha,
                        beta,
                        epochs,
                    };
                    let r = run(method, &rc, hp, cls, &data, ctx.seed, &device)?;
                    grid.push(json!({
                        "lr": lr,
                        "alpha": alpha,
                        "beta": beta,
                        "epochs": epochs,
                        "epochs_run": r.epochs_run,
                        "best_epoch": r.best_epoch,
                        "val_roc_auc": r.val_roc_auc,
                        "diverged": r.diverged,
                    }));
                    let better = match (&r.kept, r.val_roc_auc, &best) {
                        (Some(_), Some(auc), Some((_, b))) => b.val_roc_auc.is_none_or(|bv| auc > bv),
                        (Some(_), Some(_), None) => true,
                        _ => false,
                    };
                    if better {
                        best = Some((hp, r));
                    }
                }
            }
        }
    }
    let Some((hp, r)) = best else {
        return Err(HeadError::fit(
            name,
            "every grid point diverged (non-finite or constant scores); lower the learning rates",
        ));
    };
    let Some(kept) = r.kept else {
        return Err(HeadError::fit(name, "internal: the chosen run kept no weights"));
    };
    let params = kept.into_params(name)?;
    let weights = params.to_classifier(cls);
    let summary = json!({
        "head": name,
        "config": rc,
        "fit_split": ctx.fit,
        "select_split": ctx.select,
        "seed": ctx.seed,
        "device": format!("{:?}", ctx.device),
        "engine": engine,
        "fit_rows": n,
        "fit_errors": n_fit_err,
        "select_rows": data.select_errors.len(),
        "select_errors": n_sel_err,
        "init_val_roc_auc": init_auc,
        "chosen": {
            "lr": hp.lr,
            "alpha": hp.alpha,
            "beta": hp.beta,
            "epochs": hp.epochs,
            "epochs_run": r.epochs_run,
            "best_epoch": r.best_epoch,
            "val_roc_auc": r.val_roc_auc,
        },
        "val_curve": r.curve,
        "grid": grid,
    });
    Ok(TrainedHead::new(
        method,
        rc.lambda,
        weights,
        rc.score_precision,
        summary,
    ))
}
