//! The trainable heads `adue` and `alien` (2505.15443 v1 and v2): a copy of the task classifier,
//! initialised from it and fine-tuned on cached features so that its score `u` detects the
//! model's errors.
//!
//! * `adue`: `u = (1 − SmoothMax_λ(p)) / (1 − 1/C)` clamped to `[1e-8, 1 − 1e-8]`, anchored to
//!   the original softmax response; a fixed number of epochs per grid point.
//! * `alien`: `u = H(p) / ln C` clamped to `[1e-9, 1 − 1e-9]`, anchored to the original
//!   normalised entropy; up to `max_epochs` with early stopping on the selection split.
//!
//! Both minimise `BCE(u, e) + α·mean((u − anchor)²) + β·Σ‖θ − θ_init‖²` with Adam and PyTorch's
//! `OneCycleLR` stepped per batch (beta1 cycling included), batches of 128 in a seeded shuffle,
//! the classifier's dropout active, and pick the grid point with the best ROC-AUC of `u`
//! against the errors on the selection split. Training runs on any burn device (through burn's
//! autodiff), or, on a CPU device, on ueb's host kernels (`host.rs`, [`Engine`]); scoring runs
//! on the host (f64 forward pass and score). Decisions: the `T` entries of
//! `docs/decisions.md` (section "Trainable heads").

mod fit;
mod host;
mod net;
mod schedule;
mod score;
mod trainer;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use schedule::{OneCycle, ScheduleStep};
pub use score::{ADUE_CLAMP, ALIEN_CLAMP, Method};
pub use trainer::{Engine, HeadParams, HeadTrainer, HeadTrainerOptions, LossTerms, Precision};

use crate::error::HeadError;
use crate::head::{FitContext, Head};
use ueb_cache::ScorePrecision;
use ueb_cache::{Classifier, ClassifierKind, ClassifierMeta, SplitData};

/// The hyperparameter grid; a list left out takes the method's default (the reference grids,
/// in the reference's order, which decides ties: the first best grid point wins).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GridConfig {
    /// Peak learning rates (AdUE `[1e-4, 1e-5, 1e-3]`, ALIEN `[4e-4, 1e-4, 1e-5]`).
    pub lr: Option<Vec<f64>>,
    /// Anchor weights α (AdUE `[0, 0.3, 0.1, 1]`, ALIEN `[0.01, 0.1, 1]`).
    pub alpha: Option<Vec<f64>>,
    /// L2-SP weights β (AdUE `[0.01, 1, 0.1, 0.5]`, ALIEN `[0.01, 0.1, 1]`).
    pub beta: Option<Vec<f64>>,
    /// Epochs (AdUE only, `[5, 10, 20]`; ALIEN trains up to `max_epochs` with early stopping).
    pub epochs: Option<Vec<usize>>,
}

/// Configuration of `adue` and `alien` (as written in an experiment). Every field has a
/// default; `None` means "the method's default".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainableConfig {
    /// The hyperparameter grid.
    pub grid: GridConfig,
    /// λ of SmoothMax (AdUE), 100.
    pub lambda: f64,
    /// Rows per optimiser step, 128.
    pub batch_size: usize,
    /// ALIEN: most epochs (50); also the span of its one-cycle schedule. Not used by AdUE.
    pub max_epochs: Option<usize>,
    /// ALIEN: epochs without a strict improvement of the selection ROC-AUC before stopping (5).
    pub patience: Option<usize>,
    /// Dropout while training: `None` = the classifier's 0.1 for kind `mlp` (before `dense` and
    /// before `out_proj`, as in RoBERTa/ELECTRA heads), none for kind `linear` (an `nn.Linear`
    /// has no dropout); a value applies it there (and before `out_proj` of a linear head).
    pub dropout: Option<f64>,
    /// Fraction of the schedule spent warming up (0.1). AdUE rounds the warm-up down to whole
    /// steps (`int(0.1·T)/T`, the v1 script); ALIEN uses it as is (`core.py`).
    pub pct_start: f64,
    /// `initial_lr = lr / div_factor` (25).
    pub div_factor: f64,
    /// `min_lr = initial_lr / final_div_factor` (1e4).
    pub final_div_factor: f64,
    /// Cycle Adam's beta1 inversely to the learning rate, as PyTorch's `OneCycleLR` does by
    /// default (true).
    pub cycle_momentum: bool,
    /// beta1 at the learning-rate peak (0.85).
    pub base_momentum: f64,
    /// beta1 at the start and end (0.95).
    pub max_momentum: f64,
    /// Adam's beta1 when the momentum does not cycle (0.9).
    pub adam_beta1: f64,
    /// Adam's beta2 (0.999).
    pub adam_beta2: f64,
    /// Adam's eps (1e-8).
    pub adam_eps: f64,
    /// Floating-point type of training (`f32`).
    pub precision: Precision,
    /// Where training runs on a CPU device: `auto` (ueb's host kernels) or `burn` (burn's
    /// autodiff, the path every other device takes). Both compute the same function with the
    /// same dropout masks; they differ in rounding only.
    pub engine: Engine,
    /// The arithmetic of the fitted head's `dense` product when it scores (`f64`); training
    /// and its selection follow `precision`.
    pub score_precision: ScorePrecision,
}

