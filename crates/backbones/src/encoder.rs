//! The BERT-family encoder (BERT, MiniLM, RoBERTa, ELECTRA) and its task heads.
//!
//! The module tree mirrors transformers' key tree so that the loader's remap table
//! (`loader.rs`) stays short: `embeddings.{word,position,token_type}_embeddings`,
//! `embeddings.layer_norm`, `embeddings_project` (ELECTRA), `encoder.layer.{i}.attention.
//! {self_attn.{query,key,value}, output.{dense,layer_norm}}`, `encoder.layer.{i}.intermediate.
//! dense`, `encoder.layer.{i}.output.{dense,layer_norm}`; the sequence head is `head.{dense,
//! out_proj}` for all families (BERT's pooler dense is the head's `dense`), the token head
//! `token_head`.

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::{Device, Int, Tensor};
use ueb_kernels::burn_ops::gelu_exact;

use crate::config::{EncoderConfig, Family, HiddenAct};

/// Additive attention bias of a padded key: large enough that its softmax weight underflows to
/// exactly 0 in f32, finite so that no `inf − inf` can appear.
pub(crate) const MASKED: f32 = -1e9;

/// A `Linear` initialised as transformers initialises a fresh one: weight ~ N(0, std), bias 0.
fn hf_linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    linear
}

