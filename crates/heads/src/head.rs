//! The `Head` abstraction: fit on a cache, score any split, save and load.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::beta::BetaHead;
use crate::binning::{BinningHead, HistogramBinningConfig};
use crate::choice_calibration::{ChoiceTemperatureConfig, ChoiceTemperatureHead};
use crate::classical::{
    BuiltinHead, MatrixScalingHead, TemperatureConfig, TemperatureHead, VectorScalingConfig, VectorScalingHead,
};
use crate::dirichlet::{DirichletConfig, DirichletHead};
use crate::error::HeadError;
use crate::mahalanobis::{MahalanobisConfig, MahalanobisHead};
use crate::platt::PlattHead;
use crate::trainable::{Method, TrainableConfig, TrainedHead};
use ueb_cache::{FeatureCache, Split, SplitData};
use ueb_metrics::BuiltinScore;

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

/// Declares the head registry from one table: a line per head gives its name, its `HeadSpec`
/// variant (with the configuration type, if any), its default (fit, select) splits, how it is
/// fitted and how a saved one loads. The enum, [`HEAD_NAMES`], [`HeadSpec::from_name`],
/// [`HeadSpec::name`], [`HeadSpec::default_splits`], [`HeadSpec::fit`] and [`load`] all derive
/// from it, so adding a head is one file and one line. `(formerly "old")` keeps a renamed
/// head's old name readable in experiments and saved heads.
macro_rules! settings {
    ($map:ident, $name:expr, $variant:ident) => {{
        let settings: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>> = $map.next_value()?;
        if let Some(key) = settings.unwrap_or_default().into_keys().next() {
            return Err(<A::Error as serde::de::Error>::custom(format!(
                "head `{}` has no settings (found `{key}`)",
                $name
            )));
        }
        HeadSpec::$variant
    }};
    ($map:ident, $name:expr, $variant:ident, $config:ty) => {
        HeadSpec::$variant($map.next_value::<$config>()?)
    };
}

macro_rules! registry {
    ($(
        $(#[doc = $doc:literal])*
        $name:literal $((formerly $old:literal))? => $variant:ident $(($cfg:ident: $config:ty))?,
        splits ($fit_split:ident, $select_split:ident),
        $(check $check:expr,)?
        fit |$ctx:ident| $fit:expr,
        load |$dir:ident, $text:ident| $load:expr;
    )*) => {
        /// A head and its configuration, as written in an experiment (`- sr`,
        /// `- mahalanobis: {features: dense}`, `- alien: {grid: {...}}`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub enum HeadSpec {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name $(, alias = $old)?)]
                $variant $((#[serde(default)] $config))?,
            )*
        }

        /// Every head name, in report order.
        pub const HEAD_NAMES: &[&str] = &[$($name),*];

        impl HeadSpec {
            /// The head with its default configuration.
            ///
            /// # Errors
            /// An unknown name (the message lists the known ones).
            pub fn from_name(name: &str) -> Result<Self, HeadError> {
                match name {
                    $($name $(| $old)? => Ok(HeadSpec::$variant $((<$config>::default()))?),)*
                    other => Err(HeadError::config(
                        other,
                        format!("unknown head (known: {})", HEAD_NAMES.join(", ")),
                    )),
                }
            }

            /// The head `name` with its settings read as the next value of `map` (an
            /// experiment's `name: {settings}`); `None` for an unknown name. A head without
            /// settings accepts only an empty map or nothing.
            ///
            /// # Errors
            /// Settings that do not parse, naming the offending key.
            pub fn next_settings<'de, A: serde::de::MapAccess<'de>>(
                name: &str,
                map: &mut A,
            ) -> Result<Option<Self>, A::Error> {
                Ok(Some(match name {
                    $($name $(| $old)? => settings!(map, $name, $variant $(, $config)?),)*
                    _ => return Ok(None),
                }))
            }

            /// The registry name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(HeadSpec::$variant { .. } => $name,)*
                }
            }

            /// The default (fit, select) splits of this head: calibrators fit on val (fitting a
            /// temperature on the split the model was trained on would learn its overconfidence
            /// on seen data); distance heads fit on train with gold labels (§6); trainable heads
            /// train on train and select on val (2505.15443).
            pub fn default_splits(&self) -> (Split, Split) {
                match self {
                    $(HeadSpec::$variant { .. } => (Split::$fit_split, Split::$select_split),)*
                }
            }

            /// Checks the settings without any data (signs, ranges, `min < max`, required
            /// keys), so that an experiment fails while it is planned rather than after the
            /// models are trained. Fitting checks them again.
            ///
            /// # Errors
            /// The first bad setting, naming the head.
            pub fn validate(&self) -> Result<(), HeadError> {
                match self {
                    $(HeadSpec::$variant $(($cfg))? => {
                        $(let _ = $cfg;)?
                        $($check?;)?
                        Ok(())
                    })*
                }
            }

            /// Fits the head.
            ///
            /// # Errors
            /// Invalid configuration, or data the head cannot be fitted on (e.g. a class with no
            /// sample in the fit split).
            pub fn fit(&self, ctx: &FitContext<'_>) -> Result<Box<dyn Head>, HeadError> {
                match self {
                    $(HeadSpec::$variant $(($cfg))? => {
                        let $ctx = ctx;
                        Ok(Box::new($fit))
                    })*
                }
            }
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
            match saved.head.as_str() {
                $($name $(| $old)? => {
                    let ($dir, $text) = (dir, text.as_str());
                    Ok(Box::new($load))
                })*
                other => Err(HeadError::Meta {
                    path,
                    reason: format!("unknown head `{other}` (known: {})", HEAD_NAMES.join(", ")),
                }),
            }
        }
    };
}

