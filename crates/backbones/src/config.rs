//! `config.json` of a Hugging Face BERT-family checkpoint: the raw file as written by
//! transformers, then a validated [`EncoderConfig`] the model is built from.
//!
//! The raw form keeps only the keys we read; transformers writes many more (`architectures`,
//! `transformers_version`, …), which are ignored on purpose: a config saved by a newer
//! transformers must still load.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{BackboneError, Result};

/// The encoder family: decides the position ids, the token types, the embedding projection and
/// the classification head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT and MiniLM: positions from 0, pooler (dense → tanh) before the classifier.
    Bert,
    /// RoBERTa (and XLM-R, CamemBERT): positions offset by `padding_idx + 1`, padding positions
    /// at `padding_idx`; head dropout → dense → tanh → dropout → out_proj.
    Roberta,
    /// ELECTRA: an embedding projection when `embedding_size ≠ hidden_size`; head as RoBERTa's
    /// with GELU.
    Electra,
}

impl Family {
    /// The prefix transformers puts before the backbone's keys in task checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::Electra => "electra",
        }
    }
}

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

/// `config.json` as written, with the keys we use.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    /// `bert`, `roberta`, `xlm-roberta`, `camembert`, `electra`.
    pub model_type: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size d.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout after the embeddings and every sub-layer.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Dropout of the classification head; `hidden_dropout_prob` when null or absent.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Number of position embeddings.
    pub max_position_embeddings: usize,
    /// Number of token types.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa's `padding_idx`).
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// ELECTRA's embedding width (projected to `hidden_size` when different).
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Class names by index (as strings, the JSON object's keys).
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels when `id2label` is absent.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// Standard deviation of the initialisation of a head absent from the checkpoint.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// `float32`, `float16`, `bfloat16` (informational: tensors carry their own dtype).
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}

/// A validated encoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// The family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size d.
    pub hidden_size: usize,
    /// Embedding width (`hidden_size` unless ELECTRA says otherwise).
    pub embedding_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Number of attention heads (divides `hidden_size`).
    pub num_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
    /// Dropout after embeddings and sub-layers.
    pub hidden_dropout: f64,
    /// Attention-probability dropout.
    pub attention_dropout: f64,
    /// Classification-head dropout.
    pub classifier_dropout: f64,
    /// Number of position embeddings.
    pub max_position_embeddings: usize,
    /// Number of token types.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id.
    pub pad_token_id: i64,
    /// Class names, in index order (C = their number).
    pub label_names: Vec<String>,
    /// Initialisation std for a head absent from the checkpoint.
    pub initializer_range: f64,
}

