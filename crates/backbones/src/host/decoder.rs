//! Decoder inference on the host (LLaMA, Qwen2, Qwen3): the last real token's final hidden
//! state and a head's logits there, with the encoders' host kernels (see the parent module).
//!
//! The same function as `decoder/model.rs`, computed as the encoder pass computes its own:
//! rows packed (padding never computed), Q, K and V from one product and gate and up from
//! another, attention per sequence with the causal mask, RoPE in transformers' "rotate half"
//! layout with the angles rounded to f32 as `Rope::new` rounds them, and the last layer's
//! queries, output projection and feed-forward for the last token only (the one the features
//! keep).

use burn::nn::{Linear, RmsNorm};
use rayon::prelude::*;

use super::{HostLinear, ROWS_PER_TASK, host_vec};
use crate::decoder::Decoder;
use crate::error::{BackboneError, Result};
use crate::tokenize::Encoded;
use ueb_kernels::elem32 as kernels;
use ueb_kernels::gemm::{Operand, matmul};

/// RMSNorm's weight and epsilon.
#[derive(Debug, Clone)]
struct HostRms {
    gamma: Vec<f32>,
    eps: f64,
}

impl HostRms {
    fn new(n: &RmsNorm, what: &str) -> Result<Self> {
        Ok(Self {
            gamma: host_vec(n.gamma.val(), what)?,
            eps: n.epsilon,
        })
    }

    /// `x / √(mean(x²) + eps) · γ` over each `γ.len()`-wide row.
    fn apply_rows(&self, x: &mut [f32]) {
        let d = self.gamma.len().max(1);
        for row in x.chunks_exact_mut(d) {
            let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / d as f64;
            let inv = (1.0 / (ms + self.eps).sqrt()) as f32;
            row.iter_mut().zip(&self.gamma).for_each(|(v, g)| *v = *v * inv * *g);
        }
    }

    /// [`apply_rows`](Self::apply_rows) on a copy of `x`, rows in parallel.
    fn normed(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(x);
        let d = self.gamma.len().max(1);
        out.par_chunks_mut(d * ROWS_PER_TASK).for_each(|c| self.apply_rows(c));
    }
}

/// One decoder layer.
#[derive(Debug, Clone)]
struct HostDecoderLayer {
    /// q, k, v side by side: `[d, (H + 2·Hkv)·dh]`.
    qkv: HostLinear,
    o: HostLinear,
    q_norm: Option<HostRms>,
    k_norm: Option<HostRms>,
    /// gate and up side by side: `[d, 2I]`.
    gate_up: HostLinear,
    down: HostLinear,
    input_norm: HostRms,
    post_norm: HostRms,
}

/// A decoder stack (and optionally a head `[d, C]`) with its weights on the host.
#[derive(Debug, Clone)]
pub struct HostDecoder {
    embed: Vec<f32>,
    vocab: usize,
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    layers: Vec<HostDecoderLayer>,
    norm: HostRms,
    inv_freq: Vec<f32>,
    /// `[d, C]`, row-major, no bias.
    head: Option<Vec<f32>>,
}

