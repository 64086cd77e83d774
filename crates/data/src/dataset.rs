//! Examples, splits (with fingerprints) and datasets.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The kind of prediction a dataset asks for. A cache's rows follow from it (`ueb_cache::RowUnit`):
/// token tasks give one row per token, the others one row per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One label per text (or text pair).
    Sequence,
    /// One tag per token (NER); an example is a sentence.
    Token,
    /// One of a few lettered options.
    MultipleChoice,
}

impl Task {
    /// The name used in JSON and YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Sequence => "sequence",
            Task::Token => "token",
            Task::MultipleChoice => "multiple_choice",
        }
    }
}

/// What the model reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One text.
    Text(String),
    /// A pair of texts (paraphrase, entailment).
    Pair(String, String),
    /// A question and its options; option `i` has the letter `A + i`, which is also its label.
    Choice {
        /// The question (ARC's `stem`).
        question: String,
        /// The option texts in order.
        options: Vec<String>,
        /// MMLU's subject, if any.
        subject: Option<String>,
    },
    /// Pre-tokenised words (NER).
    Tokens(Vec<String>),
}

impl Input {
    /// Length in whitespace-separated tokens (Unicode whitespace): the text; both texts of a
    /// pair; the question plus every option; or the number of words.
    pub fn length(&self) -> usize {
        fn words(s: &str) -> usize {
            s.split_whitespace().count()
        }
        match self {
            Input::Text(text) => words(text),
            Input::Pair(a, b) => words(a) + words(b),
            Input::Choice { question, options, .. } => {
                words(question) + options.iter().map(|o| words(o)).sum::<usize>()
            }
            Input::Tokens(tokens) => tokens.len(),
        }
    }
}

/// The gold answer, as indices into the dataset's label names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// One class (sequence and multiple-choice tasks).
    Class(usize),
    /// One tag per token (token tasks).
    Tags(Vec<usize>),
}

/// One example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Stable id: the dataset's own id where it has one, otherwise
    /// `"{dataset}:{file split}:{row}"` with the 0-based data row of the original file.
    pub id: String,
    /// What the model reads.
    pub input: Input,
    /// The gold answer.
    pub label: Label,
}

/// One split of a dataset, with its fingerprint.
#[derive(Clone, Debug)]
pub struct Split {
    name: String,
    origin: String,
    examples: Vec<Example>,
    fingerprint: String,
    oracle: Option<Oracle>,
}

impl Split {
    /// The split's name: `train`, `val`, `test`, or an extra pool such as MMLU's `fewshot`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the examples come from, in words (file, and the protocol step).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The examples, in the order of the original file.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Number of examples (sentences for token tasks).
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether the split has no examples (a loaded dataset never has such a split).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The split's fingerprint (see [`fingerprint`]), for results to record.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The Bayes-optimal posterior, for generated data.
    pub fn oracle(&self) -> Option<&Oracle> {
        self.oracle.as_ref()
    }
}

/// A dataset: label names, and its splits in the protocol's order.
#[derive(Clone, Debug)]
pub struct Dataset {
    name: String,
    task: Task,
    label_names: Vec<String>,
    splits: Vec<Split>,
    notes: Vec<String>,
}

/// A split under construction, before [`Dataset::new`] checks it and fingerprints it.
#[derive(Clone, Debug)]
pub struct SplitParts {
    /// `train`, `val`, `test` or an extra pool.
    pub name: String,
    /// Where the examples come from.
    pub origin: String,
    /// The examples.
    pub examples: Vec<Example>,
    /// The Bayes posterior, for generated data.
    pub oracle: Option<Oracle>,
}

impl SplitParts {
    /// A split without an oracle.
    pub fn new(name: &str, origin: impl Into<String>, examples: Vec<Example>) -> Self {
        Self {
            name: name.to_owned(),
            origin: origin.into(),
            examples,
            oracle: None,
        }
    }
}

impl Dataset {
    /// Builds a dataset and fingerprints its splits.
    ///
    /// Errors when a split is empty, an id occurs twice, a label index is out of range, or a
    /// token example has as many tags as words.
    pub fn new(
        name: &str,
        task: Task,
        label_names: Vec<String>,
        splits: Vec<SplitParts>,
        notes: Vec<String>,
    ) -> Result<Self> {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for part in &splits {
            if part.examples.is_empty() {
                return Err(DataError::EmptySplit {
                    dataset: name.to_owned(),
                    split: part.name.clone(),
                    origin: part.origin.clone(),
                });
            }
            for example in &part.examples {
                if let Some(first) = seen.insert(&example.id, &part.origin) {
                    return Err(DataError::DuplicateId {
                        dataset: name.to_owned(),
                        id: example.id.clone(),
                        first: first.to_owned(),
                        second: part.origin.clone(),
                    });
                }
                check_label(name, &label_names, example)?;
            }
        }
        let splits = splits
            .into_iter()
            .map(|part| Split {
                fingerprint: fingerprint(&part.examples, &label_names),
                name: part.name,
                origin: part.origin,
                examples: part.examples,
                oracle: part.oracle,
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            task,
            label_names,
            splits,
            notes,
        })
    }

