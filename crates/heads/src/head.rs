//! The `Head` abstraction: fit on a cache, score any split, save and load.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::{FeatureCache, Split, SplitData};
use crate::classical::{BuiltinHead, TemperatureConfig, TemperatureHead, VectorScalingConfig, VectorScalingHead};
use crate::error::HeadError;
use crate::mahalanobis::{MahalanobisConfig, MahalanobisHead};
use crate::mc_calibration::{McKlTemperatureConfig, McKlTemperatureHead};
use crate::trainable::{TrainableConfig, TrainedHead};

/// A fitted uncertainty head.
pub trait Head: Send + Sync {
    /// The registry name (`sr`, `temperature`, `mahalanobis`, `alien`, ...).
    fn name(&self) -> &'static str;

    /// The score `u` of every row of `split`, in order; higher = more uncertain.
    ///
    /// # Errors
    /// A split whose shape does not match what the head was fitted on.
    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError>;

    /// Calibrated probabilities `[n, C]` (row-major) for heads that calibrate; `None` otherwise.
    fn probabilities(&self, _split: &SplitData) -> Option<Result<Vec<f64>, HeadError>> {
        None
    }

    /// Fitted parameters and selection results (T, chosen α/β/lr, the val curve, ...).
    fn summary(&self) -> serde_json::Value;

    /// Writes the fitted head to `dir` (`head.json`, plus `head.safetensors` for heads with
    /// arrays), so that [`load`] gives back a head with identical scores.
    ///
    /// # Errors
    /// I/O errors naming the file.
    fn save(&self, dir: &Path) -> Result<(), HeadError>;
}

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

/// What a head is fitted on.
#[derive(Debug, Clone, Copy)]
pub struct FitContext<'a> {
    /// The cache.
    pub cache: &'a FeatureCache,
    /// The split the head's parameters are fitted on.
    pub fit: Split,
    /// The split used to select hyperparameters (and for early stopping).
    pub select: Split,
    /// Seed of every random choice (initialisation, shuffling, dropout).
    pub seed: u64,
    /// The burn device trainable heads run on.
    pub device: &'a burn::tensor::Device,
}

impl FitContext<'_> {
    /// The data of a split.
    pub fn split(&self, split: Split) -> &SplitData {
        self.cache.split(split)
    }
}

