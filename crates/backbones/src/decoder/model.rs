//! The LLaMA / Qwen2 / Qwen3 decoder and its two uses: sequence classification (`score` at the
//! last real token) and causal-LM scoring (`lm_head` rows at the answer position).
//!
//! The module tree is transformers' key tree, so the loader's remap table is nearly the
//! identity: `model.embed_tokens`, `model.layers.{i}.self_attn.{q,k,v,o}_proj`,
//! `model.layers.{i}.self_attn.{q,k}_norm` (Qwen3), `model.layers.{i}.mlp.{gate,up,down}_proj`,
//! `model.layers.{i}.{input,post_attention}_layernorm`, `model.norm`, then `score` or
//! `lm_head`.
//!
//! Inputs are right-padded batches ([`EncoderInput`]): real tokens sit at positions
//! `0..len`, so the causal mask alone already hides the padding from them; the key mask is
//! added anyway so that padded rows stay finite and nothing depends on the pad id.

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::DecoderConfig;
use crate::encoder::{EncoderInput, MASKED, SequenceOutput};

/// A `Linear` initialised as transformers does (weight ~ N(0, std), bias 0 when present).
fn hf_linear(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    if bias {
        linear.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    }
    linear
}

fn rms_norm(d: usize, eps: f64, device: &Device) -> RmsNorm {
    RmsNormConfig::new(d).with_epsilon(eps).init(device)
}

/// Grouped-query self-attention with RoPE (transformers' `*Attention`).
#[derive(Module, Debug)]
pub struct DecoderAttention {
    /// `[d, H·dh]`, with a bias on Qwen2.
    pub q_proj: Linear,
    /// `[d, Hkv·dh]`.
    pub k_proj: Linear,
    /// `[d, Hkv·dh]`.
    pub v_proj: Linear,
    /// `[H·dh, d]`.
    pub o_proj: Linear,
    /// Qwen3: RMSNorm over each query head (`[dh]`).
    pub q_norm: Option<RmsNorm>,
    /// Qwen3: RMSNorm over each key head (`[dh]`).
    pub k_norm: Option<RmsNorm>,
    /// Attention-probability dropout (0 in released checkpoints).
    pub dropout: Dropout,
    /// Query heads H.
    pub num_heads: usize,
    /// Key/value heads Hkv (divides H).
    pub num_kv_heads: usize,
    /// Head width dh.
    pub head_dim: usize,
}

/// RoPE tables for positions `0..L` in transformers' "rotate half" layout: `[1, 1, L, dh]`.
#[derive(Debug, Clone)]
pub struct Rope {
    /// cos of every angle, the `dh / 2` frequencies repeated twice.
    pub cos: Tensor<4>,
    /// sin, likewise.
    pub sin: Tensor<4>,
}

impl Rope {
    /// Tables for `len` positions. The frequencies and angles are rounded to f32 as
    /// transformers computes them, so the angles (not just the rotations) agree.
    pub fn new(len: usize, head_dim: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(len * head_dim);
        let mut sin = Vec::with_capacity(len * head_dim);
        for p in 0..len {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = f64::from(p as f32 * f);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, head_dim]), device);
        Self {
            cos: t(cos),
            sin: t(sin),
        }
    }

    /// Rotates `x` `[B, H, L, dh]` by its positions.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let dh = x.dims()[3];
        let half = dh / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

impl DecoderAttention {
    /// Shapes: `x` `[B, L, d]`, `mask` `[B, 1, L, L]` (additive) → `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, mask: Tensor<4>) -> Tensor<3> {
        let [b, l, _] = x.dims();
        let (h, hkv, dh) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor<3>, n: usize, norm: &Option<RmsNorm>| {
            let t = t.reshape([b, l, n, dh]);
            let t = match norm {
                Some(norm) => norm.forward(t),
                None => t,
            };
            rope.apply(t.swap_dims(1, 2))
        };
        let q = heads(self.q_proj.forward(x.clone()), h, &self.q_norm);
        let k = heads(self.k_proj.forward(x.clone()), hkv, &self.k_norm);
        let v = self.v_proj.forward(x).reshape([b, l, hkv, dh]).swap_dims(1, 2);
        // Grouped-query attention: every key/value head serves H / Hkv consecutive query heads.
        let repeat = |t: Tensor<4>| {
            if h == hkv {
                t
            } else {
                t.reshape([b, hkv, 1, l, dh])
                    .repeat_dim(2, h / hkv)
                    .reshape([b, h, l, dh])
            }
        };
        let (k, v) = (repeat(k), repeat(v));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()) + mask;
        let probs = self.dropout.forward(softmax(scores, 3));
        self.o_proj
            .forward(probs.matmul(v).swap_dims(1, 2).reshape([b, l, h * dh]))
    }
}

