//! Split statistics, as `ueb data stats` prints them.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::dataset::{Dataset, Label, Split, Task};

/// Statistics of a dataset: `{"name", "task", "splits": {"train": …, "val": …, "test": …},
/// "notes"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetStats {
    /// Dataset name.
    pub name: String,
    /// Task kind.
    pub task: Task,
    /// Per split, in the dataset's order.
    pub splits: SplitMap,
    /// How this copy departs from the protocol (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Splits by name, serialised as a JSON object in order.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitMap(pub Vec<(String, SplitStats)>);

impl Serialize for SplitMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, stats) in &self.0 {
            map.serialize_entry(name, stats)?;
        }
        map.end()
    }
}

/// Statistics of one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitStats {
    /// Examples (sentences for token tasks).
    pub rows: usize,
    /// Count per label name, in label order, zeros included; token tasks count tags over
    /// tokens.
    pub labels: LabelCounts,
    /// Length in whitespace tokens.
    pub length: LengthStats,
    /// The split's fingerprint.
    pub fingerprint: String,
    /// Where the examples come from.
    pub source: String,
    /// For generated data: how well the Bayes classifier does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oracle: Option<OracleStats>,
}

/// Label counts, serialised as a JSON object in label order.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelCounts(pub Vec<(String, u64)>);

impl Serialize for LabelCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, count) in &self.0 {
            map.serialize_entry(name, count)?;
        }
        map.end()
    }
}

/// Nearest-rank percentiles of example lengths: the `p`-th percentile of `n` sorted lengths
/// is the one at 1-based rank `max(1, ceil(p · n / 100))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LengthStats {
    /// Median.
    pub p50: usize,
    /// 95th percentile.
    pub p95: usize,
}

/// Bayes-classifier summary of a generated split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OracleStats {
    /// Accuracy of the argmax of the exact posterior against the observed labels.
    pub bayes_accuracy: f64,
    /// Mean of the largest posterior probability (equal to the accuracy in expectation).
    pub mean_max_prob: f64,
}

/// The nearest-rank `p`-th percentile (`0 < p ≤ 100`) of sorted values; 0 when empty.
pub fn nearest_rank(sorted: &[usize], p: usize) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Statistics of one split of `dataset`.
pub fn split_stats(dataset: &Dataset, split: &Split) -> SplitStats {
    let names = dataset.label_names();
    let mut counts = vec![0u64; names.len()];
    let mut lengths = Vec::with_capacity(split.len());
    for example in split.examples() {
        match &example.label {
            Label::Class(k) => counts[*k] += 1,
            Label::Tags(tags) => tags.iter().for_each(|t| counts[*t] += 1),
        }
        lengths.push(example.input.length());
    }
    lengths.sort_unstable();
    let oracle = split.oracle().map(|o| OracleStats {
        bayes_accuracy: o.bayes_accuracy(split.examples()),
        mean_max_prob: o
            .posterior
            .iter()
            .map(|p| p.iter().copied().fold(0.0, f64::max))
            .sum::<f64>()
            / split.len().max(1) as f64,
    });
    SplitStats {
        rows: split.len(),
        labels: LabelCounts(names.iter().cloned().zip(counts).collect()),
        length: LengthStats {
            p50: nearest_rank(&lengths, 50),
            p95: nearest_rank(&lengths, 95),
        },
        fingerprint: split.fingerprint().to_owned(),
        source: split.origin().to_owned(),
        oracle,
    }
}

/// Statistics of every split of `dataset`.
pub fn stats(dataset: &Dataset) -> DatasetStats {
    DatasetStats {
        name: dataset.name().to_owned(),
        task: dataset.task(),
        splits: SplitMap(
            dataset
                .splits()
                .iter()
                .map(|s| (s.name().to_owned(), split_stats(dataset, s)))
                .collect(),
        ),
        notes: dataset.notes().to_vec(),
    }
}
