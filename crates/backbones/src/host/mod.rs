//! Encoder inference on the host: the forward pass of a BERT-family encoder and its sequence
//! head with the `gemm` crate's matrix kernels and fused, vectorised, multi-threaded element
//! passes. Feature extraction on a CPU device runs here ([`crate::Extractor::run`]); training,
//! and every other device, runs the burn modules of `encoder.rs`.
//!
//! Why not burn on the CPU: burn 0.22's CPU backends run each element-wise operation (bias adds,
//! GELU's erf, the attention's scale, mask and softmax, residual adds, the head transposes) as
//! its own scalar, single-threaded pass, which on an encoder costs as much as all its matrix
//! products (decision EN10; measured: `docs/performance.md`). Here:
//!
//! - a sub-layer's element work is one pass over its output, rows in parallel;
//! - Q, K and V come from one product with the three weights side by side;
//! - attention reads Q, K and V in place through strides (no transposes) and runs on each row's
//!   real tokens only: padding is never computed. A padded key has exactly zero weight in the
//!   masked softmax (its bias makes `e^x` underflow to 0 in f32), so this is the same function;
//! - the last layer computes queries, the output projection and the feed-forward for the first
//!   token only, the one the features keep (keys and values still come from every token).
//!
//! The weights are copied out of the burn modules once per [`HostEncoder`] (row-major
//! `[d_in, d_out]`, burn's `Linear` layout).

mod decoder;
mod train;

pub use decoder::HostDecoder;
pub use train::{AdamW, Dropouts, HostTrainer};

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::config::{Family, HiddenAct};
use crate::encoder::{Encoder, SequenceHead};
use crate::error::{BackboneError, Result};
use crate::readback::to_host;
use crate::tokenize::{Encoded, Positions, position_id};
use ueb_kernels::elem32 as kernels;
use ueb_kernels::gemm::{Operand, matmul};

/// Products with fewer multiply–adds than this run on one thread (the pool's start-up costs
/// more than it saves).
const PARALLEL_MACS: usize = 1 << 22;
/// Rows per parallel task of the element passes.
const ROWS_PER_TASK: usize = 16;

fn host_vec<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    to_host(t).map_err(|e| BackboneError::Invalid(format!("{what}: {e}")))
}

/// Several `Linear`s that read the same input, as one: their weights side by side (row-major
/// `[d_in, Σ d_out]`, burn's layout), their biases in the same order (zeros where absent).
/// Returns (w, b, d_in, d_out).
fn fused_weights(parts: &[&Linear], what: &str) -> Result<(Vec<f32>, Vec<f32>, usize, usize)> {
    let mut ws = Vec::with_capacity(parts.len());
    let mut b = Vec::new();
    let mut d_in = 0;
    for l in parts {
        let [di, d_out] = l.weight.val().dims();
        d_in = di;
        ws.push((host_vec(l.weight.val(), what)?, d_out));
        match &l.bias {
            Some(bias) => b.extend(host_vec(bias.val(), what)?),
            None => b.extend(std::iter::repeat_n(0.0, d_out)),
        }
    }
    let d_out: usize = ws.iter().map(|(_, o)| o).sum();
    let mut w = Vec::with_capacity(d_in * d_out);
    for r in 0..d_in {
        for (wi, o) in &ws {
            w.extend_from_slice(&wi[r * o..(r + 1) * o]);
        }
    }
    Ok((w, b, d_in, d_out))
}

/// LayerNorm's γ and β on the host (β zero where the norm has none).
fn layer_norm_weights(ln: &LayerNorm, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    let gamma = host_vec(ln.gamma.val(), what)?;
    let beta = match &ln.beta {
        Some(b) => host_vec(b.val(), what)?,
        None => vec![0.0; gamma.len()],
    };
    Ok((gamma, beta))
}

