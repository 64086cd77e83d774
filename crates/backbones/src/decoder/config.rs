//! `config.json` of a Hugging Face LLaMA / Qwen2 / Qwen3 checkpoint, validated into a
//! [`DecoderConfig`].
//!
//! Keys transformers writes that we do not read (`architectures`, `transformers_version`,
//! generation settings, …) are ignored so that configs from newer versions still load; keys
//! that would change the numbers and that we do not implement (RoPE scaling, sliding windows,
//! MLP biases other than zero) are errors naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{BackboneError, Result};

/// The decoder family: decides the attention biases and the QK-norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderFamily {
    /// LLaMA / LLaMA-2: no attention biases (unless `attention_bias`), no QK-norm.
    Llama,
    /// Qwen2 / Qwen2.5: biases on q/k/v (not on o), no QK-norm.
    Qwen2,
    /// Qwen3: RMSNorm over each head of q and k before RoPE, biases only with `attention_bias`.
    Qwen3,
}

impl DecoderFamily {
    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            DecoderFamily::Llama => "llama",
            DecoderFamily::Qwen2 => "qwen2",
            DecoderFamily::Qwen3 => "qwen3",
        }
    }
}

/// RoPE settings as transformers 5 nests them (`rope_parameters`); older configs put
/// `rope_theta` and `rope_scaling` at the top level.
#[derive(Debug, Clone, Deserialize)]
struct RawRope {
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_type: Option<String>,
    #[serde(default, rename = "type")]
    legacy_type: Option<String>,
}

/// A token id field that may be a number, a list (several EOS ids) or null.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    fn first(&self) -> Option<i64> {
        match self {
            TokenIds::One(i) => Some(*i),
            TokenIds::Many(v) => v.first().copied(),
        }
    }
}

/// `config.json` as written, with the keys we use.
#[derive(Debug, Clone, Deserialize)]
struct RawDecoderConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<RawRope>,
    #[serde(default)]
    rope_parameters: Option<RawRope>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    attention_dropout: Option<f64>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pad_token_id: Option<TokenIds>,
    #[serde(default)]
    eos_token_id: Option<TokenIds>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
}

fn default_act() -> String {
    "silu".into()
}
fn default_max_pos() -> usize {
    2048
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_init_range() -> f64 {
    0.02
}

/// A validated decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The family.
    pub family: DecoderFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size d.
    pub hidden_size: usize,
    /// Feed-forward width of the SwiGLU block.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Number of query heads H.
    pub num_heads: usize,
    /// Number of key/value heads (divides H; fewer than H is grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head (`hidden_size / H` unless the config says otherwise, as Qwen3 may).
    pub head_dim: usize,
    /// Number of positions RoPE was trained for (the default truncation bound).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// Biases on q/k/v (Qwen2 always; others when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (`attention_bias` on LLaMA/Qwen3).
    pub o_bias: bool,
    /// Qwen3's RMSNorm on every query and key head.
    pub qk_norm: bool,
    /// Whether `lm_head` shares `embed_tokens`' weight.
    pub tie_word_embeddings: bool,
    /// Attention-probability dropout (0 for every released checkpoint).
    pub attention_dropout: f64,
    /// The id batches are padded with: `pad_token_id`, else the first `eos_token_id`, else 0.
    /// Padding never reaches a real token (causal mask and key mask), so any id in the
    /// vocabulary gives the same outputs.
    pub pad_token_id: u32,
    /// Class names of the sequence-classification head, in index order.
    pub label_names: Vec<String>,
    /// Initialisation std for a head absent from the checkpoint.
    pub initializer_range: f64,
}

impl DecoderConfig {
    /// Reads and validates `config.json`.
    ///
    /// # Errors
    /// A JSON error with line and column, or a message naming the unsupported key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BackboneError::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses and validates the text of a `config.json` (`path` only names it in errors).
    ///
    /// # Errors
    /// As [`DecoderConfig::from_file`].
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let raw: RawDecoderConfig = serde_json::from_str(text).map_err(|source| BackboneError::ConfigJson {
            path: path.to_path_buf(),
            source,
        })?;
        resolve(raw, path)
    }

    /// Number of classes C of the sequence-classification head.
    pub fn num_labels(&self) -> usize {
        self.label_names.len()
    }

    /// The same model with `names` as its classes (a new `score` for a dataset).
    pub fn with_labels(mut self, names: Vec<String>) -> Self {
        self.label_names = names;
        self
    }
}

