//! A small encoder trained from scratch: a word-level tokenizer built from the training texts
//! and a BERT configuration sized by the caller. Used where no pre-trained checkpoint is wanted
//! (the offline quickstart on the synthetic task).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokenizers::Tokenizer;

use crate::config::{EncoderConfig, Family, HiddenAct};
use crate::error::{BackboneError, Result};

/// The special tokens of a scratch tokenizer, with their ids.
pub const SPECIAL_TOKENS: [&str; 4] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"];

/// The size of a scratch encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScratchConfig {
    /// Hidden size d.
    pub hidden_size: usize,
    /// Number of layers.
    pub layers: usize,
    /// Attention heads (divides `hidden_size`).
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Position embeddings (the longest input).
    pub max_positions: usize,
    /// Most words kept in the vocabulary (the most frequent ones; others are `[UNK]`).
    pub max_vocab: usize,
    /// Dropout after embeddings and sub-layers, and in the head.
    pub dropout: f64,
}

impl Default for ScratchConfig {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            layers: 2,
            heads: 4,
            intermediate_size: 128,
            max_positions: 128,
            max_vocab: 8000,
            dropout: 0.1,
        }
    }
}

impl ScratchConfig {
    /// Checks that the sizes make an encoder: positive sizes, `heads` dividing `hidden_size`,
    /// room for text in `max_positions`, a dropout in [0, 1).
    ///
    /// # Errors
    /// The first size that does not, named.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BackboneError::Invalid(format!("scratch model: {m}")));
        if self.hidden_size == 0 || self.layers == 0 || self.heads == 0 || self.intermediate_size == 0 {
            return bad("hidden_size, layers, heads and intermediate_size must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of heads {}",
                self.hidden_size, self.heads
            ));
        }
        if self.max_positions < 3 {
            return bad(format!("max_positions {} leaves no room for text", self.max_positions));
        }
        if self.max_vocab == 0 {
            return bad("max_vocab must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// The encoder configuration for a vocabulary of `vocab_size` and the classes `labels`.
    ///
    /// # Errors
    /// Sizes that do not make an encoder (zero, heads not dividing the width).
    pub fn encoder_config(&self, vocab_size: usize, labels: Vec<String>) -> Result<EncoderConfig> {
        self.validate()?;
        if labels.is_empty() {
            return Err(BackboneError::Invalid("scratch model: no classes".into()));
        }
        Ok(EncoderConfig {
            family: Family::Bert,
            vocab_size,
            hidden_size: self.hidden_size,
            embedding_size: self.hidden_size,
            num_layers: self.layers,
            num_heads: self.heads,
            intermediate_size: self.intermediate_size,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout: self.dropout,
            attention_dropout: self.dropout,
            classifier_dropout: self.dropout,
            max_position_embeddings: self.max_positions,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            label_names: labels,
            initializer_range: 0.02,
        })
    }
}

/// A word-level `tokenizer.json` (lower-cased, split on whitespace, `[CLS] a [SEP] (b [SEP])`)
/// whose vocabulary is the special tokens, then the `max_vocab` most frequent words of `texts`
/// (ties in byte order, so the vocabulary is the same for the same texts).
pub fn word_level_tokenizer_json<'a>(texts: impl IntoIterator<Item = &'a str>, max_vocab: usize) -> serde_json::Value {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in texts {
        for w in t.split_whitespace() {
            *counts.entry(w.to_lowercase()).or_insert(0) += 1;
        }
    }
    let mut words: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(w, _)| !SPECIAL_TOKENS.contains(&w.as_str()))
        .collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert((*s).to_string(), json!(i));
    }
    for (w, _) in words.into_iter().take(max_vocab) {
        let id = vocab.len();
        vocab.insert(w, json!(id));
    }
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let special = |name: &str, type_id: u32| json!({"SpecialToken": {"id": name, "type_id": type_id}});
    let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
}

/// Parses a `tokenizer.json` value.
///
/// # Errors
/// A value the tokenizers crate rejects.
pub fn tokenizer_from_json(value: &serde_json::Value) -> Result<Tokenizer> {
    value
        .to_string()
        .parse::<Tokenizer>()
        .map_err(|e| BackboneError::Tokenizer {
            context: "scratch tokenizer".into(),
            message: e.to_string(),
        })
}