/// A linear layer: `y = x·w + b`, `w` row-major `[d_in, d_out]`.
#[derive(Debug, Clone)]
struct HostLinear {
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl HostLinear {
    fn from_linears(parts: &[&Linear], what: &str) -> Result<Self> {
        let (w, b, d_in, d_out) = fused_weights(parts, what)?;
        Ok(Self { w, b, d_in, d_out })
    }

    /// `out = x·w` for the `rows` rows of `x` (row-major `[rows, d_in]`), **without the bias**:
    /// the caller adds it in its own pass over `out` (with the activation, or the residual and
    /// LayerNorm), so that no pass is spent on it alone. `out` is resized, not cleared (the
    /// product overwrites it): a buffer reused at the same size costs no page faults or fill.
    fn product(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        out.resize(rows * self.d_out, 0.0);
        let parallel = rows * self.d_in * self.d_out >= PARALLEL_MACS;
        matmul(
            out,
            self.d_out,
            Operand::rows(x, rows, self.d_in, self.d_in),
            Operand::rows(&self.w, self.d_in, self.d_out, self.d_out),
            1.0,
            false,
            parallel,
        )?;
        Ok(())
    }

    /// `out = x·w + b`, then `f` on each block of rows (in parallel): a product with its bias
    /// and activation in one pass.
    fn forward_then(&self, x: &[f32], rows: usize, out: &mut Vec<f32>, f: impl Fn(&mut [f32]) + Sync) -> Result<()> {
        self.product(x, rows, out)?;
        let d = self.d_out.max(1);
        out.par_chunks_mut(d * ROWS_PER_TASK).for_each(|c| {
            kernels::add_bias(c, &self.b);
            f(c);
        });
        Ok(())
    }

    /// `out = x·w + b`.
    fn forward(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        self.forward_then(x, rows, out, |_| {})
    }

    /// `x ← LayerNorm(x·w + b + residual)`: `out` gets the product, then one pass per row adds
    /// the bias and the residual and normalises.
    fn forward_add_norm(
        &self,
        x: &[f32],
        rows: usize,
        residual: &[f32],
        norm: &HostNorm,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        self.product(x, rows, out)?;
        norm.apply(out, Some(residual), Some(&self.b));
        Ok(())
    }
}

/// LayerNorm's parameters.
#[derive(Debug, Clone)]
struct HostNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f64,
}

impl HostNorm {
    fn from_layer_norm(ln: &LayerNorm, eps: f64, what: &str) -> Result<Self> {
        let (gamma, beta) = layer_norm_weights(ln, what)?;
        Ok(Self { gamma, beta, eps })
    }

    /// `x ← LayerNorm(x + bias + add)` row by row (`add` row-aligned with `x`, `bias` one row),
    /// rows in parallel.
    fn apply(&self, x: &mut [f32], add: Option<&[f32]>, bias: Option<&[f32]>) {
        let d = self.gamma.len().max(1);
        let task = d * ROWS_PER_TASK;
        let norm = |x: &mut [f32], add: Option<&[f32]>| {
            kernels::layer_norm_rows(kernels::LayerNormRows {
                x,
                add,
                bias,
                gamma: &self.gamma,
                beta: &self.beta,
                eps: self.eps,
            });
        };
        match add {
            Some(add) => x
                .par_chunks_mut(task)
                .zip(add.par_chunks(task))
                .for_each(|(xc, ac)| norm(xc, Some(ac))),
            None => x.par_chunks_mut(task).for_each(|xc| norm(xc, None)),
        }
    }
}

/// One transformer layer.
#[derive(Debug, Clone)]
struct HostLayer {
    /// Q, K, V side by side: `[d, 3d]`.
    qkv: HostLinear,
    heads: usize,
    out: HostLinear,
    norm1: HostNorm,
    inter: HostLinear,
    act: HiddenAct,
    down: HostLinear,
    norm2: HostNorm,
}

/// The sequence head (`dense` → tanh or GELU → `out_proj`; dropout is off in inference).
#[derive(Debug, Clone)]
struct HostHead {
    dense: HostLinear,
    out_proj: HostLinear,
    gelu: bool,
}

/// The token rows of one batch, packed: row `b`'s tokens are `start[b]..start[b] + len[b]`.
#[derive(Debug, Clone, Default)]
pub(super) struct Packed {
    pub(super) start: Vec<usize>,
    pub(super) len: Vec<usize>,
    pub(super) tokens: usize,
}

/// An encoder (and optionally its sequence head) with its weights on the host, ready for
/// [`forward`](Self::forward).
#[derive(Debug, Clone)]
pub struct HostEncoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    /// Embedding width E.
    width: usize,
    emb_norm: HostNorm,
    project: Option<HostLinear>,
    layers: Vec<HostLayer>,
    /// Hidden size d.
    dim: usize,
    head: Option<HostHead>,
    scratch: Scratch,
}