/// The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct DecoderMlp {
    /// `[d, I]`.
    pub gate_proj: Linear,
    /// `[d, I]`.
    pub up_proj: Linear,
    /// `[I, d]`.
    pub down_proj: Linear,
}

impl DecoderMlp {
    /// Shapes: `[B, L, d]` → `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Attention.
    pub self_attn: DecoderAttention,
    /// Feed-forward.
    pub mlp: DecoderMlp,
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// RMSNorm before the feed-forward block.
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// Shapes: `x` `[B, L, d]`, `mask` `[B, 1, L, L]` → `[B, L, d]`.
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, mask: Tensor<4>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, mask);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// The decoder stack (transformers' `LlamaModel` / `Qwen2Model` / `Qwen3Model`).
#[derive(Module, Debug)]
pub struct Decoder {
    /// `[vocab, d]`.
    pub embed_tokens: Embedding,
    /// The layers, in order.
    pub layers: Vec<DecoderLayer>,
    /// The final RMSNorm.
    pub norm: RmsNorm,
    /// Head width dh (RoPE tables).
    pub head_dim: usize,
    /// RoPE base θ.
    pub rope_theta: f64,
}

impl DecoderConfig {
    /// A freshly initialised decoder stack (weights are then loaded over it).
    pub fn init_decoder(&self, device: &Device) -> Decoder {
        let (d, std, eps) = (self.hidden_size, self.initializer_range, self.rms_norm_eps);
        let (h, hkv, dh) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let layers = (0..self.num_layers)
            .map(|_| DecoderLayer {
                self_attn: DecoderAttention {
                    q_proj: hf_linear(d, h * dh, self.qkv_bias, std, device),
                    k_proj: hf_linear(d, hkv * dh, self.qkv_bias, std, device),
                    v_proj: hf_linear(d, hkv * dh, self.qkv_bias, std, device),
                    o_proj: hf_linear(h * dh, d, self.o_bias, std, device),
                    q_norm: self.qk_norm.then(|| rms_norm(dh, eps, device)),
                    k_norm: self.qk_norm.then(|| rms_norm(dh, eps, device)),
                    dropout: DropoutConfig::new(self.attention_dropout).init(),
                    num_heads: h,
                    num_kv_heads: hkv,
                    head_dim: dh,
                },
                mlp: DecoderMlp {
                    gate_proj: hf_linear(d, self.intermediate_size, false, std, device),
                    up_proj: hf_linear(d, self.intermediate_size, false, std, device),
                    down_proj: hf_linear(self.intermediate_size, d, false, std, device),
                },
                input_layernorm: rms_norm(d, eps, device),
                post_attention_layernorm: rms_norm(d, eps, device),
            })
            .collect();
        Decoder {
            embed_tokens: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device),
            layers,
            norm: rms_norm(d, eps, device),
            head_dim: dh,
            rope_theta: self.rope_theta,
        }
    }

    /// A sequence classifier: the stack and a bias-free `score` layer with C outputs.
    pub fn init_classifier(&self, device: &Device) -> DecoderClassifier {
        DecoderClassifier {
            model: self.init_decoder(device),
            score: hf_linear(
                self.hidden_size,
                self.num_labels(),
                false,
                self.initializer_range,
                device,
            ),
        }
    }

    /// A causal LM: the stack and `lm_head` (absent when tied to `embed_tokens`).
    pub fn init_causal_lm(&self, device: &Device) -> CausalLm {
        CausalLm {
            model: self.init_decoder(device),
            lm_head: (!self.tie_word_embeddings)
                .then(|| hf_linear(self.hidden_size, self.vocab_size, false, self.initializer_range, device)),
        }
    }
}

