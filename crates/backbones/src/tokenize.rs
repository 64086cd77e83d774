//! Tokenization with the `tokenizers` crate from `tokenizer.json`, and batching: sequences are
//! sorted by length so that a batch pads as little as possible, then right-padded.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use tokenizers::{EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::{EncoderConfig, Family};
use crate::decoder::DecoderConfig;
use crate::encoder::EncoderInput;
use crate::error::{BackboneError, Result};

/// What the model reads for one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextInput<'a> {
    /// One text.
    Single(&'a str),
    /// A text pair (sentence-pair tasks), encoded as `[CLS] a [SEP] b [SEP]` or the family's
    /// equivalent.
    Pair(&'a str, &'a str),
}

/// One tokenized example, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type (segment) ids.
    pub type_ids: Vec<u32>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens (never the case with special tokens).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How a model numbers positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// 0, 1, … for every token (BERT, ELECTRA, decoders).
    FromZero,
    /// RoBERTa: `pad + 1`, `pad + 2`, … for real tokens, `pad` for padding.
    AfterPad,
}

/// What a tokenizer needs to know about the model it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerTarget {
    /// The longest sequence the model takes.
    pub max_sequence_length: usize,
    /// The model's vocabulary size (the tokenizer's must not exceed it).
    pub vocab_size: usize,
    /// The id batches are padded with.
    pub pad_id: u32,
    /// Position numbering.
    pub positions: Positions,
    /// Token types the model has (1 for decoders).
    pub type_vocab_size: usize,
}

impl From<&EncoderConfig> for TokenizerTarget {
    fn from(c: &EncoderConfig) -> Self {
        Self {
            max_sequence_length: c.max_sequence_length(),
            vocab_size: c.vocab_size,
            pad_id: c.pad_token_id as u32,
            positions: match c.family {
                Family::Roberta => Positions::AfterPad,
                Family::Bert | Family::Electra => Positions::FromZero,
            },
            type_vocab_size: c.type_vocab_size,
        }
    }
}

impl From<&DecoderConfig> for TokenizerTarget {
    fn from(c: &DecoderConfig) -> Self {
        Self {
            max_sequence_length: c.max_position_embeddings,
            vocab_size: c.vocab_size,
            pad_id: c.pad_token_id,
            positions: Positions::FromZero,
            type_vocab_size: 1,
        }
    }
}