/// A head and its configuration, as written in an experiment (`- sr`,
/// `- mahalanobis: {features: dense}`, `- alien: {grid: {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadSpec {
    /// Softmax response, 1 − max p.
    Sr,
    /// Entropy normalised by ln C.
    Entropy,
    /// 1 − (p₍₁₎ − p₍₂₎).
    Margin,
    /// Temperature scaling.
    Temperature(#[serde(default)] TemperatureConfig),
    /// Vector scaling.
    VectorScaling(#[serde(default)] VectorScalingConfig),
    /// Mahalanobis distance to the closest class mean (tied covariance).
    Mahalanobis(#[serde(default)] MahalanobisConfig),
    /// Relative Mahalanobis distance.
    RelativeMahalanobis(#[serde(default)] MahalanobisConfig),
    /// AdUE: SmoothMax head fine-tuned for error detection.
    Adue(#[serde(default)] TrainableConfig),
    /// ALIEN: entropy head fine-tuned for error detection.
    Alien(#[serde(default)] TrainableConfig),
    /// One temperature per multiple-choice task from k examples: KL to the pre-trained
    /// counterpart (He et al. 2023), or the NLL / constant baselines.
    McKlTemperature(#[serde(default)] McKlTemperatureConfig),
}

/// Every head name, in report order.
pub const HEAD_NAMES: [&str; 10] = [
    "sr",
    "entropy",
    "margin",
    "temperature",
    "vector_scaling",
    "mahalanobis",
    "relative_mahalanobis",
    "adue",
    "alien",
    "mc_kl_temperature",
];

impl HeadSpec {
    /// The head with its default configuration.
    ///
    /// # Errors
    /// An unknown name (the message lists the known ones).
    pub fn from_name(name: &str) -> Result<Self, HeadError> {
        Ok(match name {
            "sr" => HeadSpec::Sr,
            "entropy" => HeadSpec::Entropy,
            "margin" => HeadSpec::Margin,
            "temperature" => HeadSpec::Temperature(TemperatureConfig::default()),
            "vector_scaling" => HeadSpec::VectorScaling(VectorScalingConfig::default()),
            "mahalanobis" => HeadSpec::Mahalanobis(MahalanobisConfig::default()),
            "relative_mahalanobis" => HeadSpec::RelativeMahalanobis(MahalanobisConfig::default()),
            "adue" => HeadSpec::Adue(TrainableConfig::default()),
            "alien" => HeadSpec::Alien(TrainableConfig::default()),
            "mc_kl_temperature" => HeadSpec::McKlTemperature(McKlTemperatureConfig::default()),
            other => {
                return Err(HeadError::config(
                    other,
                    format!("unknown head (known: {})", HEAD_NAMES.join(", ")),
                ));
            }
        })
    }

    /// The registry name.
    pub fn name(&self) -> &'static str {
        match self {
            HeadSpec::Sr => "sr",
            HeadSpec::Entropy => "entropy",
            HeadSpec::Margin => "margin",
            HeadSpec::Temperature(_) => "temperature",
            HeadSpec::VectorScaling(_) => "vector_scaling",
            HeadSpec::Mahalanobis(_) => "mahalanobis",
            HeadSpec::RelativeMahalanobis(_) => "relative_mahalanobis",
            HeadSpec::Adue(_) => "adue",
            HeadSpec::Alien(_) => "alien",
            HeadSpec::McKlTemperature(_) => "mc_kl_temperature",
        }
    }

    /// The default (fit, select) splits of this head: calibrators fit on val (fitting a
    /// temperature on the split the model was trained on would learn its overconfidence on
    /// seen data); distance heads fit on train with gold labels (§6); trainable heads train on
    /// train and select on val (2505.15443).
    pub fn default_splits(&self) -> (Split, Split) {
        match self {
            HeadSpec::Temperature(_) | HeadSpec::VectorScaling(_) | HeadSpec::McKlTemperature(_) => {
                (Split::Val, Split::Val)
            }
            _ => (Split::Train, Split::Val),
        }
    }

    /// Fits the head.
    ///
    /// # Errors
    /// Invalid configuration, or data the head cannot be fitted on (e.g. a class with no
    /// sample in the fit split).
    pub fn fit(&self, ctx: &FitContext<'_>) -> Result<Box<dyn Head>, HeadError> {
        Ok(match self {
            HeadSpec::Sr => Box::new(BuiltinHead::new(ueb_metrics::BuiltinScore::Sr)),
            HeadSpec::Entropy => Box::new(BuiltinHead::new(ueb_metrics::BuiltinScore::Entropy)),
            HeadSpec::Margin => Box::new(BuiltinHead::new(ueb_metrics::BuiltinScore::Margin)),
            HeadSpec::Temperature(cfg) => Box::new(TemperatureHead::fit(cfg, ctx.split(ctx.fit))?),
            HeadSpec::VectorScaling(cfg) => Box::new(VectorScalingHead::fit(cfg, ctx.split(ctx.fit))?),
            HeadSpec::Mahalanobis(cfg) => Box::new(MahalanobisHead::fit(cfg, false, ctx)?),
            HeadSpec::RelativeMahalanobis(cfg) => Box::new(MahalanobisHead::fit(cfg, true, ctx)?),
            HeadSpec::Adue(cfg) => Box::new(crate::trainable::fit_adue(cfg, ctx)?),
            HeadSpec::Alien(cfg) => Box::new(crate::trainable::fit_alien(cfg, ctx)?),
            HeadSpec::McKlTemperature(cfg) => Box::new(McKlTemperatureHead::fit(cfg, ctx)?),
        })
    }
}

/// `head.json` of a saved head: its name, then whatever the head stores.
#[derive(Debug, Deserialize)]
struct SavedName {
    head: String,
}

/// Loads a head saved with [`Head::save`].
///
/// # Errors
/// A missing or malformed `head.json` / `head.safetensors`, or an unknown head name.
pub fn load(dir: &Path) -> Result<Box<dyn Head>, HeadError> {
    let path = dir.join("head.json");
    let text = std::fs::read_to_string(&path).map_err(|e| HeadError::io(&path, e))?;
    let saved: SavedName = serde_json::from_str(&text).map_err(|source| HeadError::Json {
        path: path.clone(),
        source,
    })?;
    Ok(match saved.head.as_str() {
        "sr" | "entropy" | "margin" => Box::new(BuiltinHead::load(dir, &text)?),
        "temperature" => Box::new(TemperatureHead::load(dir, &text)?),
        "vector_scaling" => Box::new(VectorScalingHead::load(dir, &text)?),
        "mahalanobis" | "relative_mahalanobis" => Box::new(MahalanobisHead::load(dir, &text)?),
        "adue" | "alien" => Box::new(TrainedHead::load(dir)?),
        "mc_kl_temperature" => Box::new(McKlTemperatureHead::load(dir, &text)?),
        other => {
            return Err(HeadError::Meta {
                path,
                reason: format!("unknown head `{other}` (known: {})", HEAD_NAMES.join(", ")),
            });
        }
    })
}

/// Writes `head.json` atomically.
pub(crate) fn write_json(dir: &Path, value: &serde_json::Value) -> Result<(), HeadError> {
    std::fs::create_dir_all(dir).map_err(|e| HeadError::io(dir, e))?;
    let path = dir.join("head.json");
    let text = serde_json::to_string_pretty(value).map_err(|source| HeadError::Json {
        path: path.clone(),
        source,
    })?;
    crate::cache::write_atomic(&path, text.as_bytes())
}

/// Parses `head.json` text into `T`, naming the file on error.
pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(dir: &Path, text: &str) -> Result<T, HeadError> {
    serde_json::from_str(text).map_err(|source| HeadError::Json {
        path: dir.join("head.json"),
        source,
    })
}

/// Checks that a split has the number of classes a head was fitted with.
pub(crate) fn check_classes(head: &str, split: &SplitData, num_classes: usize) -> Result<(), HeadError> {
    if split.num_classes() == num_classes {
        Ok(())
    } else {
        Err(HeadError::config(
            head,
            format!(
                "fitted for {num_classes} classes, the split has {}",
                split.num_classes()
            ),
        ))
    }
}
