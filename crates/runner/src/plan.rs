//! The experiment file: a faithful raw form parsed from YAML (unknown keys and wrong types are
//! errors with their line), then a validated, resolved [`Plan`] with every default filled in.

use std::path::{Path, PathBuf};

use crate::device::Precision;
use crate::error::{Context, Result, bail, message};
use serde::{Deserialize, Serialize};
use ueb_backbones::FinetuneConfig;
use ueb_backbones::scratch::ScratchConfig;
use ueb_data::{GenericSpec, NewsgroupsPart, SyntheticConfig};
use ueb_heads::HeadSpec;

/// The experiment file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// Experiment name (the results directory's default name).
    pub name: String,
    /// Seeds: fine-tuning, heads and bootstrap follow each.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Backend (`flex`, `ndarray`, `wgpu`, `cuda[:N]`); `--device` overrides.
    #[serde(default)]
    pub device: Option<String>,
    /// Floating-point type of the backbone passes (`f32`, `bf16`, `f16`); `--precision`
    /// overrides. CPU devices compute in f32 whatever is asked.
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Backbones to fine-tune and export, crossed with `datasets`.
    #[serde(default)]
    pub backbones: Vec<RawBackbone>,
    /// Datasets (registry names or specs), crossed with `backbones`.
    #[serde(default)]
    pub datasets: Vec<RawDataset>,
    /// Existing feature caches (instead of backbones × datasets).
    #[serde(default)]
    pub caches: Vec<PathBuf>,
    /// Heads, each `name` or `{name: {settings}}`.
    pub heads: Vec<HeadEntry>,
    /// Metric settings.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where registry datasets are read from (default `data`, relative to the experiment
    /// file's directory's working directory).
    #[serde(default)]
    pub data_root: Option<PathBuf>,
}

/// One entry of `heads:`: `name`, or `{name: {settings}}` with the head's own settings type, so
/// that a wrong setting is reported at its line; either may carry `as: label` to run a head
/// more than once with different settings (ablations): `{alien: {grid: ...}, as: alien-no-l2sp}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadEntry {
    /// The head and its settings.
    pub spec: HeadSpec,
    /// The label it runs under, when not its own name.
    pub alias: Option<String>,
}