    /// The registry name (or the mapping's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Label names in index order, as the dataset names them (`"0"`, `"A"`, `"B-PER"`, …).
    pub fn label_names(&self) -> &[String] {
        &self.label_names
    }

    /// Number of classes (tags for token tasks, option letters for multiple choice).
    pub fn num_classes(&self) -> usize {
        self.label_names.len()
    }

    /// Every split, in the order train, val, test, then any extra pool.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// One split by name.
    pub fn split(&self, name: &str) -> Result<&Split> {
        self.splits
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DataError::MissingSplit {
                dataset: self.name.clone(),
                split: name.to_owned(),
                reason: {
                    let names: Vec<&str> = self.splits.iter().map(|s| s.name.as_str()).collect();
                    let mut reason = format!("it has {}", names.join(", "));
                    for note in &self.notes {
                        reason.push_str("; ");
                        reason.push_str(note);
                    }
                    reason
                },
            })
    }

    /// Remarks on how this copy departs from the protocol (a fallback file, a missing split).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

fn check_label(dataset: &str, names: &[String], example: &Example) -> Result<()> {
    let bad = |index: usize| DataError::InvalidOption {
        option: format!("label of `{}`", example.id),
        reason: format!(
            "index {index} is out of range for the {} labels of `{dataset}`",
            names.len()
        ),
    };
    match &example.label {
        Label::Class(index) if *index >= names.len() => Err(bad(*index)),
        Label::Tags(tags) => {
            if let Some(index) = tags.iter().find(|&&t| t >= names.len()) {
                return Err(bad(*index));
            }
            match &example.input {
                Input::Tokens(tokens) if tokens.len() != tags.len() => Err(DataError::InvalidOption {
                    option: format!("tags of `{}`", example.id),
                    reason: format!("{} tags for {} words", tags.len(), tokens.len()),
                }),
                _ => Ok(()),
            }
        }
        Label::Class(_) => Ok(()),
    }
}

/// The fingerprint of a list of examples: the lowercase hex SHA-256 of, for each example in
/// order, `id ‖ 0x1F ‖ label ‖ 0x1E`, where `label` is the label's name, or for token tasks the
/// tag names joined by single spaces (all UTF-8).
///
/// It changes when an example is added, removed, reordered, relabelled or renamed, and not
/// when only the text changes.
pub fn fingerprint(examples: &[Example], label_names: &[String]) -> String {
    let name = |i: usize| label_names.get(i).map_or("?", String::as_str);
    let mut hasher = Sha256::new();
    for example in examples {
        hasher.update(example.id.as_bytes());
        hasher.update([0x1F]);
        match &example.label {
            Label::Class(i) => hasher.update(name(*i).as_bytes()),
            Label::Tags(tags) => {
                for (k, t) in tags.iter().enumerate() {
                    if k > 0 {
                        hasher.update(b" ");
                    }
                    hasher.update(name(*t).as_bytes());
                }
            }
        }
        hasher.update([0x1E]);
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Label names with a reverse index.
#[derive(Clone, Debug)]
pub(crate) struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl LabelSet {
    pub(crate) fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<String> = names.iter().map(|s| s.as_ref().to_owned()).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Self { names, index }
    }

    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The index of `name`, or a message that lists the known labels.
    pub(crate) fn lookup(&self, name: &str) -> std::result::Result<usize, String> {
        self.get(name)
            .ok_or_else(|| format!("unknown label `{name}` (expected one of: {})", self.names.join(", ")))
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// The Bayes-optimal answer for each example of a generated split.
#[derive(Clone, Debug, PartialEq)]
pub struct Oracle {
    /// `P(observed label | x)` per example: `(1 − ρ) · clean + ρ / C`.
    pub posterior: Vec<Vec<f64>>,
    /// `P(latent class | x)` per example.
    pub clean_posterior: Vec<Vec<f64>>,
    /// The latent class before label noise.
    pub clean_labels: Vec<usize>,
    /// The document's mixing level `λ`.
    pub mixing: Vec<f64>,
}

impl Oracle {
    /// Accuracy of the Bayes classifier (argmax of [`Oracle::posterior`], first maximum on
    /// ties) against the observed labels.
    pub fn bayes_accuracy(&self, examples: &[Example]) -> f64 {
        let correct = self
            .posterior
            .iter()
            .zip(examples)
            .filter(|(p, e)| e.label == Label::Class(argmax(p)))
            .count();
        correct as f64 / examples.len().max(1) as f64
    }
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}