impl Default for TrainableConfig {
    fn default() -> Self {
        Self {
            grid: GridConfig::default(),
            lambda: 100.0,
            batch_size: 128,
            max_epochs: None,
            patience: None,
            dropout: None,
            pct_start: 0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            precision: Precision::F32,
            engine: Engine::Auto,
            score_precision: ScorePrecision::F64,
        }
    }
}

/// A [`TrainableConfig`] with every default filled in for one method and classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedConfig {
    /// The method.
    pub method: Method,
    /// Learning-rate grid.
    pub lr: Vec<f64>,
    /// α grid.
    pub alpha: Vec<f64>,
    /// β grid.
    pub beta: Vec<f64>,
    /// AdUE: the epochs grid; ALIEN: `[max_epochs]`.
    pub epochs: Vec<usize>,
    /// ALIEN: early-stopping patience (and the best epoch is kept); AdUE: none (last epoch).
    pub patience: Option<usize>,
    /// λ.
    pub lambda: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Dropout probability in effect.
    pub dropout: f64,
    /// Warm-up fraction.
    pub pct_start: f64,
    /// Whether the warm-up is rounded down to whole steps (AdUE v1).
    pub whole_warmup_steps: bool,
    /// OneCycle `div_factor`.
    pub div_factor: f64,
    /// OneCycle `final_div_factor`.
    pub final_div_factor: f64,
    /// Whether beta1 cycles.
    pub cycle_momentum: bool,
    /// beta1 at the peak.
    pub base_momentum: f64,
    /// beta1 at the ends.
    pub max_momentum: f64,
    /// Adam beta1 without cycling.
    pub adam_beta1: f64,
    /// Adam beta2.
    pub adam_beta2: f64,
    /// Adam eps.
    pub adam_eps: f64,
    /// Training precision.
    pub precision: Precision,
    /// Where training runs.
    pub engine: Engine,
    /// The arithmetic of the scoring products.
    pub score_precision: ScorePrecision,
}

impl TrainableConfig {
    /// Checks the settings of `method` without a cache (the dropout default of either
    /// classifier kind is valid).
    ///
    /// # Errors
    /// As [`TrainableConfig::resolve`].
    pub fn validate(&self, method: Method) -> Result<(), HeadError> {
        self.resolve(method, ClassifierKind::Mlp).map(drop)
    }