/// A tokenizer bound to a model: truncation to `max_length` (longest-first for pairs), no
/// padding (batches pad themselves).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: u32,
    positions: Positions,
    type_vocab_size: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` for a model with `config`; `max_length` defaults to the smaller
    /// of 512 and what the position embeddings allow.
    ///
    /// # Errors
    /// An unreadable `tokenizer.json`, or a `max_length` the model cannot take.
    pub fn from_file(path: &Path, config: impl Into<TokenizerTarget>, max_length: Option<usize>) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| BackboneError::Tokenizer {
            context: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_tokenizer(inner, &path.display().to_string(), config, max_length)
    }

    /// Binds an already built tokenizer (`context` names it in errors) to a model.
    ///
    /// # Errors
    /// As [`TextTokenizer::from_file`].
    pub fn from_tokenizer(
        mut inner: Tokenizer,
        context: &str,
        config: impl Into<TokenizerTarget>,
        max_length: Option<usize>,
    ) -> Result<Self> {
        let config: TokenizerTarget = config.into();
        let limit = config.max_sequence_length;
        let max_length = max_length.unwrap_or(limit.min(512));
        if max_length > limit {
            return Err(BackboneError::Invalid(format!(
                "max_length {max_length} exceeds what the model's position embeddings allow ({limit})"
            )));
        }
        if max_length < 2 {
            return Err(BackboneError::Invalid(format!(
                "max_length {max_length} leaves no room for special tokens"
            )));
        }
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| BackboneError::Tokenizer {
                context: context.to_string(),
                message: e.to_string(),
            })?;
        inner.with_padding(None);
        let vocab = inner.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(BackboneError::Tokenizer {
                context: context.to_string(),
                message: format!(
                    "the tokenizer has {vocab} tokens but the model's vocab_size is {}",
                    config.vocab_size
                ),
            });
        }
        Ok(Self {
            inner,
            max_length,
            pad_id: config.pad_id,
            positions: config.positions,
            type_vocab_size: config.type_vocab_size,
        })
    }

    /// The truncation length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenizes `inputs` (in parallel), in order.
    ///
    /// # Errors
    /// A text the tokenizer rejects, naming its 0-based index.
    pub fn encode(&self, inputs: &[TextInput<'_>]) -> Result<Vec<Encoded>> {
        let batch: Vec<EncodeInput<'_>> = inputs
            .iter()
            .map(|t| match *t {
                TextInput::Single(a) => EncodeInput::Single(a.into()),
                TextInput::Pair(a, b) => EncodeInput::Dual(a.into(), b.into()),
            })
            .collect();
        let out = match self.inner.encode_batch(batch, true) {
            Ok(out) => out,
            Err(_) => {
                // Find the offending row for the message.
                for (i, t) in inputs.iter().enumerate() {
                    let one = match *t {
                        TextInput::Single(a) => EncodeInput::Single(a.into()),
                        TextInput::Pair(a, b) => EncodeInput::Dual(a.into(), b.into()),
                    };
                    if let Err(e) = self.inner.encode(one, true) {
                        return Err(BackboneError::Tokenizer {
                            context: format!("text {i}"),
                            message: e.to_string(),
                        });
                    }
                }
                return Err(BackboneError::Tokenizer {
                    context: "batch".into(),
                    message: "encoding failed".into(),
                });
            }
        };
        out.into_iter()
            .enumerate()
            .map(|(i, e)| {
                let type_ids = e.get_type_ids().to_vec();
                if let Some(&t) = type_ids.iter().find(|&&t| t as usize >= self.type_vocab_size) {
                    return Err(BackboneError::Tokenizer {
                        context: format!("text {i}"),
                        message: format!("token type {t} but the model has {} token types", self.type_vocab_size),
                    });
                }
                Ok(Encoded {
                    ids: e.get_ids().to_vec(),
                    type_ids,
                })
            })
            .collect()
    }

    /// Splits `encoded` into batches of at most `batch_size`, longest first, each right-padded
    /// to its own longest sequence. Every row appears exactly once.
    pub fn batches(&self, encoded: &[Encoded], batch_size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        // Stable: equal lengths keep input order, so batching is deterministic.
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
    }

    /// Builds the model input of the rows `rows` of `encoded`. Shapes: `[B, L]`, L = the
    /// longest row.
    pub fn collate(&self, encoded: &[Encoded], rows: &[usize], device: &Device) -> EncoderInput {
        collate(encoded, rows, self.pad_id, self.positions, device)
    }

    /// The padding token id (RoBERTa numbers positions from it).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// How the model numbers positions.
    pub fn positions(&self) -> Positions {
        self.positions
    }

    /// The underlying `tokenizers` tokenizer (truncation set, padding off).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// The position id of a row's real token `j` (padding is numbered by `collate`).
pub(crate) fn position_id(positions: Positions, pad: i64, j: usize) -> i64 {
    match positions {
        Positions::AfterPad => pad + 1 + j as i64,
        Positions::FromZero => j as i64,
    }
}

/// Right-pads the rows into `[B, L]` tensors with the model's position ids.
pub fn collate(
    encoded: &[Encoded],
    rows: &[usize],
    pad_id: u32,
    positions: Positions,
    device: &Device,
) -> EncoderInput {
    let b = rows.len();
    let l = rows.iter().map(|&r| encoded[r].len()).max().unwrap_or(0).max(1);
    let mut ids = vec![i64::from(pad_id); b * l];
    let mut types = vec![0i64; b * l];
    let mut position_ids = vec![0i64; b * l];
    let mut bias = vec![crate::encoder::MASKED; b * l];
    let pad = i64::from(pad_id);
    for (bi, &r) in rows.iter().enumerate() {
        let e = &encoded[r];
        for j in 0..l {
            let k = bi * l + j;
            if j < e.len() {
                ids[k] = i64::from(e.ids[j]);
                types[k] = i64::from(e.type_ids[j]);
                bias[k] = 0.0;
                position_ids[k] = position_id(positions, pad, j);
            } else {
                position_ids[k] = match positions {
                    Positions::AfterPad => pad,
                    Positions::FromZero => j as i64,
                };
            }
        }
    }
    let int = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, l]), device);
    EncoderInput {
        input_ids: int(ids),
        token_type_ids: int(types),
        position_ids: int(position_ids),
        mask_bias: Tensor::<2>::from_data(TensorData::new(bias, [b, l]), device),
        lengths: rows.iter().map(|&r| encoded[r].len()).collect(),
    }
}