impl EncoderConfig {
    /// Reads and validates `config.json`.
    ///
    /// # Errors
    /// A JSON error with line and column, or a message naming the unsupported key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BackboneError::io(path, e))?;
        let raw: RawConfig = serde_json::from_str(&text).map_err(|source| BackboneError::ConfigJson {
            path: path.to_path_buf(),
            source,
        })?;
        Self::resolve(raw, path)
    }

    /// Validates a raw config (`path` only names the file in errors).
    ///
    /// # Errors
    /// A message naming the unsupported or inconsistent key.
    pub fn resolve(raw: RawConfig, path: &Path) -> Result<Self> {
        let err = |m: String| BackboneError::config(path, m);
        let model_type = raw.model_type.as_deref().unwrap_or("bert");
        let family = match model_type {
            "bert" => Family::Bert,
            "roberta" | "xlm-roberta" | "camembert" => Family::Roberta,
            "electra" => Family::Electra,
            other => {
                return Err(err(format!(
                    "model_type {other:?} is not a BERT-family encoder (supported: bert, roberta, xlm-roberta, camembert, electra)"
                )));
            }
        };
        if let Some(p) = raw.position_embedding_type.as_deref()
            && p != "absolute"
        {
            return Err(err(format!(
                "position_embedding_type {p:?} is not supported (only \"absolute\")"
            )));
        }
        let hidden_act = match raw.hidden_act.as_str() {
            "gelu" => HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => HiddenAct::GeluTanh,
            "relu" => HiddenAct::Relu,
            other => {
                return Err(err(format!(
                    "hidden_act {other:?} is not supported (gelu, gelu_new, relu)"
                )));
            }
        };
        for (key, v) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("max_position_embeddings", raw.max_position_embeddings),
            ("type_vocab_size", raw.type_vocab_size),
        ] {
            if v == 0 {
                return Err(err(format!("{key} must be positive")));
            }
        }
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        for (key, p) in [
            ("hidden_dropout_prob", raw.hidden_dropout_prob),
            ("attention_probs_dropout_prob", raw.attention_probs_dropout_prob),
            ("classifier_dropout", raw.classifier_dropout.unwrap_or(0.0)),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(err(format!("{key} = {p} is not in [0, 1)")));
            }
        }
        if !(raw.layer_norm_eps.is_finite() && raw.layer_norm_eps > 0.0) {
            return Err(err(format!("layer_norm_eps = {} must be positive", raw.layer_norm_eps)));
        }
        let embedding_size = match (family, raw.embedding_size) {
            (Family::Electra, Some(e)) if e > 0 => e,
            (Family::Electra, Some(_)) => return Err(err("embedding_size must be positive".into())),
            _ => raw.hidden_size,
        };
        let default_pad = if family == Family::Roberta { 1 } else { 0 };
        let pad_token_id = raw.pad_token_id.unwrap_or(default_pad);
        if pad_token_id < 0 || pad_token_id as usize >= raw.vocab_size {
            return Err(err(format!(
                "pad_token_id {pad_token_id} is outside the vocabulary (size {})",
                raw.vocab_size
            )));
        }
        if family == Family::Roberta && raw.max_position_embeddings <= pad_token_id as usize + 1 {
            return Err(err(format!(
                "max_position_embeddings {} leaves no positions after the RoBERTa offset pad_token_id + 1 = {}",
                raw.max_position_embeddings,
                pad_token_id + 1
            )));
        }
        let label_names = label_names_of(raw.id2label.as_ref(), raw.num_labels).map_err(err)?;
        Ok(Self {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            embedding_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act,
            hidden_dropout: raw.hidden_dropout_prob,
            attention_dropout: raw.attention_probs_dropout_prob,
            classifier_dropout: raw.classifier_dropout.unwrap_or(raw.hidden_dropout_prob),
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            pad_token_id,
            label_names,
            initializer_range: raw.initializer_range,
        })
    }

    /// Number of classes C of the sequence-classification head.
    pub fn num_labels(&self) -> usize {
        self.label_names.len()
    }

    /// The longest sequence the position embeddings allow (RoBERTa loses `pad + 1` positions).
    pub fn max_sequence_length(&self) -> usize {
        match self.family {
            Family::Roberta => self.max_position_embeddings - (self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }

    /// The same model with `names` as its classes (a new head for a dataset).
    pub fn with_labels(mut self, names: Vec<String>) -> Self {
        self.label_names = names;
        self
    }
}

/// Class names from `id2label` (keys `"0".."C-1"`, all present) or `num_labels`; transformers
/// defaults to two classes `LABEL_0`, `LABEL_1`. Shared by encoder and decoder configs.
pub(crate) fn label_names_of(
    id2label: Option<&BTreeMap<String, String>>,
    num_labels: Option<usize>,
) -> std::result::Result<Vec<String>, String> {
    if let Some(map) = id2label {
        let mut names = vec![None; map.len()];
        for (k, v) in map {
            let i: usize = k
                .parse()
                .map_err(|_| format!("id2label key {k:?} is not a class index"))?;
            let slot = names
                .get_mut(i)
                .ok_or_else(|| format!("id2label key {i} is out of range for {} labels", map.len()))?;
            *slot = Some(v.clone());
        }
        if let Some(n) = num_labels
            && n != map.len()
        {
            return Err(format!(
                "num_labels {n} disagrees with id2label ({} entries)",
                map.len()
            ));
        }
        return names
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.ok_or_else(|| format!("id2label has no entry for class {i}")))
            .collect();
    }
    let n = num_labels.unwrap_or(2);
    if n == 0 {
        return Err("num_labels must be positive".into());
    }
    Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
}