    /// Fills in the method's defaults and checks every value.
    ///
    /// # Errors
    /// An empty grid list, a non-finite or out-of-range value, or a setting of the other
    /// method (`grid.epochs` for ALIEN, `max_epochs`/`patience` for AdUE).
    pub fn resolve(&self, method: Method, kind: ClassifierKind) -> Result<ResolvedConfig, HeadError> {
        let name = method.name();
        let err = |reason: String| Err(HeadError::config(name, reason));
        let (lr, alpha, beta): (&[f64], &[f64], &[f64]) = match method {
            Method::Adue => (&[1e-4, 1e-5, 1e-3], &[0.0, 0.3, 0.1, 1.0], &[0.01, 1.0, 0.1, 0.5]),
            Method::Alien => (&[4e-4, 1e-4, 1e-5], &[0.01, 0.1, 1.0], &[0.01, 0.1, 1.0]),
        };
        let lr = self.grid.lr.clone().unwrap_or_else(|| lr.to_vec());
        let alpha = self.grid.alpha.clone().unwrap_or_else(|| alpha.to_vec());
        let beta = self.grid.beta.clone().unwrap_or_else(|| beta.to_vec());
        let (epochs, patience) = match method {
            Method::Adue => {
                if self.max_epochs.is_some() || self.patience.is_some() {
                    return err("adue trains a fixed number of epochs per grid point (grid.epochs); max_epochs and patience are alien settings".into());
                }
                (self.grid.epochs.clone().unwrap_or_else(|| vec![5, 10, 20]), None)
            }
            Method::Alien => {
                if self.grid.epochs.is_some() {
                    return err("alien trains up to max_epochs with early stopping; set max_epochs (and patience), not grid.epochs".into());
                }
                (vec![self.max_epochs.unwrap_or(50)], Some(self.patience.unwrap_or(5)))
            }
        };
        for (what, list, positive) in [("lr", &lr, true), ("alpha", &alpha, false), ("beta", &beta, false)] {
            if list.is_empty() {
                return err(format!("grid.{what} is empty"));
            }
            if let Some(v) = list
                .iter()
                .find(|v| !v.is_finite() || **v < 0.0 || (positive && **v == 0.0))
            {
                return err(format!(
                    "grid.{what} holds {v}; values must be finite and {}",
                    if positive { "> 0" } else { "≥ 0" }
                ));
            }
        }
        if epochs.is_empty() || epochs.contains(&0) {
            return err(format!(
                "epochs must be a non-empty list of positive counts, got {epochs:?}"
            ));
        }
        if patience == Some(0) {
            return err("patience must be at least 1".into());
        }
        if self.batch_size == 0 {
            return err("batch_size must be at least 1".into());
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return err(format!("lambda must be finite and > 0, got {}", self.lambda));
        }
        let dropout = self.dropout.unwrap_or(match kind {
            ClassifierKind::Mlp => 0.1,
            ClassifierKind::Linear => 0.0,
        });
        if !(0.0..1.0).contains(&dropout) {
            return err(format!("dropout must lie in [0, 1), got {dropout}"));
        }
        let probe = OneCycle {
            total_steps: 1,
            max_lr: 1.0,
            pct_start: self.pct_start,
            div_factor: self.div_factor,
            final_div_factor: self.final_div_factor,
            cycle_momentum: self.cycle_momentum,
            base_momentum: self.base_momentum,
            max_momentum: self.max_momentum,
        };
        if let Err(reason) = probe.validate() {
            return err(reason);
        }
        for (what, v) in [("adam_beta1", self.adam_beta1), ("adam_beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&v) {
                return err(format!("{what} must lie in [0, 1), got {v}"));
            }
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            return err(format!("adam_eps must be finite and > 0, got {}", self.adam_eps));
        }
        Ok(ResolvedConfig {
            method,
            lr,
            alpha,
            beta,
            epochs,
            patience,
            lambda: self.lambda,
            batch_size: self.batch_size,
            dropout,
            pct_start: self.pct_start,
            whole_warmup_steps: method == Method::Adue,
            div_factor: self.div_factor,
            final_div_factor: self.final_div_factor,
            cycle_momentum: self.cycle_momentum,
            base_momentum: self.base_momentum,
            max_momentum: self.max_momentum,
            adam_beta1: self.adam_beta1,
            adam_beta2: self.adam_beta2,
            adam_eps: self.adam_eps,
            precision: self.precision,
            engine: self.engine,
            score_precision: self.score_precision,
        })
    }
}

/// Fits `adue` on `ctx.fit`, selecting the grid point on `ctx.select`.
///
/// # Errors
/// An invalid configuration, splits that do not match the classifier, a fit split without
/// errors, a selection split without both errors and correct predictions, or every grid point
/// diverging.
pub fn fit_adue(cfg: &TrainableConfig, ctx: &FitContext<'_>) -> Result<TrainedHead, HeadError> {
    fit::fit(Method::Adue, cfg, ctx)
}

/// Fits `alien` on `ctx.fit`, early-stopping and selecting on `ctx.select`.
///
/// # Errors
/// As [`fit_adue`].
pub fn fit_alien(cfg: &TrainableConfig, ctx: &FitContext<'_>) -> Result<TrainedHead, HeadError> {
    fit::fit(Method::Alien, cfg, ctx)
}

/// A fitted `adue` or `alien` head: its weights (PyTorch layout, f32) and how it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedHead {
    method: Method,
    lambda: f64,
    weights: Classifier,
    score_precision: ScorePrecision,
    /// `weights` ready for scoring (widened once to score in f64).
    host: ueb_cache::HostClassifier,
    summary: serde_json::Value,
}

/// `head.json` of a saved trainable head.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedHead {
    head: Method,
    version: u32,
    classifier: ClassifierMeta,
    dim: usize,
    num_classes: usize,
    lambda: f64,
    /// Left out when f64 (heads saved before it existed score in f64).
    #[serde(default, skip_serializing_if = "ScorePrecision::is_f64")]
    score_precision: ScorePrecision,
    summary: serde_json::Value,
}

/// Version of the saved format.
const SAVED_VERSION: u32 = 1;