impl HostDecoder {
    /// Copies the weights of `decoder` and of `head` (`[d, C]`: `score`'s weight, or the rows of
    /// `lm_head` a multiple-choice pass reads) to the host.
    ///
    /// # Errors
    /// A tensor that cannot be read back, or a head of another width.
    pub fn new(decoder: &Decoder, head: Option<Vec<f32>>) -> Result<Self> {
        let [vocab, dim] = decoder.embed_tokens.weight.val().dims();
        let first = decoder.layers.first().map(|l| &l.self_attn);
        let (heads, kv_heads) = first.map_or((1, 1), |a| (a.num_heads, a.num_kv_heads));
        let head_dim = decoder.head_dim;
        let layers = decoder
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let what = format!("layer {i}");
                let a = &l.self_attn;
                let norm = |n: &Option<RmsNorm>| n.as_ref().map(|n| HostRms::new(n, &what)).transpose();
                Ok(HostDecoderLayer {
                    qkv: HostLinear::from_linears(&[&a.q_proj, &a.k_proj, &a.v_proj], &what)?,
                    o: HostLinear::from_linears(&[&a.o_proj], &what)?,
                    q_norm: norm(&a.q_norm)?,
                    k_norm: norm(&a.k_norm)?,
                    gate_up: HostLinear::from_linears(&[&l.mlp.gate_proj, &l.mlp.up_proj], &what)?,
                    down: HostLinear::from_linears(&[&l.mlp.down_proj], &what)?,
                    input_norm: HostRms::new(&l.input_layernorm, &what)?,
                    post_norm: HostRms::new(&l.post_attention_layernorm, &what)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(h) = &head
            && (dim == 0 || h.len() % dim != 0)
        {
            return Err(BackboneError::Invalid(format!(
                "a head of {} values is not [{dim}, C]",
                h.len()
            )));
        }
        let half = head_dim / 2;
        // As `Rope::new`: θ^(2i/dh) in f32.
        let inv_freq = (0..half)
            .map(|i| 1.0 / (decoder.rope_theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Ok(Self {
            embed: host_vec(decoder.embed_tokens.weight.val(), "embed_tokens")?,
            vocab,
            dim,
            heads,
            kv_heads: kv_heads.max(1),
            head_dim,
            layers,
            norm: HostRms::new(&decoder.norm, "norm")?,
            inv_freq,
            head,
        })
    }

    /// The head `[d, C]` of a `Linear` without bias (`score`).
    ///
    /// # Errors
    /// A tensor that cannot be read back.
    pub fn linear_head(l: &Linear) -> Result<Vec<f32>> {
        host_vec(l.weight.val(), "the head")
    }

    /// Hidden size d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The last real token's final hidden state `[B, d]` and, with a head, its logits
    /// `[B, C]`. `names[b]` is how errors name row `b`.
    ///
    /// # Errors
    /// An empty row or a token id outside the vocabulary, naming the row.
    pub fn forward_named(&self, rows: &[&Encoded], names: Option<&[usize]>) -> Result<super::HostOutput> {
        let name = |b: usize| names.and_then(|n| n.get(b).copied()).unwrap_or(b);
        let d = self.dim;
        let len: Vec<usize> = rows.iter().map(|e| e.ids.len()).collect();
        if let Some(b) = len.iter().position(|&l| l == 0) {
            return Err(BackboneError::Invalid(format!("row {} has no tokens", name(b))));
        }
        let mut start = Vec::with_capacity(rows.len());
        let mut tokens = 0;
        for &l in &len {
            start.push(tokens);
            tokens += l;
        }
        let mut x = vec![0.0f32; tokens * d];
        for (b, enc) in rows.iter().enumerate() {
            for (j, &id) in enc.ids.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(BackboneError::Invalid(format!(
                        "row {}, token {j}: id {id} is outside the model's {} ids (does tokenizer.json belong to this model?)",
                        name(b),
                        self.vocab
                    )));
                }
                x[(start[b] + j) * d..(start[b] + j + 1) * d].copy_from_slice(&self.embed[id * d..(id + 1) * d]);
            }
        }
        let n_layers = self.layers.len();
        let tables = RopeTables::new(len.iter().copied().max().unwrap_or(0), &self.inv_freq);
        let mut y = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            self.layer_forward(layer, &x, &start, &len, &tables, i + 1 == n_layers, &mut y)?;
            std::mem::swap(&mut x, &mut y);
        }
        // After the last layer x holds each row's last token; with no layers, pick them.
        let mut features = if n_layers == 0 {
            start
                .iter()
                .zip(&len)
                .flat_map(|(&s, &l)| x[(s + l - 1) * d..(s + l) * d].iter().copied())
                .collect()
        } else {
            x
        };
        self.norm.apply_rows(&mut features);
        let logits = match &self.head {
            Some(h) => {
                let c = h.len() / d.max(1);
                let mut z = vec![0.0f32; rows.len() * c];
                matmul(
                    &mut z,
                    c,
                    Operand::rows(&features, rows.len(), d, d),
                    Operand::rows(h, d, c, c),
                    1.0,
                    false,
                    false,
                )
                .map_err(|e| BackboneError::Invalid(e.to_string()))?;
                Some(z)
            }
            None => None,
        };
        Ok(super::HostOutput { features, logits })
    }

    /// One layer: `x` `[tokens, d]` → `y` `[tokens, d]`, or `[B, d]` (last tokens) when `last`.
    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: &HostDecoderLayer,
        x: &[f32],
        start: &[usize],
        len: &[usize],
        tables: &RopeTables,
        last: bool,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.dim;
        let tokens = x.len() / d.max(1);
        let (h, hkv, dh) = (self.heads, self.kv_heads, self.head_dim);
        let width = (h + 2 * hkv) * dh;
        let mut hn = Vec::new();
        l.input_norm.normed(x, &mut hn);
        let mut qkv = Vec::new();
        l.qkv.forward(&hn, tokens, &mut qkv)?;
        // Per-head norms (Qwen3), then RoPE on queries and keys, token by token.
        let positions: Vec<usize> = start.iter().zip(len).flat_map(|(_, &n)| 0..n).collect();
        qkv.par_chunks_mut(width)
            .zip(positions.par_iter())
            .for_each(|(row, &p)| {
                let (q, rest) = row.split_at_mut(h * dh);
                let k = &mut rest[..hkv * dh];
                for (part, norm) in [(q, &l.q_norm), (k, &l.k_norm)] {
                    if let Some(n) = norm {
                        n.apply_rows(part);
                    }
                    for head in part.chunks_exact_mut(dh) {
                        tables.rotate(head, p);
                    }
                }
            });
        // Attention, per sequence; queries: every token, or the last when `last`.
        let q_of: Vec<(usize, usize)> = start
            .iter()
            .zip(len)
            .map(|(&s, &n)| if last { (s + n - 1, 1) } else { (s, n) })
            .collect();
        let q_rows: usize = q_of.iter().map(|q| q.1).sum();
        let mut ctx = vec![0.0f32; q_rows * h * dh];
        let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(q_of.len());
        let mut rest = &mut ctx[..];
        for (b, &(_, nq)) in q_of.iter().enumerate() {
            let (blk, tail) = rest.split_at_mut(nq * h * dh);
            blocks.push((b, blk));
            rest = tail;
        }
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        let group = (h / hkv).max(1);
        let qkv_ref = &qkv;
        blocks.into_par_iter().try_for_each(|(b, out)| -> Result<()> {
            let (q0, nq) = q_of[b];
            let (k0, nk) = (start[b], len[b]);
            // Query row r sits at position first_pos + r.
            let first_pos = q0 - k0;
            let mut scores = vec![0.0f32; nq * nk];
            for head in 0..h {
                let kv = head / group;
                let q = Operand::rows(&qkv_ref[q0 * width + head * dh..], nq, dh, width);
                let k = Operand::rows(&qkv_ref[k0 * width + (h + kv) * dh..], nk, dh, width);
                let v = Operand::rows(&qkv_ref[k0 * width + (h + hkv + kv) * dh..], nk, dh, width);
                matmul(&mut scores, nk, q, k.t(), scale, false, false)
                    .map_err(|e| BackboneError::Invalid(e.to_string()))?;
                for (r, row) in scores.chunks_exact_mut(nk).enumerate() {
                    // The causal mask: later keys get exactly zero weight, as `MASKED` gives.
                    row[first_pos + r + 1..].fill(f32::NEG_INFINITY);
                }
                kernels::softmax_rows(&mut scores, nk);
                matmul(
                    &mut out[head * dh..],
                    h * dh,
                    Operand::rows(&scores, nq, nk, nk),
                    v,
                    1.0,
                    false,
                    false,
                )
                .map_err(|e| BackboneError::Invalid(e.to_string()))?;
            }
            Ok(())
        })?;
        // Output projection and residual, at the query rows.
        let mut a = Vec::new();
        l.o.forward(&ctx, q_rows, &mut a)?;
        let mut r = 0;
        for &(q0, nq) in &q_of {
            a[r * d..(r + nq) * d]
                .iter_mut()
                .zip(&x[q0 * d..(q0 + nq) * d])
                .for_each(|(v, xv)| *v += xv);
            r += nq;
        }
        // SwiGLU feed-forward and residual.
        l.post_norm.normed(&a, &mut hn);
        let mut gu = Vec::new();
        l.gate_up.forward(&hn, q_rows, &mut gu)?;
        let inter = l.down.d_in;
        let mut m = vec![0.0f32; q_rows * inter];
        m.par_chunks_mut(inter * ROWS_PER_TASK)
            .zip(gu.par_chunks(2 * inter * ROWS_PER_TASK))
            .for_each(|(mc, gc)| {
                for (mr, gr) in mc.chunks_exact_mut(inter).zip(gc.chunks_exact(2 * inter)) {
                    let (g, u) = gr.split_at(inter);
                    for ((o, &g), &u) in mr.iter_mut().zip(g).zip(u) {
                        *o = g / (1.0 + kernels::exp(-g)) * u;
                    }
                }
            });
        l.down.product(&m, q_rows, y)?;
        y.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(a.par_chunks(d * ROWS_PER_TASK))
            .for_each(|(yc, ac)| {
                for (v, r) in yc.iter_mut().zip(ac) {
                    *v += *r;
                }
            });
        let bias = &l.down.b;
        if bias.iter().any(|&v| v != 0.0) {
            y.par_chunks_mut(d * ROWS_PER_TASK)
                .for_each(|c| kernels::add_bias(c, bias));
        }
        Ok(())
    }
}