/// What [`HostEncoder::forward`] returns for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOutput {
    /// The first token's last hidden state, `[B, d]` row-major.
    pub features: Vec<f32>,
    /// `[B, C]` row-major, with a head.
    pub logits: Option<Vec<f32>>,
}

impl HostEncoder {
    /// Copies the weights of `encoder` (and of `head`, when given) to the host.
    ///
    /// # Errors
    /// A tensor that cannot be read back.
    pub fn new(encoder: &Encoder, head: Option<&SequenceHead>) -> Result<Self> {
        let eps = encoder.layer_norm_eps;
        let emb = &encoder.embeddings;
        let [_, width] = emb.word_embeddings.weight.val().dims();
        let layers = encoder
            .encoder
            .layer
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let what = format!("layer {i}");
                let sa = &l.attention.self_attn;
                Ok(HostLayer {
                    qkv: HostLinear::from_linears(&[&sa.query, &sa.key, &sa.value], &what)?,
                    heads: sa.num_heads,
                    out: HostLinear::from_linears(&[&l.attention.output.dense], &what)?,
                    norm1: HostNorm::from_layer_norm(&l.attention.output.layer_norm, eps, &what)?,
                    inter: HostLinear::from_linears(&[&l.intermediate.dense], &what)?,
                    act: l.intermediate.act,
                    down: HostLinear::from_linears(&[&l.output.dense], &what)?,
                    norm2: HostNorm::from_layer_norm(&l.output.layer_norm, eps, &what)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let project = match &encoder.embeddings_project {
            Some(p) => Some(HostLinear::from_linears(&[p], "embeddings_project")?),
            None => None,
        };
        let dim = project.as_ref().map_or(width, |p| p.d_out);
        let head = match head {
            Some(h) => Some(HostHead {
                dense: HostLinear::from_linears(&[&h.dense], "the head")?,
                out_proj: HostLinear::from_linears(&[&h.out_proj], "the head")?,
                gelu: h.family == Family::Electra,
            }),
            None => None,
        };
        Ok(Self {
            word: host_vec(emb.word_embeddings.weight.val(), "word embeddings")?,
            position: host_vec(emb.position_embeddings.weight.val(), "position embeddings")?,
            token_type: host_vec(emb.token_type_embeddings.weight.val(), "token-type embeddings")?,
            width,
            emb_norm: HostNorm::from_layer_norm(&emb.layer_norm, eps, "embeddings")?,
            project,
            layers,
            dim,
            head,
            scratch: Scratch::default(),
        })
    }

    /// Hidden size d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeddings of the packed tokens into `x`: `[tokens, E]`, LayerNorm applied.
    fn embed(
        &self,
        rows: &[&Encoded],
        names: Option<&[usize]>,
        packed: &Packed,
        pad_id: u32,
        positions: Positions,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        EmbeddingTables {
            word: &self.word,
            position: &self.position,
            token_type: &self.token_type,
            width: self.width,
        }
        .sum(rows, names, packed, pad_id, positions, x, None)?;
        self.emb_norm.apply(x, None, None);
        Ok(())
    }

    /// Features (the first token's last hidden state) and, with a head, logits of the token
    /// sequences `rows` (each at least one token long). `pad_id` and `positions` number the
    /// positions as the model's tokenizer does.
    ///
    /// Buffers are kept from one call to the next (a batch of the same shape reuses them).
    ///
    /// # Errors
    /// An empty row, or a token id, type or position outside the model's tables, naming the row
    /// (its index in `rows`) and the token.
    pub fn forward(&mut self, rows: &[&Encoded], pad_id: u32, positions: Positions) -> Result<HostOutput> {
        self.forward_named(rows, None, pad_id, positions)
    }

    /// [`forward`](Self::forward), with errors naming row `b` as `names[b]` (the caller's row
    /// numbers, e.g. input rows of a sorted batch).
    pub(crate) fn forward_named(
        &mut self,
        rows: &[&Encoded],
        names: Option<&[usize]>,
        pad_id: u32,
        positions: Positions,
    ) -> Result<HostOutput> {
        let nb = rows.len();
        let len: Vec<usize> = rows.iter().map(|e| e.ids.len().min(e.type_ids.len())).collect();
        if let Some(b) = len.iter().position(|&l| l == 0) {
            return Err(BackboneError::Invalid(format!(
                "row {} has no tokens",
                row_name(names, b)
            )));
        }
        let mut start = Vec::with_capacity(nb);
        let mut tokens = 0;
        for &l in &len {
            start.push(tokens);
            tokens += l;
        }
        let packed = Packed { start, len, tokens };
        let mut s = std::mem::take(&mut self.scratch);
        let out = self.run(rows, names, &packed, pad_id, positions, &mut s);
        self.scratch = s;
        out
    }

    fn run(
        &self,
        rows: &[&Encoded],
        names: Option<&[usize]>,
        packed: &Packed,
        pad_id: u32,
        positions: Positions,
        s: &mut Scratch,
    ) -> Result<HostOutput> {
        let nb = rows.len();
        self.embed(rows, names, packed, pad_id, positions, &mut s.x)?;
        if let Some(p) = &self.project {
            p.forward(&s.x, packed.tokens, &mut s.y)?;
            std::mem::swap(&mut s.x, &mut s.y);
        }
        let n_layers = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.forward(&s.x, packed, i + 1 == n_layers, &mut s.layer, &mut s.y)?;
            std::mem::swap(&mut s.x, &mut s.y);
        }
        let x = &s.x;
        // After the last layer x holds one row per sequence; with no layers, take first tokens.
        let features = if n_layers == 0 {
            packed
                .start
                .iter()
                .flat_map(|&s| x[s * self.dim..(s + 1) * self.dim].iter().copied())
                .collect()
        } else {
            x.clone()
        };
        let logits = match &self.head {
            Some(h) => {
                let mut hid = Vec::new();
                let gelu = h.gelu;
                h.dense.forward_then(&features, nb, &mut hid, |c| {
                    if gelu {
                        kernels::gelu_in_place(c);
                    } else {
                        c.iter_mut().for_each(|v| *v = libm::tanhf(*v));
                    }
                })?;
                let mut z = Vec::new();
                h.out_proj.forward(&hid, nb, &mut z)?;
                Some(z)
            }
            None => None,
        };
        Ok(HostOutput { features, logits })
    }
}

/// An encoder's three embedding tables, row-major `[n, E]`.
pub(super) struct EmbeddingTables<'a> {
    pub(super) word: &'a [f32],
    pub(super) position: &'a [f32],
    pub(super) token_type: &'a [f32],
    /// E.
    pub(super) width: usize,
}