fn hf_embedding(n: usize, d: usize, std: f64, device: &Device) -> Embedding {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

fn layer_norm(d: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

fn dropout(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}

/// One batch of token ids, ready for the model (all `[B, L]`, right-padded).
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Token ids.
    pub input_ids: Tensor<2, Int>,
    /// Token type (segment) ids.
    pub token_type_ids: Tensor<2, Int>,
    /// Position ids (family-specific: RoBERTa's start at `pad + 1`, padding at `pad`).
    pub position_ids: Tensor<2, Int>,
    /// Additive attention bias `[B, L]`: 0 for real tokens, a large negative for padding.
    pub mask_bias: Tensor<2>,
    /// Real tokens of each row (right padding: positions `0..len`); decoders read the last.
    pub lengths: Vec<usize>,
}

/// Word, position and token-type embeddings, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `[vocab, E]`.
    pub word_embeddings: Embedding,
    /// `[max_positions, E]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab, E]`.
    pub token_type_embeddings: Embedding,
    /// Over E.
    pub layer_norm: LayerNorm,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl Embeddings {
    /// Shapes: ids `[B, L]` → `[B, L, E]`.
    pub fn forward(&self, input: &EncoderInput) -> Tensor<3> {
        let x = self.word_embeddings.forward(input.input_ids.clone())
            + self.position_embeddings.forward(input.position_ids.clone())
            + self.token_type_embeddings.forward(input.token_type_ids.clone());
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// Multi-head self-attention projections (transformers' `attention.self`).
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// `[d, d]`.
    pub query: Linear,
    /// `[d, d]`.
    pub key: Linear,
    /// `[d, d]`.
    pub value: Linear,
    /// Attention-probability dropout.
    pub dropout: Dropout,
    /// Number of heads H.
    pub num_heads: usize,
}

impl SelfAttention {
    /// Shapes: `x` `[B, L, d]`, `mask_bias` `[B, 1, 1, L]` → context `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let h = self.num_heads;
        let dh = d / h;
        let split = |t: Tensor<3>| t.reshape([b, l, h, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        // A multiply, not `div_scalar`: burn 0.22.1 rounds div_scalar's scalar to f32 in its backward.
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()) + mask_bias;
        let probs = self.dropout.forward(softmax(scores, 3));
        probs.matmul(v).swap_dims(1, 2).reshape([b, l, d])
    }
}

/// Dense → dropout → residual → LayerNorm (transformers' `*SelfOutput` and `*Output`).
#[derive(Module, Debug)]
pub struct ResidualOutput {
    /// `[d_in, d]`.
    pub dense: Linear,
    /// Over d.
    pub layer_norm: LayerNorm,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl ResidualOutput {
    /// Shapes: `x` `[B, L, d_in]`, `residual` `[B, L, d]` → `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward(self.dropout.forward(self.dense.forward(x)) + residual)
    }
}

/// Self-attention and its output sub-layer.
#[derive(Module, Debug)]
pub struct Attention {
    /// transformers' `attention.self` (`self` is a Rust keyword).
    pub self_attn: SelfAttention,
    /// transformers' `attention.output`.
    pub output: ResidualOutput,
}

/// The feed-forward expansion.
#[derive(Module, Debug)]
pub struct Intermediate {
    /// `[d, I]`.
    pub dense: Linear,
    /// The activation.
    #[module(skip)]
    pub act: HiddenAct,
}

/// One transformer layer.
#[derive(Module, Debug)]
pub struct Layer {
    /// Attention block.
    pub attention: Attention,
    /// Feed-forward expansion.
    pub intermediate: Intermediate,
    /// Feed-forward output.
    pub output: ResidualOutput,
}

fn activate(act: HiddenAct, x: Tensor<3>) -> Tensor<3> {
    match act {
        HiddenAct::Gelu => gelu_exact(x),
        HiddenAct::GeluTanh => gelu_approximate(x),
        HiddenAct::Relu => relu(x),
    }
}

impl Layer {
    /// Shapes: `x` `[B, L, d]`, `mask_bias` `[B, 1, 1, L]` → `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let a = self
            .attention
            .output
            .forward(self.attention.self_attn.forward(x.clone(), mask_bias), x);
        let i = activate(self.intermediate.act, self.intermediate.dense.forward(a.clone()));
        self.output.forward(i, a)
    }
}

/// The layer stack (transformers' `encoder`).
#[derive(Module, Debug)]
pub struct LayerStack {
    /// The layers, in order.
    pub layer: Vec<Layer>,
}

/// The backbone: embeddings, ELECTRA's optional projection, and the layers.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Embeddings.
    pub embeddings: Embeddings,
    /// ELECTRA's `embeddings_project` (`[E, d]`), when E ≠ d.
    pub embeddings_project: Option<Linear>,
    /// The layers.
    pub encoder: LayerStack,
    /// The LayerNorms' epsilon (burn keeps its own copy private; the host pass needs it).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

/// Builds an [`Encoder`] with transformers' initialisation (weights are then loaded over it).
impl EncoderConfig {
    /// A freshly initialised backbone.
    pub fn init_encoder(&self, device: &Device) -> Encoder {
        let (d, e, std) = (self.hidden_size, self.embedding_size, self.initializer_range);
        let embeddings = Embeddings {
            word_embeddings: hf_embedding(self.vocab_size, e, std, device),
            position_embeddings: hf_embedding(self.max_position_embeddings, e, std, device),
            token_type_embeddings: hf_embedding(self.type_vocab_size, e, std, device),
            layer_norm: layer_norm(e, self.layer_norm_eps, device),
            dropout: dropout(self.hidden_dropout),
        };
        let embeddings_project = (e != d).then(|| hf_linear(e, d, std, device));
        let layer = (0..self.num_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: hf_linear(d, d, std, device),
                        key: hf_linear(d, d, std, device),
                        value: hf_linear(d, d, std, device),
                        dropout: dropout(self.attention_dropout),
                        num_heads: self.num_heads,
                    },
                    output: ResidualOutput {
                        dense: hf_linear(d, d, std, device),
                        layer_norm: layer_norm(d, self.layer_norm_eps, device),
                        dropout: dropout(self.hidden_dropout),
                    },
                },
                intermediate: Intermediate {
                    dense: hf_linear(d, self.intermediate_size, std, device),
                    act: self.hidden_act,
                },
                output: ResidualOutput {
                    dense: hf_linear(self.intermediate_size, d, std, device),
                    layer_norm: layer_norm(d, self.layer_norm_eps, device),
                    dropout: dropout(self.hidden_dropout),
                },
            })
            .collect();
        Encoder {
            embeddings,
            embeddings_project,
            encoder: LayerStack { layer },
            layer_norm_eps: self.layer_norm_eps,
        }
    }

    /// A freshly initialised sequence-classification head for this family.
    pub fn init_sequence_head(&self, device: &Device) -> SequenceHead {
        let (d, c, std) = (self.hidden_size, self.num_labels(), self.initializer_range);
        SequenceHead {
            dense: hf_linear(d, d, std, device),
            out_proj: hf_linear(d, c, std, device),
            dropout: dropout(self.classifier_dropout),
            family: self.family,
        }
    }

    /// A sequence classifier: backbone and head.
    pub fn init_sequence_classifier(&self, device: &Device) -> SequenceClassifier {
        SequenceClassifier {
            backbone: self.init_encoder(device),
            head: self.init_sequence_head(device),
        }
    }

    /// A token classifier: backbone and per-token linear layer.
    pub fn init_token_classifier(&self, device: &Device) -> TokenClassifier {
        TokenClassifier {
            backbone: self.init_encoder(device),
            token_head: hf_linear(self.hidden_size, self.num_labels(), self.initializer_range, device),
            dropout: dropout(self.classifier_dropout),
        }
    }
}