impl<'de> Deserialize<'de> for HeadEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        fn unknown<E: de::Error>(name: &str) -> E {
            E::custom(format!(
                "unknown head `{name}` (known: {})",
                ueb_heads::HEAD_NAMES.join(", ")
            ))
        }
        impl<'de> Visitor<'de> for V {
            type Value = HeadEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a head name (e.g. `sr`) or a map `name: {settings}` (with an optional `as: label`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<HeadEntry, E> {
                HeadSpec::from_name(v)
                    .map(|spec| HeadEntry { spec, alias: None })
                    .map_err(|_| unknown(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<HeadEntry, A::Error> {
                let mut spec: Option<HeadSpec> = None;
                let mut alias: Option<String> = None;
                while let Some(name) = m.next_key::<String>()? {
                    if name == "as" {
                        if alias.is_some() {
                            return Err(de::Error::custom("`as` appears twice in one head entry"));
                        }
                        alias = Some(m.next_value()?);
                        continue;
                    }
                    if let Some(first) = &spec {
                        return Err(de::Error::custom(format!(
                            "one head per list entry: `{name}` follows `{}` in the same entry",
                            first.name()
                        )));
                    }
                    spec = Some(HeadSpec::next_settings(&name, &mut m)?.ok_or_else(|| unknown::<A::Error>(&name))?);
                }
                let spec = spec.ok_or_else(|| de::Error::custom("a head entry needs a head name"))?;
                if matches!(spec, HeadSpec::Sr | HeadSpec::Entropy | HeadSpec::Margin) && alias.is_none() {
                    return Err(de::Error::custom(format!(
                        "head `{0}` has no settings; write just `{0}`",
                        spec.name()
                    )));
                }
                Ok(HeadEntry { spec, alias })
            }
        }
        d.deserialize_any(V)
    }
}

/// A head of the plan: the label its results are filed under (its name, or its `as:` label)
/// and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanHead {
    /// Directory name and table row.
    pub label: String,
    /// The head and its settings.
    pub spec: HeadSpec,
}

impl Serialize for PlanHead {
    // Without a label the entry is written exactly as before labels existed, so the plan and
    // stage hashes of existing results directories stay valid.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.label == self.spec.name() {
            return self.spec.serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("as", &self.label)?;
        m.serialize_entry("head", &self.spec)?;
        m.end()
    }
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One backbone as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackbone {
    /// Name used in result paths and tables.
    pub name: String,
    /// `hf:OWNER/NAME@REVISION`, a local model directory, or `scratch`.
    pub model: String,
    /// Size of a `scratch` model.
    #[serde(default)]
    pub scratch: Option<ScratchConfig>,
    /// Fine-tuning settings.
    #[serde(default)]
    pub finetune: RawFinetune,
    /// Multiple-choice settings (a causal LM on MMLU, ARC); `mc` is the former name, still
    /// read.
    #[serde(default, alias = "mc")]
    pub multiple_choice: Option<ChoiceSettings>,
}

/// How a causal LM is prompted on a multiple-choice dataset: `multiple_choice: {shots: 5}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChoiceSettings {
    /// Solved examples before each question: the first `shots` questions of the same subject
    /// in the dataset's few-shot pool (MMLU's dev split); 0 for 0-shot.
    pub shots: usize,
    /// Truncation length of the prompts (default: min(512, the model's limit)); a prompt
    /// that reaches it is an error rather than truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Prompts per forward pass (default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

/// Fine-tuning settings as written (every field optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFinetune {
    /// `full`, `lora` or `frozen` (default `full`).
    #[serde(default)]
    pub mode: Option<String>,
    /// LoRA rank (default 8).
    #[serde(default)]
    pub r: Option<usize>,
    /// LoRA α (default 16).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// LoRA target modules (default query, key, value).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Epochs (default 3).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Peak learning rate (default 5e-5).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Batch size (default 32).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Gradient accumulation (default 1).
    #[serde(default)]
    pub grad_accumulation: Option<usize>,
    /// Warm-up fraction (default 0).
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    /// Weight decay (default 0).
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Gradient clipping (default 1.0).
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Truncation length (default min(512, the model's limit)).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Training engine: `auto` (default), `host` or `burn`.
    #[serde(default)]
    pub engine: Option<ueb_backbones::FinetuneEngine>,
}

impl RawFinetune {
    /// The keys that were written, for errors that say which settings do not apply.
    fn written(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |set: bool, k| {
            if set {
                keys.push(k);
            }
        };
        add(self.mode.is_some(), "mode");
        add(self.r.is_some(), "r");
        add(self.alpha.is_some(), "alpha");
        add(self.targets.is_some(), "targets");
        add(self.epochs.is_some(), "epochs");
        add(self.lr.is_some(), "lr");
        add(self.batch_size.is_some(), "batch_size");
        add(self.grad_accumulation.is_some(), "grad_accumulation");
        add(self.warmup_ratio.is_some(), "warmup_ratio");
        add(self.weight_decay.is_some(), "weight_decay");
        add(self.max_grad_norm.is_some(), "max_grad_norm");
        add(self.max_length.is_some(), "max_length");
        add(self.engine.is_some(), "engine");
        keys
    }
}

/// A dataset as written: a registry name, or a spec.
#[derive(Debug, Clone)]
pub enum RawDataset {
    /// A registry name (`ueb data list`).
    Name(String),
    /// A registry name with options, or a generic dataset.
    Spec(Box<DatasetSpec>),
}

impl<'de> Deserialize<'de> for RawDataset {
    // Not `#[serde(untagged)]`: that reports any mistake inside a spec as "did not match any
    // variant", without the key or its line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDataset;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a dataset name (e.g. `sst2`) or a map {name: ..., ...}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<RawDataset, E> {
                Ok(RawDataset::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<RawDataset, A::Error> {
                DatasetSpec::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|d| RawDataset::Spec(Box::new(d)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A dataset with options: a registry name, or any files with a column mapping (`generic`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Registry name, or the name of a generic dataset (it names result directories).
    pub name: String,
    /// Data root for this dataset.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Fraction of train held out as val (default 0.2).
    #[serde(default)]
    pub val_fraction: Option<f64>,
    /// Parameters of `synthetic`.
    #[serde(default)]
    pub synthetic: Option<SyntheticConfig>,
    /// Parts of 20 Newsgroups posts to strip (`headers`, `footers`, `quotes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<NewsgroupsPart>,
    /// Rows of train held out as test where the data has no labelled test split (ToxiGen
    /// without its annotated test file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_holdout: Option<usize>,
    /// A generic dataset: a column mapping written inline, or the path of a mapping file
    /// (resolved to the inline form, so `plan.yaml` and the stage hashes hold the mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericSource>,
}

/// Where a generic dataset's column mapping is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GenericSource {
    /// The mapping itself (`name` may be left out: the entry's name is used).
    Inline(GenericSpec),
    /// A YAML mapping file, relative to the working directory.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for GenericSource {
    // A string is a file, a map is the mapping; deserializing the map in place (rather than
    // through an untagged enum) keeps serde_yaml_ng's line and column in its errors.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GenericSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column mapping {text, label, splits, ...} or the path of a mapping file")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GenericSource, E> {
                Ok(GenericSource::File(PathBuf::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<GenericSource, A::Error> {
                GenericSpec::deserialize(de::value::MapAccessDeserializer::new(m)).map(GenericSource::Inline)
            }
        }
        d.deserialize_any(V)
    }
}

impl DatasetSpec {
    /// Whether this is a multiple-choice dataset of the registry (MMLU, ARC): its cells score
    /// the questions with a causal LM instead of fine-tuning a classifier.
    pub fn is_multiple_choice(&self) -> bool {
        self.generic.is_none() && ueb_data::info(&self.name).is_ok_and(|i| i.task == ueb_data::Task::MultipleChoice)
    }

    /// The options `ueb_data` loads this dataset with.
    pub fn load_options(&self, data_root: &Path) -> ueb_data::DatasetOptions {
        let mut opts = ueb_data::DatasetOptions {
            root: self.root.clone().unwrap_or_else(|| data_root.to_path_buf()),
            remove: self.remove.clone(),
            test_holdout: self.test_holdout,
            ..Default::default()
        };
        if let Some(f) = self.val_fraction {
            opts.val_fraction = f;
        }
        if let Some(s) = &self.synthetic {
            opts.synthetic = s.clone();
        }
        opts
    }

    /// Loads the dataset (registry or generic).
    ///
    /// # Errors
    /// Missing files (the message says where ueb looked), malformed rows (file and line).
    pub fn load(&self, data_root: &Path) -> Result<ueb_data::Dataset> {
        let opts = self.load_options(data_root);
        Ok(match &self.generic {
            Some(GenericSource::Inline(spec)) => ueb_data::load_generic(spec, &opts)?,
            Some(GenericSource::File(path)) => {
                let mut spec = GenericSpec::from_yaml_file(path)?;
                if spec.name.is_empty() {
                    spec.name.clone_from(&self.name);
                }
                ueb_data::load_generic(&spec, &opts)?
            }
            None => ueb_data::load(&self.name, &opts)?,
        })
    }
}

/// Metric settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Bins of the binned metrics.
    pub bins: usize,
    /// Bootstrap resamples (0: no intervals).
    pub bootstrap: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bins: 15,
            bootstrap: 1000,
        }
    }
}

/// A resolved backbone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backbone {
    /// Name in paths and tables.
    pub name: String,
    /// Model reference (`scratch` for a model trained from scratch).
    pub model: String,
    /// Size of a scratch model.
    pub scratch: Option<ScratchConfig>,
    /// Fine-tuning (seed filled in per cell).
    pub finetune: FinetuneConfig,
    /// Truncation length.
    pub max_length: Option<usize>,
    /// Multiple-choice prompting, for backbones of an experiment with multiple-choice
    /// datasets (absent otherwise, so that sequence caches keep their hashes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiple_choice: Option<ChoiceSettings>,
}

/// Where a cell's features come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Fine-tune (or train) `backbone` on `dataset`, export the cache.
    Model {
        /// The backbone.
        backbone: Box<Backbone>,
        /// The dataset.
        dataset: Box<DatasetSpec>,
    },
    /// A cache made elsewhere.
    Cache {
        /// Its directory.
        path: PathBuf,
    },
}

/// One cell: a source at a seed. Heads run inside a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Backbone name (`cache` for bring-your-own caches).
    pub backbone: String,
    /// Dataset name (the cache directory's name for caches).
    pub dataset: String,
    /// Seed.
    pub seed: u64,
    /// Where the features come from.
    pub source: Source,
}

/// The cache directory name of multiple-choice cells: their cache does not depend on the seed.
pub const ALL_SEEDS: &str = "all-seeds";

impl Cell {
    /// `backbone/dataset/seed-k`, the cell's place under `cells/` (and `caches/`).
    pub fn rel_dir(&self) -> PathBuf {
        PathBuf::from(&self.backbone)
            .join(&self.dataset)
            .join(format!("seed-{}", self.seed))
    }

    /// Whether the cell scores a multiple-choice dataset with a causal LM.
    pub fn is_multiple_choice(&self) -> bool {
        matches!(&self.source, Source::Model { dataset, .. } if dataset.is_multiple_choice())
    }

    /// Whether building the cell's cache trains on the device: every backbone × dataset cell
    /// fine-tunes (or trains its head), except multiple-choice prompting, which only reads the
    /// model.
    pub fn trains(&self) -> bool {
        matches!(&self.source, Source::Model { .. }) && !self.is_multiple_choice()
    }

    /// The cell's cache under `caches/`: `backbone/dataset/seed-k`, or
    /// `backbone/dataset/all-seeds` for a multiple-choice cell, whose cache every seed shares
    /// (no training: the prompts and the model do not depend on the seed).
    pub fn cache_rel_dir(&self) -> PathBuf {
        if self.is_multiple_choice() {
            PathBuf::from(&self.backbone).join(&self.dataset).join(ALL_SEEDS)
        } else {
            self.rel_dir()
        }
    }
}

/// The prefix of a `choice_temperature` reference that names a backbone of the experiment
/// (`reference: backbone:llama-2-7b`) instead of a cache directory.
pub const BACKBONE_REF: &str = "backbone:";