/// Whether `config.json` at `path` describes a decoder (`model_type` llama, qwen2 or qwen3).
///
/// # Errors
/// An unreadable file or invalid JSON.
pub fn is_decoder_config(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| BackboneError::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| BackboneError::ConfigJson {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(matches!(
        v.get("model_type").and_then(|m| m.as_str()),
        Some("llama" | "qwen2" | "qwen3")
    ))
}

fn resolve(raw: RawDecoderConfig, path: &Path) -> Result<DecoderConfig> {
    let err = |m: String| BackboneError::config(path, m);
    let family = match raw.model_type.as_deref() {
        Some("llama") => DecoderFamily::Llama,
        Some("qwen2") => DecoderFamily::Qwen2,
        Some("qwen3") => DecoderFamily::Qwen3,
        other => {
            return Err(err(format!(
                "model_type {other:?} is not a supported decoder (llama, qwen2, qwen3)"
            )));
        }
    };
    if raw.hidden_act != "silu" {
        return Err(err(format!(
            "hidden_act {:?} is not supported (decoders use silu)",
            raw.hidden_act
        )));
    }
    for (key, v) in [
        ("vocab_size", raw.vocab_size),
        ("hidden_size", raw.hidden_size),
        ("intermediate_size", raw.intermediate_size),
        ("num_hidden_layers", raw.num_hidden_layers),
        ("num_attention_heads", raw.num_attention_heads),
        ("max_position_embeddings", raw.max_position_embeddings),
    ] {
        if v == 0 {
            return Err(err(format!("{key} must be positive")));
        }
    }
    let heads = raw.num_attention_heads;
    let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(err(format!(
            "num_key_value_heads {kv_heads} must divide num_attention_heads {heads}"
        )));
    }
    let head_dim = match raw.head_dim {
        Some(h) => h,
        None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
        None => {
            return Err(err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {heads} and head_dim is absent",
                raw.hidden_size
            )));
        }
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(err(format!(
            "head_dim {head_dim} must be even and positive (RoPE rotates pairs)"
        )));
    }
    // RoPE: θ from `rope_parameters` (transformers 5) or the top level; only the default
    // (unscaled) rotation is implemented.
    let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
    if let Some(r) = rope {
        let kind = r.rope_type.as_deref().or(r.legacy_type.as_deref()).unwrap_or("default");
        if kind != "default" {
            return Err(err(format!(
                "RoPE type {kind:?} (rope_parameters / rope_scaling) is not supported (only \"default\")"
            )));
        }
    }
    let rope_theta = raw
        .rope_parameters
        .as_ref()
        .and_then(|r| r.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(10_000.0);
    if !(rope_theta.is_finite() && rope_theta > 1.0) {
        return Err(err(format!("rope_theta = {rope_theta} must be greater than 1")));
    }
    if !(raw.rms_norm_eps.is_finite() && raw.rms_norm_eps > 0.0) {
        return Err(err(format!("rms_norm_eps = {} must be positive", raw.rms_norm_eps)));
    }
    if raw.mlp_bias == Some(true) {
        return Err(err("mlp_bias = true is not supported".into()));
    }
    if raw.use_sliding_window == Some(true) {
        return Err(err(
            "use_sliding_window = true is not supported (every released Qwen2.5/Qwen3 config has it off)".into(),
        ));
    }
    let attention_dropout = raw.attention_dropout.unwrap_or(0.0);
    if !(0.0..1.0).contains(&attention_dropout) {
        return Err(err(format!("attention_dropout = {attention_dropout} is not in [0, 1)")));
    }
    let attention_bias = raw.attention_bias.unwrap_or(false);
    let (qkv_bias, o_bias) = match family {
        DecoderFamily::Qwen2 => (true, false),
        DecoderFamily::Llama | DecoderFamily::Qwen3 => (attention_bias, attention_bias),
    };
    let pad = raw
        .pad_token_id
        .as_ref()
        .and_then(TokenIds::first)
        .or_else(|| raw.eos_token_id.as_ref().and_then(TokenIds::first))
        .unwrap_or(0);
    if pad < 0 || pad as usize >= raw.vocab_size {
        return Err(err(format!(
            "pad_token_id {pad} is outside the vocabulary (size {})",
            raw.vocab_size
        )));
    }
    let label_names = crate::config::label_names_of(raw.id2label.as_ref(), raw.num_labels).map_err(err)?;
    Ok(DecoderConfig {
        family,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_layers: raw.num_hidden_layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        max_position_embeddings: raw.max_position_embeddings,
        rms_norm_eps: raw.rms_norm_eps,
        rope_theta,
        qkv_bias,
        o_bias,
        qk_norm: family == DecoderFamily::Qwen3,
        // LlamaConfig, Qwen2Config and Qwen3Config all default to untied embeddings.
        tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
        attention_dropout,
        pad_token_id: pad as u32,
        label_names,
        initializer_range: raw.initializer_range,
    })
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
        "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "rope_theta": 500.0, "tie_word_embeddings": false}"#;

    #[test]
    fn reads_families_and_rope() {
        let c = DecoderConfig::from_json(BASE, Path::new("c.json")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.family, DecoderFamily::Qwen2);
        assert!(c.qkv_bias && !c.o_bias && !c.qk_norm);
        assert_eq!((c.head_dim, c.num_kv_heads, c.rope_theta), (4, 1, 500.0));
        assert_eq!(c.label_names, vec!["LABEL_0", "LABEL_1"]);
        let nested = BASE.replace(
            r#""rope_theta": 500.0"#,
            r#""rope_parameters": {"rope_theta": 1000.0, "rope_type": "default"}"#,
        );
        let c = DecoderConfig::from_json(&nested, Path::new("c.json")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rope_theta, 1000.0);
    }

    #[test]
    fn unsupported_keys_are_named() {
        for (from, to, word) in [
            (r#""qwen2""#, r#""gpt2""#, "gpt2"),
            (
                r#""num_key_value_heads": 1"#,
                r#""num_key_value_heads": 3"#,
                "num_key_value_heads",
            ),
            (
                r#""rope_theta": 500.0"#,
                r#""rope_scaling": {"rope_type": "llama3"}"#,
                "llama3",
            ),
        ] {
            let e = DecoderConfig::from_json(&BASE.replace(from, to), Path::new("c.json"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(word), "{e}");
        }
    }
}
