//! `meta.json`: the format's name and version, the task, the classifier's architecture, and
//! the names of the splits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
pub use ueb_kernels::Activation;

/// The `format` value of `meta.json`.
pub const CACHE_FORMAT: &str = "ueb-cache";
/// The `version` value of `meta.json` this crate reads and writes.
pub const CACHE_VERSION: u32 = 1;

/// A split of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The split the backbone was fine-tuned on.
    Train,
    /// The held-out validation split (20% of train in 2505.15443).
    Val,
    /// The test split.
    Test,
}

impl Split {
    /// All splits, in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "val" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split `{other}` (expected train, val or test)")),
        }
    }
}

/// What one row of a cache is, stored as `meta.json`'s `task` (decision H13).
///
/// This is the cache's row layout, not the dataset's task (`ueb_data::Task`): a multiple-choice
/// dataset is cached one row per question, so its cache is `sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowUnit {
    /// One row per example (text, pair or question).
    Sequence,
    /// One row per token; rows carry a `group` (sentence index).
    Token,
}

/// Architecture of the task classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifierKind {
    /// `out_proj(act(dense(h)))`: the RoBERTa/ELECTRA (and BERT pooler) head.
    Mlp,
    /// `out_proj(h)`: a linear probe or a decoder's `score` head.
    Linear,
}

/// `classifier` in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierMeta {
    /// `mlp` or `linear`.
    pub kind: ClassifierKind,
    /// `tanh`, `gelu` or `none`.
    pub activation: Activation,
}

/// `meta.json`, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheMeta {
    /// Always `ueb-cache`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// `sequence` or `token`: what one row is.
    pub task: RowUnit,
    /// Number of classes C.
    pub num_classes: usize,
    /// Feature dimension d (the classifier's input).
    pub feature_dim: usize,
    /// The classifier's architecture.
    pub classifier: ClassifierMeta,
    /// One name per class, in index order.
    pub label_names: Vec<String>,
    /// Free-form provenance: model, revision, dataset fingerprints, seed, exporter.
    #[serde(default)]
    pub provenance: serde_json::Value,
}