/// RoPE's cosines and sines for positions `0..len`, `[len, dh/2]`: the angle `p·f` rounded to
/// f32 and its cosine and sine to f32, as `Rope::new` computes them.
struct RopeTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTables {
    fn new(len: usize, inv_freq: &[f32]) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for &f in inv_freq {
                let angle = f64::from(p as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin, half }
    }

    /// One head at position `p`: `x·cos + rotate_half(x)·sin`.
    fn rotate(&self, x: &mut [f32], p: usize) {
        let half = self.half;
        let (c, s) = (&self.cos[p * half..(p + 1) * half], &self.sin[p * half..(p + 1) * half]);
        for i in 0..half {
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * c[i] + (-b) * s[i];
            x[i + half] = b * c[i] + a * s[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::decoder::{DecoderConfig, last_token};
    use crate::readback::to_host;
    use crate::tokenize::{Positions, collate};

    /// The host pass against the burn modules on flex: LLaMA with grouped-query attention,
    /// Qwen2 (biases), Qwen3 (per-head norms), in a padded batch of uneven rows.
    #[test]
    fn host_decoder_matches_the_burn_modules() {
        let device = Device::flex();
        for (family, extra) in [
            ("llama", r#""num_key_value_heads": 2"#),
            ("qwen2", r#""num_key_value_heads": 4"#),
            ("qwen3", r#""num_key_value_heads": 2, "head_dim": 8"#),
        ] {
            let json = format!(
                r#"{{"model_type": "{family}", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 44,
                "num_hidden_layers": 2, "num_attention_heads": 4, "rope_theta": 10000.0,
                "tie_word_embeddings": false, "pad_token_id": 0, {extra}}}"#
            );
            let cfg = DecoderConfig::from_json(&json, std::path::Path::new("c.json")).unwrap();
            let model = cfg.init_classifier(&device);
            let rows: Vec<Encoded> = [5usize, 1, 9, 3]
                .iter()
                .enumerate()
                .map(|(i, &l)| Encoded {
                    ids: (0..l).map(|j| (1 + (i * 11 + j * 5) % 39) as u32).collect(),
                    type_ids: vec![0; l],
                })
                .collect();
            let order: Vec<usize> = (0..rows.len()).collect();
            let input = collate(&rows, &order, 0, Positions::FromZero, &device);
            let want = to_host(last_token(model.model.forward(&input), &input.lengths)).unwrap();
            let want_z = to_host(model.forward(&input).logits).unwrap();
            let host = HostDecoder::new(&model.model, Some(HostDecoder::linear_head(&model.score).unwrap())).unwrap();
            let refs: Vec<&Encoded> = rows.iter().collect();
            let got = host.forward_named(&refs, None).unwrap();
            let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert_eq!(got.features.len(), want.len());
            assert!(
                diff(&got.features, &want) < 1e-4,
                "{family}: {}",
                diff(&got.features, &want)
            );
            let z = got.logits.unwrap();
            assert!(diff(&z, &want_z) < 1e-4, "{family}: logits {}", diff(&z, &want_z));
        }
    }
}