impl TrainedHead {
    /// The head before any training: a copy of `classifier` (its `u` is the method's score of
    /// the model's own probabilities, up to the rounding of the stored f32 logits).
    ///
    /// # Errors
    /// A malformed classifier or a λ that is not finite and positive.
    pub fn at_initialisation(method: Method, lambda: f64, classifier: &Classifier) -> Result<Self, HeadError> {
        trainer::check_classifier(method.name(), classifier)?;
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(HeadError::config(
                method.name(),
                format!("lambda must be finite and > 0, got {lambda}"),
            ));
        }
        Ok(Self::new(
            method,
            lambda,
            classifier.clone(),
            ScorePrecision::F64,
            serde_json::json!({ "head": method.name(), "initialisation": true }),
        ))
    }

    /// The same head, scoring its products in `precision`.
    pub fn with_score_precision(self, precision: ScorePrecision) -> Self {
        Self::new(self.method, self.lambda, self.weights, precision, self.summary)
    }

    /// The arithmetic of the scoring products.
    pub fn score_precision(&self) -> ScorePrecision {
        self.score_precision
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// λ of SmoothMax.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The fitted weights (PyTorch layout).
    pub fn weights(&self) -> &Classifier {
        &self.weights
    }

    /// A head of fitted weights (crate-internal: weights come from a fit or a saved head).
    pub(crate) fn new(
        method: Method,
        lambda: f64,
        weights: Classifier,
        score_precision: ScorePrecision,
        summary: serde_json::Value,
    ) -> Self {
        Self {
            method,
            lambda,
            host: ueb_cache::HostClassifier::with_precision(&weights, score_precision),
            weights,
            score_precision,
            summary,
        }
    }

    /// The head's logits `[n, C]` (row-major) for a split: one forward pass, no dropout, in f64
    /// but for the products of [`ScorePrecision::F32`].
    ///
    /// # Errors
    /// A split whose dimensions do not match the head.
    pub fn logits(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let name = self.method.name();
        crate::head::check_classes(name, split, self.weights.num_classes)?;
        if split.dim() != self.weights.dim || split.features.len() != split.n() * split.dim() {
            return Err(HeadError::config(
                name,
                format!(
                    "fitted on features of dimension {}, the split has {} values for {} rows of dimension {}",
                    self.weights.dim,
                    split.features.len(),
                    split.n(),
                    split.dim()
                ),
            ));
        }
        Ok(self.host.logits(&split.features)?)
    }

    /// Loads a head written by [`Head::save`].
    ///
    /// # Errors
    /// A missing or malformed `head.json` or `head.safetensors`.
    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let json_path = dir.join("head.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| HeadError::io(&json_path, e))?;
        let saved: SavedHead = crate::head::parse_json(dir, &text)?;
        let meta_err = |reason: String| HeadError::Meta {
            path: json_path.clone(),
            reason,
        };
        if saved.version != SAVED_VERSION {
            return Err(meta_err(format!(
                "version {} is not supported (this ueb reads {SAVED_VERSION})",
                saved.version
            )));
        }
        let (d, c) = (saved.dim, saved.num_classes);
        let st_path = dir.join("head.safetensors");
        let bytes = ueb_cache::tensors::read_bytes(&st_path)?;
        let t = ueb_cache::tensors::Tensors::parse(&st_path, &bytes)?;
        let weights = ueb_cache::classifier::classifier_from_tensors(&t, saved.classifier, d, c)?;
        trainer::check_classifier(saved.head.name(), &weights).map_err(|e| meta_err(e.to_string()))?;
        if !(saved.lambda.is_finite() && saved.lambda > 0.0) {
            return Err(meta_err(format!("lambda {} is not finite and positive", saved.lambda)));
        }
        Ok(Self::new(
            saved.head,
            saved.lambda,
            weights,
            saved.score_precision,
            saved.summary,
        ))
    }
}

impl Head for TrainedHead {
    fn name(&self) -> &'static str {
        self.method.name()
    }

    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let z = self.logits(split)?;
        Ok(z.chunks_exact(self.weights.num_classes)
            .map(|row| self.method.score_row(row, self.lambda))
            .collect())
    }

    fn summary(&self) -> serde_json::Value {
        self.summary.clone()
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        std::fs::create_dir_all(dir).map_err(|e| HeadError::io(dir, e))?;
        let w = &self.weights;
        ueb_cache::tensors::write_tensors(&dir.join("head.safetensors"), &w.tensors(), &[], &[])?;
        let saved = SavedHead {
            head: self.method,
            version: SAVED_VERSION,
            classifier: w.meta(),
            dim: w.dim,
            num_classes: w.num_classes,
            lambda: self.lambda,
            score_precision: self.score_precision,
            summary: self.summary.clone(),
        };
        let value = serde_json::to_value(&saved).map_err(|source| HeadError::Json {
            path: dir.join("head.json"),
            source,
        })?;
        // head.json last: its presence marks a complete head.
        crate::head::write_json(dir, &value)
    }
}