impl EmbeddingTables<'_> {
    /// `x` `[tokens, E]` ← word + position + type embedding of every packed token (before
    /// LayerNorm), and each token's (word, position, type) row in `ids` when given.
    ///
    /// # Errors
    /// An index outside a table, naming the row (`names[b]`) and the token.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sum(
        &self,
        rows: &[&Encoded],
        names: Option<&[usize]>,
        packed: &Packed,
        pad_id: u32,
        positions: Positions,
        x: &mut Vec<f32>,
        mut ids: Option<&mut Vec<(usize, usize, usize)>>,
    ) -> Result<()> {
        let e = self.width.max(1);
        let (vocab, max_positions, type_vocab) =
            (self.word.len() / e, self.position.len() / e, self.token_type.len() / e);
        x.resize(packed.tokens * e, 0.0);
        if let Some(ids) = ids.as_deref_mut() {
            ids.clear();
        }
        for (b, enc) in rows.iter().enumerate() {
            for j in 0..packed.len[b] {
                let (id, tt) = (enc.ids[j] as usize, enc.type_ids[j] as usize);
                let pos = usize::try_from(position_id(positions, i64::from(pad_id), j)).unwrap_or(usize::MAX);
                if id >= vocab || tt >= type_vocab || pos >= max_positions {
                    return Err(BackboneError::Invalid(format!(
                        "row {}, token {j}: id {id}, type {tt} or position {pos} is outside the model's tables \
                         ({vocab} ids, {type_vocab} types, {max_positions} positions; does tokenizer.json belong to this model?)",
                        row_name(names, b),
                    )));
                }
                if let Some(ids) = ids.as_deref_mut() {
                    ids.push((id, pos, tt));
                }
                let out = &mut x[(packed.start[b] + j) * e..(packed.start[b] + j + 1) * e];
                let (w, p, t) = (
                    &self.word[id * e..(id + 1) * e],
                    &self.position[pos * e..(pos + 1) * e],
                    &self.token_type[tt * e..(tt + 1) * e],
                );
                // (word + position) + type, the order of `Embeddings::forward`.
                for (((o, w), p), t) in out.iter_mut().zip(w).zip(p).zip(t) {
                    *o = (*w + *p) + *t;
                }
            }
        }
        Ok(())
    }
}