/// The backbone a head's settings refer to (`reference: backbone:NAME`), if any.
pub fn reference_backbone(spec: &HeadSpec) -> Option<String> {
    match spec {
        HeadSpec::ChoiceTemperature(cfg) => cfg
            .reference
            .as_ref()
            .and_then(|r| r.to_str())
            .and_then(|r| r.strip_prefix(BACKBONE_REF))
            .map(str::to_string),
        _ => None,
    }
}

/// The validated experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Name.
    pub name: String,
    /// Backend.
    pub device: String,
    /// The precision the device computes the backbone passes in (absent when f32, so that
    /// plans written before precision existed keep their text).
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// What resolving the plan changed that the user should hear (a precision a CPU device
    /// does not compute in); printed, not saved.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Heads in order, with their settings filled in.
    pub heads: Vec<PlanHead>,
    /// Metric settings.
    pub metrics: MetricsConfig,
    /// Data root of registry datasets.
    pub data_root: PathBuf,
    /// Every cell, in a fixed order (backbone, dataset, seed; or cache, seed).
    pub cells: Vec<Cell>,
    /// The command line's `--set KEY=VALUE` overrides, in order, as applied to the file
    /// (absent without any, so that plans without overrides keep their text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

fn finetune_config(raw: &RawFinetune, backbone: &str) -> Result<FinetuneConfig> {
    use ueb_backbones::FinetuneMode;
    let d = FinetuneConfig::default();
    let mode = match raw.mode.as_deref().unwrap_or("full") {
        "full" => FinetuneMode::Full,
        "frozen" => FinetuneMode::Frozen,
        "lora" => {
            let FinetuneMode::Lora { r, alpha, targets } = FinetuneMode::lora() else {
                unreachable!()
            };
            FinetuneMode::Lora {
                r: raw.r.unwrap_or(r),
                alpha: raw.alpha.unwrap_or(alpha),
                targets: raw.targets.clone().unwrap_or(targets),
            }
        }
        other => bail!("backbone {backbone}: finetune.mode {other:?} is not one of full, lora, frozen"),
    };
    if !matches!(mode, FinetuneMode::Lora { .. }) && (raw.r.is_some() || raw.alpha.is_some() || raw.targets.is_some()) {
        bail!("backbone {backbone}: finetune.r, alpha and targets only apply to mode: lora");
    }
    let cfg = FinetuneConfig {
        mode,
        epochs: raw.epochs.unwrap_or(d.epochs),
        lr: raw.lr.unwrap_or(d.lr),
        batch_size: raw.batch_size.unwrap_or(d.batch_size),
        grad_accumulation: raw.grad_accumulation.unwrap_or(d.grad_accumulation),
        warmup_ratio: raw.warmup_ratio.unwrap_or(d.warmup_ratio),
        weight_decay: raw.weight_decay.unwrap_or(d.weight_decay),
        max_grad_norm: raw.max_grad_norm.or(d.max_grad_norm),
        seed: 0,
        engine: raw.engine.unwrap_or_default(),
    };
    cfg.validate().with_context(|| format!("backbone {backbone}"))?;
    Ok(cfg)
}

/// Validates one `datasets:` entry and fills in what it refers to: the registry's canonical
/// name, or a generic mapping read from its file. The dataset is loaded once here, so that a
/// missing file, a malformed row or a missing split is reported before any model is trained.
/// Also returns whether the data has a few-shot pool (MMLU's dev split).
fn resolve_dataset(mut spec: DatasetSpec, data_root: &Path) -> Result<(DatasetSpec, bool)> {
    if let Some(f) = spec.val_fraction
        && !(f > 0.0 && f < 1.0)
    {
        bail!("datasets: {} val_fraction {f} is not in (0, 1)", spec.name);
    }
    match spec.generic.take() {
        Some(source) => {
            check_name("dataset", &spec.name)?;
            if spec.synthetic.is_some() || !spec.remove.is_empty() || spec.test_holdout.is_some() {
                bail!(
                    "datasets: {}: `synthetic`, `remove` and `test_holdout` apply to registry datasets, not to a generic one",
                    spec.name
                );
            }
            let mut mapping = match source {
                GenericSource::Inline(m) => m,
                GenericSource::File(path) => GenericSpec::from_yaml_file(&path)
                    .with_context(|| format!("datasets: {}: generic mapping", spec.name))?,
            };
            if mapping.name.is_empty() {
                mapping.name.clone_from(&spec.name);
            } else if mapping.name != spec.name {
                bail!(
                    "datasets: the entry {} holds a mapping named {}; use one name (or leave the mapping's out)",
                    spec.name,
                    mapping.name
                );
            }
            spec.generic = Some(GenericSource::Inline(mapping));
        }
        None => {
            let info = ueb_data::info(&spec.name).with_context(|| {
                format!(
                    "datasets: {} is not in the registry (`ueb data list`); for your own files add a \
                     `generic:` column mapping",
                    spec.name
                )
            })?;
            if !matches!(info.task, ueb_data::Task::Sequence | ueb_data::Task::MultipleChoice) {
                bail!(
                    "datasets: {} is a {} task; the runner fine-tunes sequence classifiers and scores multiple-choice questions",
                    spec.name,
                    info.task.as_str()
                );
            }
            if spec.synthetic.is_some() && info.name != "synthetic" {
                bail!(
                    "datasets: `synthetic` settings only apply to the synthetic dataset, not {}",
                    spec.name
                );
            }
            spec.name = info.name.to_string();
        }
    }
    let data = spec
        .load(data_root)
        .with_context(|| format!("datasets: {}", spec.name))?;
    for split in ["train", "val", "test"] {
        data.split(split).with_context(|| format!("datasets: {}", spec.name))?;
    }
    let fewshot = data.split(FEWSHOT).is_ok_and(|s| !s.is_empty());
    Ok((spec, fewshot))
}

/// The split that holds the solved examples of k-shot prompts (MMLU's official dev).
pub const FEWSHOT: &str = "fewshot";

/// Checks that a backbone can run every dataset of the experiment: a causal LM (decoder) with
/// no fine-tuning settings on multiple-choice datasets, no `multiple_choice:` settings next to sequence
/// datasets, and a few-shot pool where `shots` > 0.
fn check_backbone_datasets(b: &RawBackbone, datasets: &[(DatasetSpec, bool)]) -> Result<()> {
    let choice = datasets.iter().find(|(d, _)| d.is_multiple_choice());
    let seq = datasets.iter().find(|(d, _)| !d.is_multiple_choice());
    if let (Some(_), Some((d, _))) = (&b.multiple_choice, seq) {
        bail!(
            "backbone {}: `multiple_choice` settings apply to multiple-choice datasets, but dataset {} is a sequence task; \
             run it in another experiment or remove `multiple_choice`",
            b.name,
            d.name
        );
    }
    let Some((d, _)) = choice else {
        return Ok(());
    };
    if b.model == "scratch" {
        bail!(
            "backbone {} on dataset {}: a multiple-choice dataset is scored by a pre-trained causal LM (LLaMA, Qwen2, Qwen3), not a scratch model",
            b.name,
            d.name
        );
    }
    let written = b.finetune.written();
    if !written.is_empty() {
        bail!(
            "backbone {} on dataset {}: multiple-choice questions are scored by the causal LM as it is (no fine-tuning), \
             so finetune.{} does not apply; remove `finetune` (the prompt length is `multiple_choice: {{max_length: L}}`)",
            b.name,
            d.name,
            written.join(", finetune.")
        );
    }
    if let ueb_backbones::ModelRef::Local(dir) =
        ueb_backbones::ModelRef::parse(&b.model).with_context(|| format!("backbone {}", b.name))?
    {
        let md = ueb_backbones::ModelDir::open(&dir).with_context(|| format!("backbone {}", b.name))?;
        if !ueb_backbones::is_decoder(&md).with_context(|| format!("backbone {}", b.name))? {
            bail!(
                "backbone {} on dataset {}: {} is not a causal LM (LLaMA, Qwen2, Qwen3); multiple-choice datasets need one",
                b.name,
                d.name,
                dir.display()
            );
        }
    }
    let shots = b.multiple_choice.as_ref().map_or(0, |m| m.shots);
    if shots > 0
        && let Some((d, _)) = datasets.iter().find(|(d, fewshot)| d.is_multiple_choice() && !fewshot)
    {
        bail!(
            "backbone {} on dataset {}: multiple_choice.shots {shots} needs solved examples, and {} has no few-shot pool \
             (MMLU: mmlu/dev.csv); use shots: 0",
            b.name,
            d.name,
            d.name
        );
    }
    if b.multiple_choice
        .as_ref()
        .is_some_and(|m| m.max_length == Some(0) || m.batch_size == Some(0))
    {
        bail!(
            "backbone {}: multiple_choice.max_length and multiple_choice.batch_size must be at least 1",
            b.name
        );
    }
    Ok(())
}