/// The additive attention mask of a right-padded batch: causal plus padded keys,
/// `[B, 1, L, L]` (by broadcasting a `[1, 1, L, L]` and a `[B, 1, 1, L]` term).
fn attention_mask(mask_bias: &Tensor<2>, device: &Device) -> Tensor<4> {
    let [b, l] = mask_bias.dims();
    let mut causal = vec![0.0f32; l * l];
    for i in 0..l {
        for j in i + 1..l {
            causal[i * l + j] = MASKED;
        }
    }
    let causal = Tensor::<4>::from_data(TensorData::new(causal, [1, 1, l, l]), device);
    causal + mask_bias.clone().reshape([b, 1, 1, l])
}

impl Decoder {
    /// The last layer's hidden states after the final norm (transformers'
    /// `hidden_states[-1]`). Shapes: ids `[B, L]` → `[B, L, d]`.
    pub fn forward(&self, input: &EncoderInput) -> Tensor<3> {
        let device = input.input_ids.device();
        let [_, l] = input.input_ids.dims();
        let rope = Rope::new(l, self.head_dim, self.rope_theta, &device);
        let mask = attention_mask(&input.mask_bias, &device);
        let mut x = self.embed_tokens.forward(input.input_ids.clone());
        for layer in &self.layers {
            x = layer.forward(x, &rope, mask.clone());
        }
        self.norm.forward(x)
    }

    /// Hidden width d.
    pub fn hidden_size(&self) -> usize {
        self.embed_tokens.weight.dims()[1]
    }
}

/// `[B, L, d]` → the hidden state of each row's last real token `[B, d]` (right padding:
/// position `lengths[b] − 1`).
pub fn last_token(hidden: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, l, d] = hidden.dims();
    let device = hidden.device();
    let index: Vec<i64> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| (i * l + n.clamp(1, l) - 1) as i64)
        .collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b]), &device);
    hidden.reshape([b * l, d]).select(0, index)
}

/// A decoder with transformers' `*ForSequenceClassification` head.
#[derive(Module, Debug)]
pub struct DecoderClassifier {
    /// The stack.
    pub model: Decoder,
    /// `[d, C]`, no bias.
    pub score: Linear,
}

impl DecoderClassifier {
    /// Shapes: ids `[B, L]` → features `[B, d]` (the last real token's hidden state), logits
    /// `[B, C]` (`score` of it).
    pub fn forward(&self, input: &EncoderInput) -> SequenceOutput {
        let features = last_token(self.model.forward(input), &input.lengths);
        let logits = self.score.forward(features.clone());
        SequenceOutput { features, logits }
    }
}

/// A decoder with its language-model head (transformers' `*ForCausalLM`).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// The stack.
    pub model: Decoder,
    /// `[d, vocab]`; `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Linear>,
}

impl CausalLm {
    /// The rows of the output layer for `token_ids`, transposed for a product: `[d, C]`.
    pub fn head_rows(&self, token_ids: &[u32]) -> Tensor<2> {
        let device = self.model.embed_tokens.weight.device();
        let ids: Vec<i64> = token_ids.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [token_ids.len()]), &device);
        match &self.lm_head {
            Some(head) => head.weight.val().select(1, ids),
            None => self.model.embed_tokens.weight.val().select(0, ids).transpose(),
        }
    }

    /// The last real token's hidden state and the logits of `token_ids` there. Shapes: ids
    /// `[B, L]` → features `[B, d]`, logits `[B, C]` with C = `token_ids.len()`.
    pub fn forward_tokens(&self, input: &EncoderInput, token_ids: &[u32]) -> SequenceOutput {
        let features = last_token(self.model.forward(input), &input.lengths);
        let logits = features.clone().matmul(self.head_rows(token_ids));
        SequenceOutput { features, logits }
    }
}