/// Row `b` as the caller numbers it.
fn row_name(names: Option<&[usize]>, b: usize) -> usize {
    names.and_then(|n| n.get(b).copied()).unwrap_or(b)
}

/// Buffers reused across layers and batches.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// A layer's input and output, swapped after each layer.
    x: Vec<f32>,
    y: Vec<f32>,
    layer: LayerScratch,
}

/// A layer's intermediate buffers.
#[derive(Debug, Clone, Default)]
struct LayerScratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    attn: Vec<f32>,
    inter: Vec<f32>,
    residual: Vec<f32>,
}

impl HostLayer {
    /// `x` `[tokens, d]` → `y` `[tokens, d]`, or `[B, d]` (first tokens only) when `last`.
    fn forward(&self, x: &[f32], packed: &Packed, last: bool, s: &mut LayerScratch, y: &mut Vec<f32>) -> Result<()> {
        let d = self.out.d_out;
        let nb = packed.len.len();
        self.qkv.forward(x, packed.tokens, &mut s.qkv)?;
        // Query rows: every token, or each sequence's first token.
        let (q_rows, q_of): (usize, Vec<(usize, usize)>) = if last {
            (nb, packed.start.iter().map(|&st| (st, 1)).collect())
        } else {
            (
                packed.tokens,
                packed.start.iter().zip(&packed.len).map(|(&st, &l)| (st, l)).collect(),
            )
        };
        self.attention(&s.qkv, packed, &q_of, q_rows, &mut s.ctx)?;
        let residual = if last {
            s.residual.clear();
            for &st in &packed.start {
                s.residual.extend_from_slice(&x[st * d..(st + 1) * d]);
            }
            &s.residual[..]
        } else {
            x
        };
        self.out
            .forward_add_norm(&s.ctx, q_rows, residual, &self.norm1, &mut s.attn)?;
        let act = self.act;
        self.inter.forward_then(&s.attn, q_rows, &mut s.inter, |c| match act {
            HiddenAct::Gelu => kernels::gelu_in_place(c),
            HiddenAct::GeluTanh => kernels::gelu_tanh_in_place(c),
            HiddenAct::Relu => kernels::relu_in_place(c),
        })?;
        self.down.forward_add_norm(&s.inter, q_rows, &s.attn, &self.norm2, y)
    }