registry! {
    /// Softmax response, 1 − max p.
    "sr" => Sr,
        splits (Train, Val),
        fit |_ctx| BuiltinHead::new(BuiltinScore::Sr),
        load |dir, text| BuiltinHead::load(dir, text)?;
    /// Entropy normalised by ln C.
    "entropy" => Entropy,
        splits (Train, Val),
        fit |_ctx| BuiltinHead::new(BuiltinScore::Entropy),
        load |dir, text| BuiltinHead::load(dir, text)?;
    /// 1 − (p₍₁₎ − p₍₂₎).
    "margin" => Margin,
        splits (Train, Val),
        fit |_ctx| BuiltinHead::new(BuiltinScore::Margin),
        load |dir, text| BuiltinHead::load(dir, text)?;
    /// Temperature scaling.
    "temperature" => Temperature(cfg: TemperatureConfig),
        splits (Val, Val),
        check cfg.validate(),
        fit |ctx| TemperatureHead::fit(cfg, ctx.split(ctx.fit))?,
        load |dir, text| TemperatureHead::load(dir, text)?;
    /// Vector scaling.
    "vector_scaling" => VectorScaling(cfg: VectorScalingConfig),
        splits (Val, Val),
        check cfg.validate(),
        fit |ctx| VectorScalingHead::fit(cfg, ctx.split(ctx.fit))?,
        load |dir, text| VectorScalingHead::load(dir, text)?;
    /// Matrix scaling: softmax(W z + b), W a full C × C matrix.
    "matrix_scaling" => MatrixScaling(cfg: VectorScalingConfig),
        splits (Val, Val),
        check cfg.check("matrix_scaling"),
        fit |ctx| MatrixScalingHead::fit(cfg, ctx.split(ctx.fit))?,
        load |dir, text| MatrixScalingHead::load(dir, text)?;
    /// Histogram binning of each class's probability (one-vs-rest), rows renormalised.
    "histogram_binning" => HistogramBinning(cfg: HistogramBinningConfig),
        splits (Val, Val),
        check cfg.validate(),
        fit |ctx| BinningHead::fit_histogram(cfg, ctx.split(ctx.fit))?,
        load |dir, text| BinningHead::load(dir, text)?;
    /// Isotonic regression of each class's probability (one-vs-rest), rows renormalised.
    "isotonic" => Isotonic,
        splits (Val, Val),
        fit |ctx| BinningHead::fit_isotonic(ctx.split(ctx.fit))?,
        load |dir, text| BinningHead::load(dir, text)?;
    /// Platt scaling (scikit-learn's sigmoid calibration), one-vs-rest beyond two classes.
    "platt" => Platt,
        splits (Val, Val),
        fit |ctx| PlattHead::fit(ctx.split(ctx.fit))?,
        load |dir, text| PlattHead::load(dir, text)?;
    /// Beta calibration (betacal's `abm`), one-vs-rest beyond two classes.
    "beta" => Beta,
        splits (Val, Val),
        fit |ctx| BetaHead::fit(ctx.split(ctx.fit))?,
        load |dir, text| BetaHead::load(dir, text)?;
    /// Dirichlet calibration with ODIR, λ and μ chosen by stratified cross-validation.
    "dirichlet" => Dirichlet(cfg: DirichletConfig),
        splits (Val, Val),
        check cfg.validate(),
        fit |ctx| DirichletHead::fit(cfg, ctx.split(ctx.fit))?,
        load |dir, text| DirichletHead::load(dir, text)?;
    /// Mahalanobis distance to the closest class mean (tied covariance).
    "mahalanobis" => Mahalanobis(cfg: MahalanobisConfig),
        splits (Train, Val),
        fit |ctx| MahalanobisHead::fit(cfg, false, ctx)?,
        load |dir, text| MahalanobisHead::load(dir, text)?;
    /// Relative Mahalanobis distance.
    "relative_mahalanobis" => RelativeMahalanobis(cfg: MahalanobisConfig),
        splits (Train, Val),
        fit |ctx| MahalanobisHead::fit(cfg, true, ctx)?,
        load |dir, text| MahalanobisHead::load(dir, text)?;
    /// AdUE: SmoothMax head fine-tuned for error detection.
    "adue" => Adue(cfg: TrainableConfig),
        splits (Train, Val),
        check cfg.validate(Method::Adue),
        fit |ctx| crate::trainable::fit_adue(cfg, ctx)?,
        load |dir, _text| TrainedHead::load(dir)?;
    /// ALIEN: entropy head fine-tuned for error detection.
    "alien" => Alien(cfg: TrainableConfig),
        splits (Train, Val),
        check cfg.validate(Method::Alien),
        fit |ctx| crate::trainable::fit_alien(cfg, ctx)?,
        load |dir, _text| TrainedHead::load(dir)?;
    /// One temperature per multiple-choice task from k examples: KL to the pre-trained
    /// counterpart (He et al. 2023), or the NLL / constant baselines.
    "choice_temperature" (formerly "mc_kl_temperature") => ChoiceTemperature(cfg: ChoiceTemperatureConfig),
        splits (Val, Val),
        check cfg.validate(),
        fit |ctx| ChoiceTemperatureHead::fit(cfg, ctx)?,
        load |dir, text| ChoiceTemperatureHead::load(dir, text)?;
}