impl Encoder {
    /// The last layer's hidden states. Shapes: ids `[B, L]` → `[B, L, d]`.
    pub fn forward(&self, input: &EncoderInput) -> Tensor<3> {
        let mut x = self.embeddings.forward(input);
        if let Some(p) = &self.embeddings_project {
            x = p.forward(x);
        }
        let [b, l] = input.mask_bias.dims();
        let mask = input.mask_bias.clone().reshape([b, 1, 1, l]);
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
        }
        x
    }
}

/// The sequence-classification head, one shape for the three families:
/// - RoBERTa: dropout → dense → tanh → dropout → out_proj (transformers' `classifier`);
/// - ELECTRA: the same with GELU;
/// - BERT: pooler dense → tanh → dropout → classifier (`dense` = `pooler.dense`).
///
/// Its input is the first token's last hidden state: the feature the cache stores; the head
/// itself exports as the cache's `mlp` classifier.
#[derive(Module, Debug)]
pub struct SequenceHead {
    /// `[d, d]`.
    pub dense: Linear,
    /// `[d, C]`.
    pub out_proj: Linear,
    /// Classifier dropout.
    pub dropout: Dropout,
    /// Decides the activation and where dropout goes.
    #[module(skip)]
    pub family: Family,
}

impl SequenceHead {
    /// Shapes: features `[B, d]` → logits `[B, C]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = match self.family {
            Family::Bert => features,
            Family::Roberta | Family::Electra => self.dropout.forward(features),
        };
        let x = self.dense.forward(x);
        let x = match self.family {
            Family::Electra => gelu_exact(x),
            Family::Bert | Family::Roberta => x.tanh(),
        };
        self.out_proj.forward(self.dropout.forward(x))
    }
}

/// An encoder with a sequence-classification head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The backbone.
    pub backbone: Encoder,
    /// The head.
    pub head: SequenceHead,
}

/// What a sequence classifier computes for a batch.
#[derive(Debug, Clone)]
pub struct SequenceOutput {
    /// The first token's last hidden state `[B, d]` (the cache's `features`).
    pub features: Tensor<2>,
    /// `[B, C]`.
    pub logits: Tensor<2>,
}

/// `[B, L, d]` → the first token `[B, d]`.
pub fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [b, _, d] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([b, d])
}

impl SequenceClassifier {
    /// Shapes: ids `[B, L]` → features `[B, d]`, logits `[B, C]`.
    pub fn forward(&self, input: &EncoderInput) -> SequenceOutput {
        let features = first_token(self.backbone.forward(input));
        let logits = self.head.forward(features.clone());
        SequenceOutput { features, logits }
    }
}

/// An encoder with a per-token classifier (NER): dropout → linear.
#[derive(Module, Debug)]
pub struct TokenClassifier {
    /// The backbone.
    pub backbone: Encoder,
    /// `[d, C]`, transformers' `classifier`.
    pub token_head: Linear,
    /// Classifier dropout.
    pub dropout: Dropout,
}

/// What a token classifier computes for a batch.
#[derive(Debug, Clone)]
pub struct TokenOutput {
    /// Every token's last hidden state `[B, L, d]` (the cache's features, one row per token).
    pub hidden: Tensor<3>,
    /// `[B, L, C]`.
    pub logits: Tensor<3>,
}

impl TokenClassifier {
    /// Shapes: ids `[B, L]` → hidden `[B, L, d]`, logits `[B, L, C]`.
    pub fn forward(&self, input: &EncoderInput) -> TokenOutput {
        let hidden = self.backbone.forward(input);
        let logits = self.token_head.forward(self.dropout.forward(hidden.clone()));
        TokenOutput { hidden, logits }
    }
}