    /// Multi-head attention of the packed `qkv` (`[tokens, 3d]`: Q, K, V side by side) into
    /// `ctx` (`[q_rows, d]`, sequences in order). `q_of[b]` = (first query token, number of
    /// query tokens) of sequence b; its keys are all of its tokens.
    fn attention(
        &self,
        qkv: &[f32],
        packed: &Packed,
        q_of: &[(usize, usize)],
        q_rows: usize,
        ctx: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.out.d_out;
        let h = self.heads.max(1);
        let dh = d / h;
        let stride = 3 * d;
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        // Every element is written below (each head's columns of each query row).
        ctx.resize(q_rows * d, 0.0);
        // Each sequence's context rows are one contiguous block of ctx.
        let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(q_of.len());
        let mut rest = &mut ctx[..];
        for (b, &(_, nq)) in q_of.iter().enumerate() {
            let (blk, tail) = rest.split_at_mut(nq * d);
            blocks.push((b, blk));
            rest = tail;
        }
        blocks.into_par_iter().try_for_each(|(b, out)| -> Result<()> {
            let (q0, nq) = q_of[b];
            let (k0, nk) = (packed.start[b], packed.len[b]);
            let mut scores = vec![0.0f32; nq * nk];
            for head in 0..h {
                let col = head * dh;
                let q = Operand::rows(&qkv[q0 * stride + col..], nq, dh, stride);
                let k = Operand::rows(&qkv[k0 * stride + d + col..], nk, dh, stride);
                let v = Operand::rows(&qkv[k0 * stride + 2 * d + col..], nk, dh, stride);
                // Scaled after the product, as transformers (and `SelfAttention`) do.
                matmul(&mut scores, nk, q, k.t(), scale, false, false)?;
                kernels::softmax_rows(&mut scores, nk);
                matmul(
                    &mut out[col..],
                    d,
                    Operand::rows(&scores, nq, nk, nk),
                    v,
                    1.0,
                    false,
                    false,
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::config::{EncoderConfig, RawConfig};
    use crate::encoder::first_token;
    use crate::tokenize::collate;

    fn config(model_type: &str, extra: serde_json::Value) -> EncoderConfig {
        let mut v = serde_json::json!({
            "model_type": model_type, "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 40,
            "type_vocab_size": 2, "pad_token_id": 1, "layer_norm_eps": 1e-12,
            "id2label": {"0": "a", "1": "b", "2": "c"}
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let raw: RawConfig = serde_json::from_value(v).unwrap();
        EncoderConfig::resolve(raw, std::path::Path::new("config.json")).unwrap()
    }

    fn rows() -> Vec<Encoded> {
        [7usize, 3, 12, 1]
            .iter()
            .enumerate()
            .map(|(i, &l)| Encoded {
                ids: (0..l).map(|j| (2 + (i * 13 + j * 7) % 48) as u32).collect(),
                type_ids: (0..l).map(|j| u32::from(j >= l / 2 && i % 2 == 1)).collect(),
            })
            .collect()
    }

    /// The host pass against the burn modules on flex, padded batches and all families.
    #[test]
    fn host_forward_matches_the_burn_modules() {
        let device = Device::flex();
        let cases = [
            config("bert", serde_json::json!({})),
            config("roberta", serde_json::json!({"hidden_act": "gelu_new"})),
            config(
                "electra",
                serde_json::json!({"embedding_size": 16, "hidden_act": "relu"}),
            ),
            config("electra", serde_json::json!({})),
        ];
        for cfg in cases {
            let model = cfg.init_sequence_classifier(&device);
            let mut host = HostEncoder::new(&model.backbone, Some(&model.head)).unwrap();
            let enc = rows();
            let order: Vec<usize> = (0..enc.len()).collect();
            let positions = if cfg.family == Family::Roberta {
                Positions::AfterPad
            } else {
                Positions::FromZero
            };
            let pad = cfg.pad_token_id as u32;
            let input = collate(&enc, &order, pad, positions, &device);
            let feats = first_token(model.backbone.forward(&input));
            let logits = model.head.forward(feats.clone());
            let want_f = host_vec(feats, "f").unwrap();
            let want_z = host_vec(logits, "z").unwrap();
            let refs: Vec<&Encoded> = enc.iter().collect();
            let got = host.forward(&refs, pad, positions).unwrap();
            let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert_eq!(got.features.len(), want_f.len());
            assert!(
                diff(&got.features, &want_f) < 2e-5,
                "{:?}: features off by {}",
                cfg.family,
                diff(&got.features, &want_f)
            );
            let z = got.logits.unwrap();
            assert!(
                diff(&z, &want_z) < 2e-5,
                "{:?}: logits off by {}",
                cfg.family,
                diff(&z, &want_z)
            );
        }
    }

    #[test]
    fn ids_outside_the_tables_are_errors() {
        let device = Device::flex();
        let cfg = config("bert", serde_json::json!({}));
        let model = cfg.init_encoder(&device);
        let mut host = HostEncoder::new(&model, None).unwrap();
        let bad = Encoded {
            ids: vec![2, 50],
            type_ids: vec![0, 0],
        };
        let err = host.forward(&[&bad], 1, Positions::FromZero).unwrap_err();
        assert!(err.to_string().contains("row 0, token 1: id 50"), "{err}");
        let named = host
            .forward_named(&[&bad], Some(&[41]), 1, Positions::FromZero)
            .unwrap_err();
        assert!(named.to_string().contains("row 41, token 1"), "{named}");
        let empty = Encoded {
            ids: vec![],
            type_ids: vec![],
        };
        assert!(host.forward(&[&empty], 1, Positions::FromZero).is_err());
    }
}