/// `head.json` of a saved head: its name, then whatever the head stores.
#[derive(Debug, Deserialize)]
struct SavedName {
    head: String,
}

/// Writes `head.json` atomically.
pub(crate) fn write_json(dir: &Path, value: &serde_json::Value) -> Result<(), HeadError> {
    std::fs::create_dir_all(dir).map_err(|e| HeadError::io(dir, e))?;
    let path = dir.join("head.json");
    let text = serde_json::to_string_pretty(value).map_err(|source| HeadError::Json {
        path: path.clone(),
        source,
    })?;
    Ok(ueb_cache::write_atomic(&path, text.as_bytes())?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_name_parses_names_and_serialises_as_itself() {
        assert_eq!(HEAD_NAMES.len(), 16);
        for &name in HEAD_NAMES {
            let spec = HeadSpec::from_name(name).unwrap();
            assert_eq!(spec.name(), name);
            // The experiment file's spelling is the registry's: `- name` or `- name: {...}`.
            let json = serde_json::to_value(&spec).unwrap();
            let written = json
                .as_str()
                .map(str::to_owned)
                .or_else(|| json.as_object().and_then(|m| m.keys().next().cloned()));
            assert_eq!(written.as_deref(), Some(name));
            let back: HeadSpec = serde_json::from_value(json).unwrap();
            assert_eq!(back, spec);
        }
        assert!(HeadSpec::from_name("temprature").is_err());
        let calibrators = [
            "temperature",
            "vector_scaling",
            "matrix_scaling",
            "histogram_binning",
            "isotonic",
            "platt",
            "beta",
            "dirichlet",
            "choice_temperature",
        ];
        for &name in HEAD_NAMES {
            let (fit, select) = HeadSpec::from_name(name).unwrap().default_splits();
            let want = if calibrators.contains(&name) {
                Split::Val
            } else {
                Split::Train
            };
            assert_eq!((fit, select), (want, Split::Val), "{name}");
        }
    }

    #[test]
    fn a_former_name_reads_as_the_renamed_head_and_writes_the_new_name() {
        let spec = HeadSpec::from_name("mc_kl_temperature").unwrap();
        assert_eq!(spec.name(), "choice_temperature");
        let back: HeadSpec = serde_json::from_str(r#"{"mc_kl_temperature": {"k": 3}}"#).unwrap();
        let HeadSpec::ChoiceTemperature(cfg) = &back else {
            panic!("{back:?}")
        };
        assert_eq!(cfg.k, 3);
        assert_eq!(
            serde_json::to_string(&back).unwrap().split('"').nth(1),
            Some("choice_temperature")
        );
    }
}