/// A name usable as one path component.
fn check_name(kind: &str, name: &str) -> Result<()> {
    // Every file system ueb runs on takes names of 255 bytes; a label also names files in it.
    const MAX_NAME: usize = 200;
    if name.len() > MAX_NAME {
        bail!(
            "{kind} name {:?}… is {} bytes long; at most {MAX_NAME} (it names a directory)",
            name.chars().take(40).collect::<String>(),
            name.len()
        );
    }
    if name.is_empty() || name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("{kind} name {name:?} must be letters, digits, '-', '_' or '.' (it names a directory)");
    }
    Ok(())
}

/// Checks the `choice_temperature` heads' references: `backbone:NAME` names a backbone of the
/// experiment, a directory is a cache, and objective `kl` has one.
fn check_references(heads: &[PlanHead], backbones: &[Backbone]) -> Result<()> {
    for h in heads {
        let HeadSpec::ChoiceTemperature(cfg) = &h.spec else {
            continue;
        };
        match (&cfg.reference, reference_backbone(&h.spec)) {
            (None, _) if cfg.objective == ueb_heads::choice_calibration::ChoiceObjective::Kl => bail!(
                "heads: {}: objective kl needs `reference`: `backbone:NAME` (the pre-trained counterpart among the backbones) or a cache directory",
                h.label
            ),
            (None, _) => {}
            (Some(_), Some(name)) => {
                if backbones.is_empty() {
                    bail!(
                        "heads: {}: reference {BACKBONE_REF}{name} needs backbones; this experiment runs caches (give the cache directory instead)",
                        h.label
                    );
                }
                if !backbones.iter().any(|b| b.name == name) {
                    bail!(
                        "heads: {}: reference {BACKBONE_REF}{name} is not a backbone of this experiment (backbones: {})",
                        h.label,
                        backbones.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
                // Every backbone runs every dataset (backbones × datasets), so the reference
                // has a cache for each dataset and seed of the head's cells.
            }
            (Some(dir), None) => {
                if !dir.join("meta.json").is_file() {
                    bail!(
                        "heads: {}: reference {} is not a feature cache (no meta.json); for a backbone of this experiment write {BACKBONE_REF}NAME",
                        h.label,
                        dir.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Command-line settings that replace the experiment file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--device`.
    pub device: Option<String>,
    /// `--precision`.
    pub precision: Option<Precision>,
    /// `--data-root`.
    pub data_root: Option<PathBuf>,
    /// The backends the binary was built with: a plan naming another device is refused
    /// (`None`: any backend name is accepted).
    pub backends: Option<Vec<&'static str>>,
    /// `--set KEY=VALUE`: changes to the experiment file before it is validated (see
    /// [`apply_set`]).
    pub sets: Vec<String>,
}

/// Applies one `--set KEY=VALUE` to a parsed experiment file: `KEY` is a dotted path
/// (`seeds`, `metrics.bootstrap`, `backbones.tiny.finetune.lr`, `heads.alien.grid.lr`), whose
/// list steps name an entry (a backbone or dataset by `name`, a head by its name or `as:`
/// label); `VALUE` is YAML (`[1.0e-5, 4.0e-4]`, `0.1`, `lora`). Missing mappings on the way
/// are created, so a key the file leaves at its default can be set; validation then refuses
/// keys that do not exist.
///
/// # Errors
/// A malformed override, a value that is not YAML, or a path naming no entry or going
/// through a plain value, each naming the override.
pub fn apply_set(root: &mut serde_yaml_ng::Value, set: &str) -> Result<()> {
    use serde_yaml_ng::{Mapping, Value};
    let Some((path, text)) = set.split_once('=') else {
        bail!("--set {set}: expected KEY=VALUE (e.g. --set metrics.bootstrap=0)");
    };
    let new: Value = serde_yaml_ng::from_str(text).map_err(|e| message!("--set {set}: the value is not YAML: {e}"))?;
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("--set {set}: `{path}` has an empty key");
    }
    let mut cur = root;
    for (i, key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        let here = keys[..=i].join(".");
        if cur.is_null() {
            *cur = Value::Mapping(Mapping::new());
        }
        cur = match cur {
            Value::Mapping(m) => {
                let k = Value::String((*key).to_string());
                if last {
                    m.insert(k, new);
                    return Ok(());
                }
                m.entry(k).or_insert(Value::Null)
            }
            Value::Sequence(items) => {
                let names: Vec<String> = items.iter().filter_map(entry_name).collect();
                let Some(pos) = items
                    .iter()
                    .position(|e| entry_name(e).as_deref() == Some(*key) || entry_label(e).as_deref() == Some(*key))
                else {
                    bail!(
                        "--set {set}: `{here}` names no entry of `{}` (entries: {})",
                        keys[..i].join("."),
                        names.join(", ")
                    );
                };
                if last {
                    bail!("--set {set}: `{here}` is a whole entry; set one of its keys");
                }
                let item = &mut items[pos];
                // A bare name (`- sr`, `- sst2`) becomes the mapping it abbreviates.
                if let Value::String(name) = item {
                    let name = name.clone();
                    let mut m = Mapping::new();
                    if keys[0] == "heads" {
                        m.insert(Value::String(name), Value::Mapping(Mapping::new()));
                    } else {
                        m.insert(Value::String("name".into()), Value::String(name));
                    }
                    *item = Value::Mapping(m);
                }
                descend_entry(item, keys[0] == "heads")
            }
            _ => bail!("--set {set}: `{}` is a value, not a mapping", keys[..i].join(".")),
        };
    }
    Ok(())
}

/// The name of a list entry: a bare string, a mapping's `name`, or a head's single key.
fn entry_name(e: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match e {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.get("name").and_then(Value::as_str).map(str::to_string).or_else(|| {
            m.keys()
                .filter_map(Value::as_str)
                .find(|k| *k != "as")
                .map(str::to_string)
        }),
        _ => None,
    }
}

/// A head entry's `as:` label.
fn entry_label(e: &serde_yaml_ng::Value) -> Option<String> {
    e.get("as").and_then(serde_yaml_ng::Value::as_str).map(str::to_string)
}

/// Where the keys after a list entry go: a head's settings (its single non-`as` key's value,
/// made a mapping), or the entry itself.
fn descend_entry(item: &mut serde_yaml_ng::Value, head: bool) -> &mut serde_yaml_ng::Value {
    use serde_yaml_ng::{Mapping, Value};
    let key = match &*item {
        Value::Mapping(m) if head => m.keys().find(|k| k.as_str() != Some("as")).cloned(),
        _ => None,
    };
    match (item, key) {
        (Value::Mapping(m), Some(key)) => {
            let settings = m.entry(key).or_insert(Value::Null);
            if settings.is_null() {
                *settings = Value::Mapping(Mapping::new());
            }
            settings
        }
        (item, _) => item,
    }
}

impl Plan {
    /// Reads and resolves an experiment file. Relative paths (caches, data roots, local models)
    /// are relative to the working directory.
    ///
    /// # Errors
    /// YAML errors with line and column, unknown keys, wrong types, missing caches or model
    /// directories, duplicate names, bad hyperparameters.
    pub fn from_file(path: &Path, overrides: &Overrides) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses and resolves experiment text; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Plan::from_file`].
    pub fn from_str(text: &str, origin: &str, overrides: &Overrides) -> Result<Self> {
        let raw: RawExperiment = if overrides.sets.is_empty() {
            serde_yaml_ng::from_str(text).map_err(|e| message!("{origin}: {e}"))?
        } else {
            // Overrides change the parsed file; its errors then name the key, not a line.
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| message!("{origin}: {e}"))?;
            for set in &overrides.sets {
                apply_set(&mut value, set).with_context(|| origin.to_string())?;
            }
            serde_yaml_ng::from_value(value).map_err(|e| message!("{origin} with {}: {e}", overrides.sets.join(" ")))?
        };
        Self::resolve(raw, overrides).with_context(|| origin.to_string())
    }

    /// Validates a raw experiment.
    ///
    /// # Errors
    /// As [`Plan::from_file`].
    pub fn resolve(mut raw: RawExperiment, overrides: &Overrides) -> Result<Self> {
        if let Some(root) = &overrides.data_root {
            raw.data_root = Some(root.clone());
        }
        let device_override = overrides.device.as_deref();
        check_name("experiment", &raw.name)?;
        if raw.seeds.is_empty() {
            bail!("seeds: at least one seed is needed");
        }
        let mut seen = std::collections::HashSet::new();
        for s in &raw.seeds {
            if !seen.insert(*s) {
                bail!("seeds: {s} appears twice");
            }
        }
        if raw.heads.is_empty() {
            bail!("heads: at least one head is needed");
        }
        let mut heads: Vec<PlanHead> = Vec::with_capacity(raw.heads.len());
        let mut names = std::collections::HashSet::new();
        for h in &raw.heads {
            let label = match &h.alias {
                Some(a) => {
                    check_name("head label", a)?;
                    if ueb_heads::HEAD_NAMES.contains(&a.as_str()) {
                        bail!(
                            "heads: `as: {a}` is the name of a head; pick a label such as {}-variant",
                            h.spec.name()
                        );
                    }
                    a.clone()
                }
                None => h.spec.name().to_string(),
            };
            if !names.insert(label.clone()) {
                bail!(
                    "heads: {label} appears twice; give one of them a label with `as:` (e.g. `{{{}: {{...}}, as: {}-ablation}}`)",
                    h.spec.name(),
                    h.spec.name()
                );
            }
            // The head's error names the head; a label is added when it differs.
            match h.spec.validate() {
                Err(e) if label != h.spec.name() => return Err(e).with_context(|| format!("heads: {label}")),
                other => other?,
            }
            heads.push(PlanHead {
                label,
                spec: h.spec.clone(),
            });
        }
        ueb_metrics::check_bins(raw.metrics.bins).context("metrics.bins")?;
        if raw.metrics.bootstrap > 0 {
            ueb_metrics::check_resamples(raw.metrics.bootstrap).context("metrics.bootstrap")?;
        }
        let has_models = !raw.backbones.is_empty() || !raw.datasets.is_empty();
        if has_models && !raw.caches.is_empty() {
            bail!("use either backbones × datasets or caches, not both");
        }
        if raw.backbones.is_empty() != raw.datasets.is_empty() {
            bail!("backbones and datasets go together: both need at least one entry");
        }
        if !has_models && raw.caches.is_empty() {
            bail!("nothing to run: give backbones and datasets, or caches");
        }
        let device = device_override
            .map(str::to_string)
            .or(raw.device.clone())
            .unwrap_or_else(|| "flex".into());
        let device_name = crate::device::DeviceName::parse(&device, overrides.backends.as_deref())?;
        let (precision, precision_note) = overrides
            .precision
            .or(raw.precision)
            .unwrap_or_default()
            .on(device_name);
        let data_root = raw
            .data_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(ueb_data::DEFAULT_ROOT));
        let mut cells = Vec::new();
        let mut backbones = Vec::new();
        let mut bnames = std::collections::HashSet::new();
        for b in &raw.backbones {
            check_name("backbone", &b.name)?;
            if !bnames.insert(b.name.clone()) {
                bail!("backbones: {} appears twice", b.name);
            }
            if b.finetune.max_length == Some(0) {
                bail!("backbone {}: finetune.max_length must be at least 1", b.name);
            }
            if b.model == "scratch" {
                if matches!(b.finetune.mode.as_deref(), Some("lora" | "frozen")) {
                    bail!(
                        "backbone {}: a scratch model trains fully (finetune.mode: full)",
                        b.name
                    );
                }
                let scratch = b.scratch.clone().unwrap_or_default();
                scratch.validate().with_context(|| format!("backbone {}", b.name))?;
                if let Some(l) = b.finetune.max_length
                    && l > scratch.max_positions
                {
                    bail!(
                        "backbone {}: finetune.max_length {l} is longer than the scratch model's max_positions {}",
                        b.name,
                        scratch.max_positions
                    );
                }
            } else {
                if b.scratch.is_some() {
                    bail!("backbone {}: `scratch` settings need model: scratch", b.name);
                }
                let r = ueb_backbones::ModelRef::parse(&b.model).with_context(|| format!("backbone {}", b.name))?;
                if let ueb_backbones::ModelRef::Local(dir) = &r {
                    ueb_backbones::ModelDir::open(dir).with_context(|| format!("backbone {}", b.name))?;
                }
            }
            backbones.push(Backbone {
                name: b.name.clone(),
                model: b.model.clone(),
                scratch: (b.model == "scratch").then(|| b.scratch.clone().unwrap_or_default()),
                finetune: finetune_config(&b.finetune, &b.name)?,
                max_length: b.finetune.max_length,
                multiple_choice: None,
            });
        }
        let mut resolved = Vec::new();
        let mut dnames = std::collections::HashSet::new();
        for d in &raw.datasets {
            let spec = match d {
                RawDataset::Name(n) => DatasetSpec {
                    name: n.clone(),
                    root: None,
                    val_fraction: None,
                    synthetic: None,
                    remove: Vec::new(),
                    test_holdout: None,
                    generic: None,
                },
                RawDataset::Spec(s) => (**s).clone(),
            };
            let (spec, fewshot) = resolve_dataset(spec, &data_root)?;
            if !dnames.insert(spec.name.clone()) {
                bail!("datasets: {} appears twice", spec.name);
            }
            resolved.push((spec, fewshot));
        }
        let has_multiple_choice = resolved.iter().any(|(d, _)| d.is_multiple_choice());
        // Model directories are checked before any dataset is read; which backbone suits
        // which dataset only after both.
        for (raw_b, b) in raw.backbones.iter().zip(&mut backbones) {
            check_backbone_datasets(raw_b, &resolved)?;
            b.multiple_choice = has_multiple_choice.then(|| raw_b.multiple_choice.clone().unwrap_or_default());
        }
        let datasets: Vec<DatasetSpec> = resolved.into_iter().map(|(d, _)| d).collect();
        check_references(&heads, &backbones)?;
        // A backbone whose cache another's head reads (`reference: backbone:NAME`) runs
        // first, so that in one process the reference is there when the head needs it.
        let referenced: Vec<String> = heads.iter().filter_map(|h| reference_backbone(&h.spec)).collect();
        backbones.sort_by_key(|b| !referenced.contains(&b.name));
        for b in &backbones {
            for d in &datasets {
                for &seed in &raw.seeds {
                    cells.push(Cell {
                        backbone: b.name.clone(),
                        dataset: d.name.clone(),
                        seed,
                        source: Source::Model {
                            backbone: Box::new(b.clone()),
                            dataset: Box::new(d.clone()),
                        },
                    });
                }
            }
        }
        let mut cnames = std::collections::HashSet::new();
        for c in &raw.caches {
            if !c.join("meta.json").is_file() {
                bail!("caches: {} is not a feature cache (no meta.json)", c.display());
            }
            let name = c
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| message!("caches: {} has no directory name", c.display()))?;
            check_name("cache directory", &name)?;
            // The whole cache is read and its logits checked against its classifier now, not
            // after the heads before it have been fitted.
            ueb_cache::FeatureCache::load(c).with_context(|| format!("caches: {}", c.display()))?;
            if !cnames.insert(name.clone()) {
                bail!("caches: two caches are named {name}; rename one directory");
            }
            for &seed in &raw.seeds {
                cells.push(Cell {
                    backbone: "cache".into(),
                    dataset: name.clone(),
                    seed,
                    source: Source::Cache { path: c.clone() },
                });
            }
        }
        if !precision.is_f32()
            && let Some(cell) = cells.iter().find(|c| c.trains())
        {
            bail!(
                "precision {precision}: cell {} trains on the device, and training in half precision needs f32 master weights, which ueb does not keep yet; train with precision: f32 (half precision serves multiple-choice prompting and `ueb extract`)",
                cell.rel_dir().display()
            );
        }
        Ok(Plan {
            name: raw.name,
            device,
            precision,
            notes: precision_note.into_iter().collect(),
            seeds: raw.seeds,
            heads,
            metrics: raw.metrics,
            data_root,
            cells,
            overrides: overrides.sets.clone(),
        })
    }

    /// The cells of shard `i` of `n` (1-based): every n-th cell from the i-th, so shards are
    /// disjoint, cover the plan and are the same on every machine.
    pub fn shard(&self, i: usize, n: usize) -> Vec<&Cell> {
        self.cells
            .iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, c)| c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error::chain;

    const SCRATCH: &str = "backbones:\n  - name: tiny\n    model: scratch\n    scratch: {hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}\n    finetune: {epochs: 1, lr: 1.0e-3, batch_size: 32, max_length: 40}\n";

    fn resolve(text: &str) -> Result<Plan> {
        Plan::from_str(text, "test.yaml", &Overrides::default())
    }

    fn error(text: &str) -> String {
        match resolve(text) {
            Ok(_) => panic!("resolved:\n{text}"),
            Err(e) => chain(&e),
        }
    }

    fn synthetic(heads: &str) -> String {
        format!(
            "name: x\n{SCRATCH}datasets:\n  - {{name: synthetic, synthetic: {{train: 60, val: 30, test: 30}}}}\nheads: {heads}\n"
        )
    }

    #[test]
    fn half_precision_is_for_gpus_and_not_for_training() {
        // A CPU device keeps f32, says so, and its plan's text is the f32 plan's.
        let f32_plan = resolve(&synthetic("[sr]")).unwrap();
        let plan = resolve(&synthetic("[sr]").replace("name: x\n", "name: x\nprecision: bf16\n")).unwrap();
        assert_eq!(plan.precision, Precision::F32);
        assert_eq!(plan.notes.len(), 1);
        assert!(
            plan.notes[0].contains("flex device computes in f32"),
            "{:?}",
            plan.notes
        );
        assert_eq!(
            serde_yaml_ng::to_string(&plan).unwrap(),
            serde_yaml_ng::to_string(&f32_plan).unwrap()
        );
        assert!(!serde_yaml_ng::to_string(&f32_plan).unwrap().contains("precision"));
        // On a GPU the precision holds, and a cell that trains is refused, by name.
        let gpu = |p: Precision| Overrides {
            device: Some("wgpu".into()),
            precision: Some(p),
            ..Overrides::default()
        };
        let e = Plan::from_str(&synthetic("[sr]"), "test.yaml", &gpu(Precision::F16)).unwrap_err();
        let e = chain(&e);
        assert!(e.contains("precision f16: cell tiny/synthetic/seed-0 trains"), "{e}");
        assert!(e.contains("f32 master weights"), "{e}");
        let plan = Plan::from_str(&synthetic("[sr]"), "test.yaml", &gpu(Precision::F32)).unwrap();
        assert!(plan.notes.is_empty());
        // The command line's precision wins over the file's; an unknown one names the choices.
        let plan = Plan::from_str(
            &synthetic("[sr]").replace("name: x\n", "name: x\nprecision: bf16\n"),
            "test.yaml",
            &gpu(Precision::F32),
        )
        .unwrap();
        assert_eq!(plan.precision, Precision::F32);
        let e = error(&synthetic("[sr]").replace("name: x\n", "name: x\nprecision: fp16\n"));
        assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn a_malformed_head_is_an_error_with_its_line() {
        let e = error(&synthetic("[sr, nonsense]"));
        assert!(
            e.starts_with("test.yaml: ") && e.contains("nonsense") && e.contains("line 9"),
            "{e}"
        );
        let e = error(&synthetic("[{mahalanobis: {featurs: dense}}]"));
        assert!(e.contains("featurs"), "{e}");
        let e = error(&synthetic("[{temperature: {}, as: sr}]"));
        assert!(e.contains("`as: sr` is the name of a head"), "{e}");
        let e = error(&synthetic("[{temperature: {}, as: \"../x\"}]"));
        assert!(e.contains("head label"), "{e}");
    }

    #[test]
    fn a_duplicate_head_needs_a_label_and_labels_make_it_run_twice() {
        let e = error(&synthetic("[alien, alien]"));
        assert!(e.contains("heads: alien appears twice") && e.contains("as:"), "{e}");
        let plan = resolve(&synthetic("[alien, {alien: {grid: {alpha: [0.0]}}, as: alien-bce}]")).unwrap();
        let labels: Vec<&str> = plan.heads.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["alien", "alien-bce"]);
        let e = error(&synthetic("[{sr: null, as: a}, {entropy: null, as: a}]"));
        assert!(e.contains("heads: a appears twice"), "{e}");
    }

    #[test]
    fn every_form_of_a_dataset_entry_resolves_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A registry name: the dataset's files are looked for under the data root.
        let text = format!(
            "name: x\ndata_root: {}\n{SCRATCH}datasets: [sst2]\nheads: [sr]\n",
            root.display()
        );
        let e = error(&text);
        assert!(e.contains("sst2") && e.contains(&root.display().to_string()), "{e}");
        // A map with the synthetic task's sizes.
        let plan = resolve(&synthetic("[sr]")).unwrap();
        assert_eq!(plan.cells.len(), 1);
        assert_eq!(plan.cells[0].dataset, "synthetic");
        // Your own files through an inline column mapping, and the same mapping in a file.
        let rows = "text,label\n".to_string()
            + &(0..40)
                .map(|i| format!("text number {i},{}\n", i % 2))
                .collect::<String>();
        std::fs::write(root.join("train.csv"), &rows).unwrap();
        std::fs::write(root.join("test.csv"), &rows).unwrap();
        let mapping = "{text: text, label: label, splits: {train: train.csv, test: test.csv}}";
        let inline = format!(
            "name: x\n{SCRATCH}datasets:\n  - {{name: mine, root: {}, generic: {mapping}}}\nheads: [sr]\n",
            root.display()
        );
        let plan = resolve(&inline).unwrap();
        assert_eq!(plan.cells[0].dataset, "mine");
        std::fs::write(root.join("mapping.yaml"), mapping).unwrap();
        let in_file = format!(
            "name: x\n{SCRATCH}datasets:\n  - {{name: mine, root: {}, generic: {}}}\nheads: [sr]\n",
            root.display(),
            root.join("mapping.yaml").display()
        );
        let from_file = resolve(&in_file).unwrap();
        assert_eq!(from_file.cells.len(), plan.cells.len());
        // The same dataset twice.
        let twice = format!(
            "name: x\n{SCRATCH}datasets:\n  - {{name: synthetic, synthetic: {{train: 60, val: 30, test: 30}}}}\n  - {{name: synthetic, synthetic: {{train: 60, val: 30, test: 30}}}}\nheads: [sr]\n"
        );
        assert!(error(&twice).contains("datasets: synthetic appears twice"));
    }

    #[test]
    fn former_names_still_read_and_the_plan_writes_the_new_ones() {
        let plan = resolve(&synthetic("[{mc_kl_temperature: {objective: nll}}]")).unwrap();
        assert_eq!(plan.heads[0].spec.name(), "choice_temperature");
        assert_eq!(plan.heads[0].label, "choice_temperature");
        for key in ["mc", "multiple_choice"] {
            let text = synthetic("[sr]").replace(
                "    finetune: {epochs",
                &format!("    {key}: {{shots: 0}}\n    finetune: {{epochs"),
            );
            let e = error(&text);
            assert!(
                e.contains("`multiple_choice` settings apply to multiple-choice datasets"),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn seeds_devices_and_shards_are_checked() {
        let e = error(&synthetic("[sr]").replace("name: x\n", "name: x\nseeds: [1, 1]\n"));
        assert!(e.contains("seeds: 1 appears twice"), "{e}");
        let e = error(&synthetic("[sr]").replace("name: x\n", "name: x\ndevice: tpu\n"));
        assert!(e.contains("unknown device"), "{e}");
        let only_flex = Overrides {
            device: Some("wgpu".into()),
            backends: Some(vec!["flex"]),
            ..Overrides::default()
        };
        let e = Plan::from_str(&synthetic("[sr]"), "test.yaml", &only_flex).unwrap_err();
        assert!(chain(&e).contains("built without the `wgpu` backend"), "{}", chain(&e));
        let plan = resolve(&synthetic("[sr]").replace("name: x\n", "name: x\nseeds: [0, 1, 2, 3, 4]\n")).unwrap();
        let shards: Vec<usize> = (1..=2).map(|i| plan.shard(i, 2).len()).collect();
        assert_eq!(shards, [3, 2]);
    }

    /// What used to pass the dry run and fail only after fine-tuning is refused while planning.
    #[test]
    fn settings_that_cannot_run_fail_while_planning() {
        for (heads, want) in [
            (
                "[{temperature: {min_temperature: 5.0, max_temperature: 1.0}}]",
                "min_temperature < max_temperature",
            ),
            ("[{vector_scaling: {max_iterations: 0}}]", "max_iterations"),
            ("[{alien: {grid: {lr: [-1.0e-3]}}}]", "grid.lr holds -0.001"),
            ("[{adue: {batch_size: 0}}]", "batch_size must be at least 1"),
            (
                "[{choice_temperature: {objective: constant, constant_temperature: -1.0}}]",
                "constant_temperature",
            ),
            ("[{choice_temperature: {objective: nll, k: 0}}]", "k must be at least 1"),
        ] {
            let e = error(&synthetic(heads));
            assert!(e.contains(want), "{heads}: {e}");
        }
        let labelled = error(&synthetic("[{adue: {batch_size: 0}, as: small-batches}]"));
        assert!(labelled.contains("heads: small-batches"), "{labelled}");

        let e = error(&synthetic("[sr]").replace("heads: 2,", "heads: 3,"));
        assert!(e.contains("hidden_size 16 is not a multiple of heads 3"), "{e}");
        let e = error(&synthetic("[sr]").replace("max_length: 40}", "max_length: 0}"));
        assert!(e.contains("max_length must be at least 1"), "{e}");
        let e = error(&synthetic("[sr]").replace("max_length: 40}", "max_length: 41}"));
        assert!(e.contains("longer than the scratch model's max_positions 40"), "{e}");
        let long = "l".repeat(250);
        let e = error(&synthetic(&format!("[{{sr: {{}}, as: {long}}}]")));
        assert!(e.contains("250 bytes long") && e.len() < 400, "{e}");
    }

    /// A bring-your-own cache whose logits do not come from its classifier is refused while
    /// planning, not after the heads before it have been fitted.
    #[test]
    fn a_cache_with_foreign_logits_fails_while_planning() {
        use ueb_cache::{
            Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, SplitData,
        };
        let dir = tempfile::tempdir().unwrap();
        let split = |shift: f32| SplitData {
            features: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            // out = identity: the logits are the features, plus `shift`.
            logits: vec![1.0 + shift, 0.0, 0.0, 1.0, 1.0, 1.0],
            labels: vec![0, 1, 1],
            group: None,
            dim: 2,
            num_classes: 2,
        };
        let cache = |shift: f32| FeatureCache {
            meta: CacheMeta {
                format: "ueb-cache".into(),
                version: 1,
                task: RowUnit::Sequence,
                num_classes: 2,
                feature_dim: 2,
                classifier: ClassifierMeta {
                    kind: ClassifierKind::Linear,
                    activation: Activation::None,
                },
                label_names: vec!["a".into(), "b".into()],
                provenance: serde_json::Value::Null,
            },
            classifier: Classifier {
                kind: ClassifierKind::Linear,
                activation: Activation::None,
                dense_weight: None,
                dense_bias: None,
                out_weight: vec![1.0, 0.0, 0.0, 1.0],
                out_bias: None,
                dim: 2,
                num_classes: 2,
            },
            train: split(0.0),
            val: split(0.0),
            test: split(shift),
        };
        let good = dir.path().join("good");
        cache(0.0).write(&good).unwrap();
        let text = |c: &std::path::Path| format!("name: x\ncaches: [{}]\nheads: [sr]\n", c.display());
        resolve(&text(&good)).unwrap();
        let bad = dir.path().join("bad");
        cache(0.5).write(&bad).unwrap();
        let e = error(&text(&bad));
        assert!(e.contains("caches:") && e.contains("bad"), "{e}");
    }

    /// Experiment files built from the lines and values that matter to the parser and the plan
    /// (huge counts, bad sizes, anchors, tags, broken brackets): an error or a plan, never a
    /// panic or an allocation beyond the machine. `UEB_FUZZ_CASES` cases (256 by default).
    #[test]
    fn experiment_files_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let cases = std::env::var("UEB_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let line = prop_oneof![
            Just("name: x"),
            Just("name: ../../x"),
            Just("seeds: [0, 1]"),
            Just("seeds: [18446744073709551615]"),
            Just("seeds: [-1]"),
            Just("heads: [sr]"),
            Just("heads: [{alien: {grid: {lr: [1.0e30]}, max_epochs: 99999999999}}]"),
            Just("heads: [{temperature: {min_temperature: 0.0}}, {sr: {}, as: x}]"),
            Just("heads: [{choice_temperature: {reference: 'backbone:'}}]"),
            Just("backbones:"),
            Just("  - name: tiny"),
            Just("    model: scratch"),
            Just("    scratch: {hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}"),
            Just("    scratch: {hidden_size: 18446744073709551615, heads: 0}"),
            Just("    finetune: {epochs: 1, max_length: 0}"),
            Just("datasets:"),
            Just("  - {name: synthetic, synthetic: {train: 60, val: 30, test: 30}}"),
            Just("  - {name: synthetic, synthetic: {train: 18446744073709551615}}"),
            Just("  - {name: synthetic, synthetic: {num_classes: 100000000, max_len: 100000000}}"),
            Just("  - sst2"),
            Just("caches: [/nonexistent]"),
            Just("metrics: {bins: 0, bootstrap: 18446744073709551615}"),
            Just("metrics: {bins: 18446744073709551615}"),
            Just("device: cuda"),
            Just("a: &a [*a, *a]"),
            Just("b: &b [x, x]\nc: [*b, *b, *b]"),
            Just("!!binary AAAA"),
            Just("- ["),
            Just("}"),
            Just("\t"),
        ];
        let text = prop::collection::vec(line, 0..10).prop_map(|l| l.join("\n"));
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&text, |text| {
                let _ = resolve(&text);
                Ok(())
            })
            .unwrap();
        // Well-formed files with hostile values here and there (each field is valid in most
        // cases, so that the later checks are reached): they reach the plan's checks.
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let pick = |options: &'static [&'static str]| proptest::sample::select(options);
        let field = (
            pick(&["x", "x", "x", "x", "x", "x", "../x", "\"\""]),
            pick(&["[0]", "[0]", "[0]", "[0]", "[0, 0]", "[]", "[18446744073709551615]"]),
            pick(&[
                "{hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}",
                "{hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}",
                "{hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}",
                "{hidden_size: 16, heads: 0}",
                "{hidden_size: 18446744073709551615, heads: 1}",
                "{max_positions: 0}",
                "{dropout: 1.5}",
            ]),
            pick(&[
                "{epochs: 1, batch_size: 32, max_length: 40}",
                "{epochs: 1, batch_size: 32, max_length: 40}",
                "{epochs: 1, batch_size: 32, max_length: 40}",
                "{epochs: 0}",
                "{lr: -1.0}",
                "{max_length: 0}",
                "{batch_size: 0, mode: lora}",
            ]),
            pick(&[
                "{train: 60, val: 30, test: 30}",
                "{train: 18446744073709551615}",
                "{train: 60, val: 30, test: 30, max_len: 100000000}",
                "{num_classes: 1}",
                "{train: 0}",
            ]),
            pick(&[
                "[sr]",
                "[sr]",
                "[sr]",
                "[{temperature: {max_temperature: -1.0}}]",
                "[{alien: {grid: {lr: [0.0]}}}]",
                "[{adue: {grid: {epochs: [0]}}}]",
                "[{vector_scaling: {gradient_tolerance: .nan}}]",
                "[{mahalanobis: {features: dense}}]",
            ]),
            pick(&[
                "{bins: 15, bootstrap: 0}",
                "{bins: 15, bootstrap: 0}",
                "{bins: 15, bootstrap: 0}",
                "{bins: 0}",
                "{bootstrap: 18446744073709551615}",
            ]),
        );
        runner
            .run(&field, |(name, seeds, scratch, finetune, synthetic, heads, metrics)| {
                let text = format!(
                    "name: {name}\nseeds: {seeds}\nbackbones:\n  - name: tiny\n    model: scratch\n    scratch: {scratch}\n    finetune: {finetune}\ndatasets:\n  - {{name: synthetic, synthetic: {synthetic}}}\nheads: {heads}\nmetrics: {metrics}\n"
                );
                let _ = resolve(&text);
                Ok(())
            })
            .unwrap();
    }

    /// `--set` changes the file before validation, addresses list entries by name or label,
    /// is recorded in the plan, and names what it cannot apply.
    #[test]
    fn overrides_change_the_file_before_validation() {
        let with = |sets: &[&str]| {
            let o = Overrides {
                sets: sets.iter().map(|s| s.to_string()).collect(),
                ..Overrides::default()
            };
            Plan::from_str(&synthetic("[sr, alien, {alien: {}, as: other}]"), "test.yaml", &o)
        };
        let plan = with(&[
            "seeds=[3, 4]",
            "heads.alien.grid.lr=[1.0e-5, 4.0e-4]",
            "heads.other.max_epochs=7",
            "backbones.tiny.finetune.epochs=2",
            "metrics.bootstrap=0",
        ])
        .unwrap();
        assert_eq!(plan.seeds, [3, 4]);
        assert_eq!(plan.metrics.bootstrap, 0);
        let HeadSpec::Alien(cfg) = &plan.heads[1].spec else {
            panic!()
        };
        assert_eq!(cfg.grid.lr.as_deref(), Some(&[1.0e-5, 4.0e-4][..]));
        let HeadSpec::Alien(cfg) = &plan.heads[2].spec else {
            panic!()
        };
        assert_eq!(cfg.max_epochs, Some(7));
        assert_eq!(plan.overrides.len(), 5);
        assert!(serde_yaml_ng::to_string(&plan).unwrap().contains("overrides:"));
        assert!(
            !serde_yaml_ng::to_string(&with(&[]).unwrap())
                .unwrap()
                .contains("overrides")
        );
        for (set, want) in [
            (
                "heads.nope.x=1",
                "`heads.nope` names no entry of `heads` (entries: sr, alien, alien)",
            ),
            ("backbones.tiny=1", "is a whole entry"),
            ("name.first=1", "`name` is a value, not a mapping"),
            ("metrics.binz=3", "unknown field `binz`"),
            ("metrics.bins", "expected KEY=VALUE"),
            ("metrics..bins=3", "empty key"),
            ("seeds=[1, 1]", "seeds: 1 appears twice"),
        ] {
            let e = chain(&with(&[set]).unwrap_err());
            assert!(e.contains(want), "{set}: {e}");
        }
    }
}
