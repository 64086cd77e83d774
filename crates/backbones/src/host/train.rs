//! Fine-tuning a BERT-family sequence classifier on the host: the forward pass with its saved
//! activations, the backward pass and AdamW, for `full` and `lora` fine-tuning on a CPU.
//!
//! Why: burn 0.22's autodiff on its CPU backends runs each element-wise operation and each
//! backward node as its own single-threaded pass, and a fine-tuning step ran at 0.41–0.44× of
//! PyTorch's speed (decision EN13). The function is the burn modules' (`encoder.rs`), the one
//! definition: the tests check this engine's gradients against burn's autodiff and against a
//! committed PyTorch/peft fixture. What this engine does differently, and why it is the same
//! function:
//!
//! - the batch is packed: each row's real tokens only, so padding is never computed (a padded
//!   key has exactly zero weight in the masked softmax and padded queries never reach the loss);
//! - the last layer computes queries, the output projection and the feed-forward for the first
//!   token only, the one the head reads (keys and values still come from every token);
//! - Q, K and V come from one product, and LoRA's `x·A` for the three targets from another;
//! - dropout masks come from a counter-based hash of (seed, step, site, element), so the
//!   backward pass recomputes them instead of storing them, and they are the same whatever the
//!   thread count (deterministic per seed);
//! - frozen weights get no gradient product (LoRA's base weights, as peft's do not).
//!
//! AdamW and the global gradient-norm clipping follow PyTorch (`torch.optim.AdamW`,
//! `clip_grad_norm_`), which transformers' Trainer uses.

use rayon::prelude::*;

use super::{EmbeddingTables, Packed};
use crate::config::{Family, HiddenAct};
use crate::encoder::{Encoder, SequenceClassifier, SequenceHead};
use crate::error::{BackboneError, Result};
use crate::finetune::FinetuneMode;
use crate::readback::to_host;
use crate::tokenize::{Encoded, Positions};
use ueb_kernels::elem32 as kernels;
use ueb_kernels::gemm::{Operand, matmul};

/// Products with fewer multiply–adds than this run on one thread.
const PARALLEL_MACS: usize = 1 << 22;
/// Rows per parallel task of the element passes.
const ROWS_PER_TASK: usize = 16;

fn shape_err(e: ueb_kernels::gemm::ShapeError) -> BackboneError {
    BackboneError::Invalid(e.to_string())
}

/// `dst (+)= scale · a · b` with the workspace's checked product.
fn mm(
    dst: &mut [f32],
    dst_stride: usize,
    a: Operand<'_, f32>,
    b: Operand<'_, f32>,
    scale: f32,
    accumulate: bool,
) -> Result<()> {
    let parallel = a.rows * a.cols * b.cols >= PARALLEL_MACS;
    matmul(dst, dst_stride, a, b, scale, accumulate, parallel).map_err(shape_err)
}

fn rows(data: &[f32], r: usize, c: usize) -> Operand<'_, f32> {
    Operand::rows(data, r, c, c)
}

/// One parameter tensor: its values and, when it trains, its gradient and AdamW moments.
#[derive(Debug, Clone, Default)]
struct Param {
    v: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    s: Vec<f32>,
    train: bool,
    decay: bool,
}

impl Param {
    fn new(v: Vec<f32>, train: bool, decay: bool) -> Self {
        let n = if train { v.len() } else { 0 };
        Self {
            g: vec![0.0; n],
            m: vec![0.0; n],
            s: vec![0.0; n],
            v,
            train,
            decay,
        }
    }
}

fn host_vec<const D: usize>(t: burn::tensor::Tensor<D>, what: &str) -> Result<Vec<f32>> {
    to_host(t).map_err(|e| BackboneError::Invalid(format!("{what}: {e}")))
}

/// A linear layer, `y = x·w + b`, `w` row-major `[d_in, d_out]` (burn's layout).
#[derive(Debug, Clone)]
struct Lin {
    w: Param,
    b: Param,
    d_in: usize,
    d_out: usize,
}

impl Lin {
    fn from_linears(parts: &[&burn::nn::Linear], train: bool, what: &str) -> Result<Self> {
        let (w, b, d_in, d_out) = super::fused_weights(parts, what)?;
        Ok(Self {
            w: Param::new(w, train, true),
            b: Param::new(b, train, false),
            d_in,
            d_out,
        })
    }

    /// `out = x·w + b` for `n` rows.
    fn forward(&self, x: &[f32], n: usize, out: &mut Vec<f32>) -> Result<()> {
        out.resize(n * self.d_out, 0.0);
        mm(
            out,
            self.d_out,
            rows(x, n, self.d_in),
            rows(&self.w.v, self.d_in, self.d_out),
            1.0,
            false,
        )?;
        let d = self.d_out.max(1);
        out.par_chunks_mut(d * ROWS_PER_TASK)
            .for_each(|c| kernels::add_bias(c, &self.b.v));
        Ok(())
    }

    /// Gradients of `w` and `b` from the input `x` and the output gradient `dy` (`n` rows),
    /// accumulated; `dx = dy·wᵀ` when asked.
    fn backward(&mut self, x: &[f32], dy: &[f32], n: usize, dx: Option<&mut Vec<f32>>) -> Result<()> {
        let (di, dout) = (self.d_in, self.d_out);
        if self.w.train {
            mm(&mut self.w.g, dout, rows(x, n, di).t(), rows(dy, n, dout), 1.0, true)?;
            col_sums_into(&mut self.b.g, dy, dout);
        }
        if let Some(dx) = dx {
            dx.resize(n * di, 0.0);
            mm(dx, di, rows(dy, n, dout), rows(&self.w.v, di, dout).t(), 1.0, false)?;
        }
        Ok(())
    }
}

/// `acc[j] += Σ_i m[i, j]` over the `width`-wide rows of `m`. Partial sums per block of rows
/// are collected in order and added in that order, so the result does not depend on how rayon
/// split the work (a run is reproducible bit for bit).
fn col_sums_into(acc: &mut [f32], m: &[f32], width: usize) {
    let w = width.max(1);
    let partial: Vec<Vec<f64>> = m
        .par_chunks(w * 256)
        .map(|c| {
            let mut s = vec![0.0f64; w];
            for r in c.chunks_exact(w) {
                for (a, &x) in s.iter_mut().zip(r) {
                    *a += f64::from(x);
                }
            }
            s
        })
        .collect();
    for (j, a) in acc.iter_mut().enumerate() {
        *a += partial.iter().map(|p| p[j]).sum::<f64>() as f32;
    }
}

/// LayerNorm's parameters.
#[derive(Debug, Clone)]
struct Norm {
    gamma: Param,
    beta: Param,
    eps: f64,
}

impl Norm {
    fn from_layer_norm(ln: &burn::nn::LayerNorm, eps: f64, train: bool, what: &str) -> Result<Self> {
        let (gamma, beta) = super::layer_norm_weights(ln, what)?;
        Ok(Self {
            gamma: Param::new(gamma, train, false),
            beta: Param::new(beta, train, false),
            eps,
        })
    }

    /// `x ← LayerNorm(x)` row by row, keeping `x̂` and `1/σ` for the backward pass.
    fn forward(&self, x: &mut [f32], xhat: &mut Vec<f32>, rstd: &mut Vec<f32>) {
        let d = self.gamma.v.len().max(1);
        let n = x.len() / d;
        xhat.resize(x.len(), 0.0);
        rstd.resize(n, 0.0);
        x.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(xhat.par_chunks_mut(d * ROWS_PER_TASK))
            .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|((xc, hc), rc)| {
                for ((row, h), r) in xc.chunks_exact_mut(d).zip(hc.chunks_exact_mut(d)).zip(rc) {
                    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
                    let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / d as f64;
                    let inv = 1.0 / (var + self.eps).sqrt();
                    *r = inv as f32;
                    for (((v, hv), g), b) in row.iter_mut().zip(h.iter_mut()).zip(&self.gamma.v).zip(&self.beta.v) {
                        let xh = ((f64::from(*v) - mean) * inv) as f32;
                        *hv = xh;
                        *v = xh * *g + *b;
                    }
                }
            });
    }

    /// The gradient of LayerNorm's input from its output's, in place over `dy`; accumulates
    /// γ's and β's gradients when they train.
    fn backward(&mut self, dy: &mut [f32], xhat: &[f32], rstd: &[f32]) {
        let d = self.gamma.v.len().max(1);
        if self.gamma.train {
            // Partials in order, then summed in order: reproducible whatever the split.
            let parts: Vec<(Vec<f64>, Vec<f64>)> = dy
                .par_chunks(d * 256)
                .zip(xhat.par_chunks(d * 256))
                .map(|(dc, hc)| {
                    let mut g = vec![0.0f64; d];
                    let mut b = vec![0.0f64; d];
                    for (dr, hr) in dc.chunks_exact(d).zip(hc.chunks_exact(d)) {
                        for j in 0..d {
                            g[j] += f64::from(dr[j] * hr[j]);
                            b[j] += f64::from(dr[j]);
                        }
                    }
                    (g, b)
                })
                .collect();
            let gg: Vec<f64> = (0..d).map(|j| parts.iter().map(|p| p.0[j]).sum()).collect();
            let gb: Vec<f64> = (0..d).map(|j| parts.iter().map(|p| p.1[j]).sum()).collect();
            self.gamma.g.iter_mut().zip(gg).for_each(|(a, b)| *a += b as f32);
            self.beta.g.iter_mut().zip(gb).for_each(|(a, b)| *a += b as f32);
        }
        let gamma = &self.gamma.v;
        dy.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(xhat.par_chunks(d * ROWS_PER_TASK))
            .zip(rstd.par_chunks(ROWS_PER_TASK))
            .for_each(|((dc, hc), rc)| {
                for ((dr, hr), &r) in dc.chunks_exact_mut(d).zip(hc.chunks_exact(d)).zip(rc) {
                    let (mut s1, mut s2) = (0.0f64, 0.0f64);
                    for j in 0..d {
                        let g = f64::from(dr[j] * gamma[j]);
                        s1 += g;
                        s2 += g * f64::from(hr[j]);
                    }
                    let (m1, m2) = ((s1 / d as f64) as f32, (s2 / d as f64) as f32);
                    for j in 0..d {
                        dr[j] = r * (dr[j] * gamma[j] - m1 - hr[j] * m2);
                    }
                }
            });
    }
}

/// LoRA factors of one target: `Δw = scale · a · b`, `a` `[d_in, r]`, `b` `[r, d_out]`.
#[derive(Debug, Clone)]
struct Adapter {
    a: Param,
    b: Param,
}

/// Which projection of Q, K and V (their column block in the fused product).
const TARGETS: [&str; 3] = ["query", "key", "value"];

/// One transformer layer.
#[derive(Debug, Clone)]
struct Layer {
    /// Q, K, V side by side: `[d, 3d]`.
    qkv: Lin,
    /// LoRA on query, key, value (in that order), where targeted.
    lora: [Option<Adapter>; 3],
    heads: usize,
    out: Lin,
    norm1: Norm,
    inter: Lin,
    act: HiddenAct,
    down: Lin,
    norm2: Norm,
}

/// What a layer's forward pass keeps for its backward pass.
#[derive(Debug, Clone, Default)]
struct LayerSaved {
    /// LoRA's `x·a` for the targets, `[tokens, r]` each.
    u: [Vec<f32>; 3],
    qkv: Vec<f32>,
    /// Softmax probabilities (before dropout), per sequence and head, `[nq, nk]` blocks.
    probs: Vec<f32>,
    /// Offset of each sequence's block in `probs`.
    prob_at: Vec<usize>,
    ctx: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    a: Vec<f32>,
    h: Vec<f32>,
    g: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
}

/// The sequence head (see `SequenceHead`).
#[derive(Debug, Clone)]
struct Head {
    dense: Lin,
    out: Lin,
    family: Family,
}

/// Dropout probabilities of the model's sites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropouts {
    /// After the embeddings and each sub-layer's output projection.
    pub hidden: f64,
    /// On the attention probabilities.
    pub attention: f64,
    /// In the classification head.
    pub classifier: f64,
}

impl Dropouts {
    /// The probabilities the burn model's `Dropout` modules hold.
    pub fn of(model: &SequenceClassifier) -> Self {
        let attention = model
            .backbone
            .encoder
            .layer
            .first()
            .map_or(0.0, |l| l.attention.self_attn.dropout.prob);
        Self {
            hidden: model.backbone.embeddings.dropout.prob,
            attention,
            classifier: model.head.dropout.prob,
        }
    }

    /// No dropout anywhere.
    pub fn none() -> Self {
        Self {
            hidden: 0.0,
            attention: 0.0,
            classifier: 0.0,
        }
    }
}

/// A dropout site's mask: element `i` is kept when the hash of (key, i) clears the threshold.
#[derive(Debug, Clone, Copy)]
struct Mask {
    key: u64,
    threshold: u32,
    scale: f32,
    on: bool,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Mask {
    fn new(p: f64, key: u64, train: bool) -> Self {
        let on = train && p > 0.0;
        Self {
            key,
            threshold: (p.clamp(0.0, 1.0) * 4_294_967_296.0).min(4_294_967_295.0) as u32,
            scale: if p < 1.0 { (1.0 / (1.0 - p)) as f32 } else { 0.0 },
            on,
        }
    }

    /// The factor element `i` is multiplied by: 0 or 1/(1 − p).
    #[inline(always)]
    fn factor(&self, i: u64) -> f32 {
        let h = (splitmix(self.key ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 32) as u32;
        if h >= self.threshold { self.scale } else { 0.0 }
    }

    /// `x[j] *= factor(first + j)`.
    fn apply(&self, x: &mut [f32], first: u64) {
        if self.on {
            for (j, v) in x.iter_mut().enumerate() {
                *v *= self.factor(first + j as u64);
            }
        }
    }

    /// [`apply`](Self::apply) over a buffer, in parallel.
    fn apply_all(&self, x: &mut [f32]) {
        if self.on {
            let chunk = 4096;
            x.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(c, v)| self.apply(v, (c * chunk) as u64));
        }
    }
}

/// Dropout sites of one step; each gets its own key.
#[derive(Debug, Clone, Copy)]
enum Site {
    Embeddings,
    Attention(usize),
    AttnOut(usize),
    FfnOut(usize),
    HeadIn,
    HeadMid,
}

impl Site {
    fn code(self) -> u64 {
        match self {
            Site::Embeddings => 1,
            Site::HeadIn => 2,
            Site::HeadMid => 3,
            Site::Attention(l) => 16 + 4 * l as u64,
            Site::AttnOut(l) => 17 + 4 * l as u64,
            Site::FfnOut(l) => 18 + 4 * l as u64,
        }
    }
}

/// Everything one forward pass keeps.
#[derive(Debug, Clone, Default)]
struct Saved {
    packed: Packed,
    /// Embedding rows' (word, position, type) indices, for the embeddings' gradient.
    ids: Vec<(usize, usize, usize)>,
    emb_xhat: Vec<f32>,
    emb_rstd: Vec<f32>,
    /// The embeddings after LayerNorm and dropout (the projection's input, ELECTRA).
    emb: Vec<f32>,
    /// Each layer's input; `xs[L]` is the last layer's output (first tokens).
    xs: Vec<Vec<f32>>,
    layers: Vec<LayerSaved>,
    /// Head: its input after dropout, the dense output before and after the activation, that
    /// after dropout.
    head_in: Vec<f32>,
    head_pre: Vec<f32>,
    head_act: Vec<f32>,
    head_mid: Vec<f32>,
    logits: Vec<f32>,
}

/// An encoder classifier's parameters on the host with their gradients and AdamW state:
/// `full` or `lora` fine-tuning (LoRA on any of query, key and value, the head trained fully).
#[derive(Debug, Clone)]
pub struct HostTrainer {
    word: Param,
    position: Param,
    token_type: Param,
    width: usize,
    emb_norm: Norm,
    project: Option<Lin>,
    layers: Vec<Layer>,
    dim: usize,
    head: Head,
    lora_scale: f32,
    rank: usize,
    dropout: Dropouts,
    seed: u64,
    /// Forward passes so far (keys the dropout masks).
    passes: u64,
    /// AdamW steps so far.
    adam_steps: i32,
    /// The current pass's dropout key, and whether it trains (dropout on).
    key: u64,
    train: bool,
    saved: Saved,
}

/// AdamW's settings for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate of this step.
    pub lr: f64,
    /// Decoupled weight decay (not on biases, LayerNorms).
    pub weight_decay: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Global gradient-norm clipping.
    pub max_grad_norm: Option<f64>,
}

impl HostTrainer {
    /// Copies `model`'s weights to the host and prepares `mode` (`full`, or `lora` on query,
    /// key and value); LoRA's `a` is drawn as peft draws it (uniform with variance
    /// 1/(3·fan_in), from `seed`), `b` is zero. `dropout` gives the sites' probabilities and
    /// `seed` their masks.
    ///
    /// # Errors
    /// `frozen`, a LoRA target other than query, key and value, or a tensor that cannot be
    /// read back.
    pub fn new(model: &SequenceClassifier, mode: &FinetuneMode, dropout: Dropouts, seed: u64) -> Result<Self> {
        let (full, lora) = match mode {
            FinetuneMode::Full => (true, None),
            FinetuneMode::Lora { r, alpha, targets } => {
                let mut on = [false; 3];
                for t in targets {
                    match TARGETS.iter().position(|n| n == t) {
                        Some(i) => on[i] = true,
                        None => {
                            return Err(BackboneError::Invalid(format!(
                                "the host trainer puts LoRA on query, key and value only, not `{t}`"
                            )));
                        }
                    }
                }
                (false, Some((*r, *alpha, on)))
            }
            FinetuneMode::Frozen => {
                return Err(BackboneError::Invalid(
                    "frozen fine-tuning trains the head on cached features".into(),
                ));
            }
        };
        let enc: &Encoder = &model.backbone;
        let eps = enc.layer_norm_eps;
        let emb = &enc.embeddings;
        let [_, width] = emb.word_embeddings.weight.val().dims();
        let mut rng = ueb_rng::Xoshiro256::new(seed, 0x6c6f_7261);
        let mut layers = Vec::with_capacity(enc.encoder.layer.len());
        for (i, l) in enc.encoder.layer.iter().enumerate() {
            let what = format!("layer {i}");
            let sa = &l.attention.self_attn;
            let qkv = Lin::from_linears(&[&sa.query, &sa.key, &sa.value], full, &what)?;
            let d = qkv.d_in;
            let dq = qkv.d_out / 3;
            let mut adapters: [Option<Adapter>; 3] = [None, None, None];
            if let Some((r, _, on)) = lora {
                // peft: kaiming_uniform(a = √5) on lora_A, i.e. U(±1/√fan_in); lora_B zero.
                let bound = 1.0 / (d as f64).sqrt();
                for (t, slot) in adapters.iter_mut().enumerate() {
                    if on[t] {
                        let a: Vec<f32> = (0..d * r)
                            .map(|_| ((2.0 * ueb_rng::Rng64::unit(&mut rng) - 1.0) * bound) as f32)
                            .collect();
                        *slot = Some(Adapter {
                            a: Param::new(a, true, true),
                            b: Param::new(vec![0.0; r * dq], true, true),
                        });
                    }
                }
            }
            layers.push(Layer {
                qkv,
                lora: adapters,
                heads: sa.num_heads,
                out: Lin::from_linears(&[&l.attention.output.dense], full, &what)?,
                norm1: Norm::from_layer_norm(&l.attention.output.layer_norm, eps, full, &what)?,
                inter: Lin::from_linears(&[&l.intermediate.dense], full, &what)?,
                act: l.intermediate.act,
                down: Lin::from_linears(&[&l.output.dense], full, &what)?,
                norm2: Norm::from_layer_norm(&l.output.layer_norm, eps, full, &what)?,
            });
        }
        let project = match &enc.embeddings_project {
            Some(p) => Some(Lin::from_linears(&[p], full, "embeddings_project")?),
            None => None,
        };
        let dim = project.as_ref().map_or(width, |p| p.d_out);
        let h: &SequenceHead = &model.head;
        let (rank, lora_scale) = lora.map_or((0, 0.0), |(r, alpha, _)| (r, (alpha / r as f64) as f32));
        Ok(Self {
            word: Param::new(
                host_vec(emb.word_embeddings.weight.val(), "word embeddings")?,
                full,
                true,
            ),
            position: Param::new(
                host_vec(emb.position_embeddings.weight.val(), "position embeddings")?,
                full,
                true,
            ),
            token_type: Param::new(
                host_vec(emb.token_type_embeddings.weight.val(), "token-type embeddings")?,
                full,
                true,
            ),
            width,
            emb_norm: Norm::from_layer_norm(&emb.layer_norm, eps, full, "embeddings")?,
            project,
            layers,
            dim,
            head: Head {
                dense: Lin::from_linears(&[&h.dense], true, "the head")?,
                out: Lin::from_linears(&[&h.out_proj], true, "the head")?,
                family: h.family,
            },
            lora_scale,
            rank,
            dropout,
            seed,
            passes: 0,
            adam_steps: 0,
            key: 0,
            train: false,
            saved: Saved::default(),
        })
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.head.out.d_out
    }

    /// Scalars that train.
    pub fn trainable_parameters(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_, p| {
            if p.train {
                n += p.v.len();
            }
        });
        n
    }

    /// Replaces the LoRA factors of `target` (`query`, `key` or `value`) in layer `layer`:
    /// `a` `[d_in, r]` and `b` `[r, d_out]`, row-major (peft's `lora_A.weight` and
    /// `lora_B.weight`, transposed).
    ///
    /// # Errors
    /// No such adapter, or factors of the wrong size.
    pub fn set_lora(&mut self, layer: usize, target: &str, a: Vec<f32>, b: Vec<f32>) -> Result<()> {
        let t = TARGETS.iter().position(|n| *n == target);
        let ad = t
            .and_then(|t| self.layers.get_mut(layer).and_then(|l| l.lora[t].as_mut()))
            .ok_or_else(|| BackboneError::Invalid(format!("layer {layer} has no LoRA adapter on `{target}`")))?;
        if a.len() != ad.a.v.len() || b.len() != ad.b.v.len() {
            return Err(BackboneError::Invalid(format!(
                "LoRA factors of layer {layer} `{target}` need {} and {} values, not {} and {}",
                ad.a.v.len(),
                ad.b.v.len(),
                a.len(),
                b.len()
            )));
        }
        ad.a.v = a;
        ad.b.v = b;
        Ok(())
    }

    /// Every parameter with its name (burn's key tree; `…query.lora_a`, `…query.lora_b` for
    /// the adapters), Q, K and V apart.
    fn visit(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("backbone.embeddings.word_embeddings.weight", &self.word);
        f("backbone.embeddings.position_embeddings.weight", &self.position);
        f("backbone.embeddings.token_type_embeddings.weight", &self.token_type);
        f("backbone.embeddings.layer_norm.gamma", &self.emb_norm.gamma);
        f("backbone.embeddings.layer_norm.beta", &self.emb_norm.beta);
        if let Some(p) = &self.project {
            f("backbone.embeddings_project.weight", &p.w);
            f("backbone.embeddings_project.bias", &p.b);
        }
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("backbone.encoder.layer.{i}");
            f(&format!("{p}.attention.self_attn.qkv.weight"), &l.qkv.w);
            f(&format!("{p}.attention.self_attn.qkv.bias"), &l.qkv.b);
            for (t, ad) in l.lora.iter().enumerate() {
                if let Some(ad) = ad {
                    f(&format!("{p}.attention.self_attn.{}.lora_a", TARGETS[t]), &ad.a);
                    f(&format!("{p}.attention.self_attn.{}.lora_b", TARGETS[t]), &ad.b);
                }
            }
            f(&format!("{p}.attention.output.dense.weight"), &l.out.w);
            f(&format!("{p}.attention.output.dense.bias"), &l.out.b);
            f(&format!("{p}.attention.output.layer_norm.gamma"), &l.norm1.gamma);
            f(&format!("{p}.attention.output.layer_norm.beta"), &l.norm1.beta);
            f(&format!("{p}.intermediate.dense.weight"), &l.inter.w);
            f(&format!("{p}.intermediate.dense.bias"), &l.inter.b);
            f(&format!("{p}.output.dense.weight"), &l.down.w);
            f(&format!("{p}.output.dense.bias"), &l.down.b);
            f(&format!("{p}.output.layer_norm.gamma"), &l.norm2.gamma);
            f(&format!("{p}.output.layer_norm.beta"), &l.norm2.beta);
        }
        f("head.dense.weight", &self.head.dense.w);
        f("head.dense.bias", &self.head.dense.b);
        f("head.out_proj.weight", &self.head.out.w);
        f("head.out_proj.bias", &self.head.out.b);
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v: Vec<&mut Param> = vec![&mut self.word, &mut self.position, &mut self.token_type];
        v.push(&mut self.emb_norm.gamma);
        v.push(&mut self.emb_norm.beta);
        if let Some(p) = &mut self.project {
            v.push(&mut p.w);
            v.push(&mut p.b);
        }
        for l in &mut self.layers {
            v.push(&mut l.qkv.w);
            v.push(&mut l.qkv.b);
            for ad in l.lora.iter_mut().flatten() {
                v.push(&mut ad.a);
                v.push(&mut ad.b);
            }
            v.extend([
                &mut l.out.w,
                &mut l.out.b,
                &mut l.norm1.gamma,
                &mut l.norm1.beta,
                &mut l.inter.w,
                &mut l.inter.b,
                &mut l.down.w,
                &mut l.down.b,
                &mut l.norm2.gamma,
                &mut l.norm2.beta,
            ]);
        }
        v.extend([
            &mut self.head.dense.w,
            &mut self.head.dense.b,
            &mut self.head.out.w,
            &mut self.head.out.b,
        ]);
        v
    }

    /// The gradients accumulated so far, by name (burn's key tree; the fused Q, K, V weight is
    /// split into `…query.weight`, `…key.weight`, `…value.weight` and their biases), for the
    /// trainable parameters only.
    pub fn gradients(&self) -> Vec<(String, Vec<f32>)> {
        self.named(|p| &p.g)
    }

    /// The trainable parameters' values, named as [`gradients`](Self::gradients) names them.
    pub fn values(&self) -> Vec<(String, Vec<f32>)> {
        self.named(|p| &p.v)
    }

    fn named(&self, pick: fn(&Param) -> &Vec<f32>) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        self.visit(&mut |name, p| {
            if !p.train {
                return;
            }
            let x = pick(p);
            if let Some(prefix) = name.strip_suffix("qkv.weight") {
                let d3 = x.len() / self.dim.max(1);
                let d = d3 / 3;
                for (t, target) in TARGETS.iter().enumerate() {
                    let g: Vec<f32> = x
                        .chunks(d3)
                        .flat_map(|r| r[t * d..(t + 1) * d].iter().copied())
                        .collect();
                    out.push((format!("{prefix}{target}.weight"), g));
                }
            } else if let Some(prefix) = name.strip_suffix("qkv.bias") {
                let d = x.len() / 3;
                for (t, target) in TARGETS.iter().enumerate() {
                    out.push((format!("{prefix}{target}.bias"), x[t * d..(t + 1) * d].to_vec()));
                }
            } else {
                out.push((name.to_string(), x.clone()));
            }
        });
        out
    }

    /// Forward and backward over `batch` with gold `labels`, dropout on (training): accumulates
    /// the gradient of `scale · mean cross-entropy` and returns the mean cross-entropy.
    ///
    /// # Errors
    /// An empty row, a token outside the model's tables (naming the row), a label out of
    /// range, or a non-finite loss.
    pub fn accumulate(
        &mut self,
        batch: &[&Encoded],
        names: Option<&[usize]>,
        labels: &[usize],
        pad_id: u32,
        positions: Positions,
        scale: f64,
    ) -> Result<f64> {
        if labels.len() != batch.len() {
            return Err(BackboneError::Invalid(format!(
                "{} rows but {} labels",
                batch.len(),
                labels.len()
            )));
        }
        let c = self.num_classes();
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= c) {
            return Err(BackboneError::Invalid(format!(
                "row {}: label {l} is out of range for {c} classes",
                names.and_then(|n| n.get(i).copied()).unwrap_or(i)
            )));
        }
        self.forward(batch, names, pad_id, positions, true)?;
        let z = &self.saved.logits;
        let nb = batch.len();
        let mut dz = vec![0.0f32; nb * c];
        let mut loss = 0.0f64;
        for ((row, &y), d) in z.chunks(c).zip(labels).zip(dz.chunks_mut(c)) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            loss += m + sum.ln() - f64::from(row[y]);
            for (k, (dv, &v)) in d.iter_mut().zip(row).enumerate() {
                let p = (f64::from(v) - m).exp() / sum;
                *dv = ((p - f64::from(u8::from(k == y))) * scale / nb as f64) as f32;
            }
        }
        let loss = loss / nb as f64;
        if !loss.is_finite() {
            return Err(BackboneError::NonFinite("non-finite training loss".into()));
        }
        self.backward(&dz)?;
        Ok(loss)
    }

    /// Logits `[B, C]` of `batch` without dropout (evaluation).
    ///
    /// # Errors
    /// As [`accumulate`](Self::accumulate).
    pub fn logits(
        &mut self,
        batch: &[&Encoded],
        names: Option<&[usize]>,
        pad_id: u32,
        positions: Positions,
    ) -> Result<Vec<f32>> {
        self.forward(batch, names, pad_id, positions, false)?;
        Ok(std::mem::take(&mut self.saved.logits))
    }

    fn mask(&self, p: f64, site: Site) -> Mask {
        Mask::new(p, splitmix(self.key ^ splitmix(site.code())), self.train)
    }

    fn forward(
        &mut self,
        batch: &[&Encoded],
        names: Option<&[usize]>,
        pad_id: u32,
        positions: Positions,
        train: bool,
    ) -> Result<()> {
        let mut s = std::mem::take(&mut self.saved);
        let r = self.forward_into(batch, names, pad_id, positions, train, &mut s);
        self.saved = s;
        r
    }

    fn forward_into(
        &mut self,
        batch: &[&Encoded],
        names: Option<&[usize]>,
        pad_id: u32,
        positions: Positions,
        train: bool,
        s: &mut Saved,
    ) -> Result<()> {
        let nb = batch.len();
        let len: Vec<usize> = batch.iter().map(|e| e.ids.len().min(e.type_ids.len())).collect();
        if let Some(b) = len.iter().position(|&l| l == 0) {
            return Err(BackboneError::Invalid(format!(
                "row {} has no tokens",
                names.and_then(|n| n.get(b).copied()).unwrap_or(b)
            )));
        }
        let mut start = Vec::with_capacity(nb);
        let mut tokens = 0;
        for &l in &len {
            start.push(tokens);
            tokens += l;
        }
        s.packed = Packed { start, len, tokens };
        self.passes += 1;
        self.key = splitmix(self.seed ^ splitmix(self.passes));
        self.train = train;
        // Embeddings.
        let e = self.width;
        let mut x = Vec::new();
        EmbeddingTables {
            word: &self.word.v,
            position: &self.position.v,
            token_type: &self.token_type.v,
            width: e,
        }
        .sum(batch, names, &s.packed, pad_id, positions, &mut x, Some(&mut s.ids))?;
        self.emb_norm.forward(&mut x, &mut s.emb_xhat, &mut s.emb_rstd);
        self.mask(self.dropout.hidden, Site::Embeddings).apply_all(&mut x);
        let x0 = match &self.project {
            Some(p) => {
                let mut y = Vec::new();
                p.forward(&x, tokens, &mut y)?;
                s.emb = x;
                y
            }
            None => {
                s.emb.clear();
                x
            }
        };
        let n_layers = self.layers.len();
        s.xs.resize_with(n_layers + 1, Vec::new);
        s.layers.resize_with(n_layers, LayerSaved::default);
        s.xs[0] = x0;
        for i in 0..n_layers {
            let last = i + 1 == n_layers;
            let masks = [
                self.mask(self.dropout.attention, Site::Attention(i)),
                self.mask(self.dropout.hidden, Site::AttnOut(i)),
                self.mask(self.dropout.hidden, Site::FfnOut(i)),
            ];
            let (before, after) = s.xs.split_at_mut(i + 1);
            self.layers[i].forward(
                &before[i],
                &s.packed,
                last,
                self.lora_scale,
                self.rank,
                masks,
                &mut s.layers[i],
                &mut after[0],
            )?;
        }
        // Features: the first token of each row.
        let d = self.dim;
        let features: Vec<f32> = if n_layers == 0 {
            s.packed
                .start
                .iter()
                .flat_map(|&st| s.xs[0][st * d..(st + 1) * d].iter().copied())
                .collect()
        } else {
            s.xs[n_layers].clone()
        };
        // Head.
        let family = self.head.family;
        let mut hin = features;
        if family != Family::Bert {
            self.mask(self.dropout.classifier, Site::HeadIn).apply_all(&mut hin);
        }
        let mut pre = Vec::new();
        self.head.dense.forward(&hin, nb, &mut pre)?;
        let mut act = pre.clone();
        if family == Family::Electra {
            kernels::gelu_in_place(&mut act);
        } else {
            act.iter_mut().for_each(|v| *v = libm::tanhf(*v));
        }
        let mut mid = act.clone();
        self.mask(self.dropout.classifier, Site::HeadMid).apply_all(&mut mid);
        let mut z = Vec::new();
        self.head.out.forward(&mid, nb, &mut z)?;
        s.head_in = hin;
        s.head_pre = pre;
        s.head_act = act;
        s.head_mid = mid;
        s.logits = z;
        Ok(())
    }

    fn backward(&mut self, dz: &[f32]) -> Result<()> {
        let s = std::mem::take(&mut self.saved);
        let r = self.backward_from(dz, &s);
        self.saved = s;
        r
    }

    fn backward_from(&mut self, dz: &[f32], s: &Saved) -> Result<()> {
        let nb = s.packed.len.len();
        let d = self.dim;
        // Head.
        let mut dmid = Vec::new();
        self.head.out.backward(&s.head_mid, dz, nb, Some(&mut dmid))?;
        self.mask(self.dropout.classifier, Site::HeadMid).apply_all(&mut dmid);
        let electra = self.head.family == Family::Electra;
        for (i, g) in dmid.iter_mut().enumerate() {
            *g *= if electra {
                gelu_grad(s.head_pre[i])
            } else {
                let t = s.head_act[i];
                1.0 - t * t
            };
        }
        let mut df = Vec::new();
        self.head.dense.backward(&s.head_in, &dmid, nb, Some(&mut df))?;
        if self.head.family != Family::Bert {
            self.mask(self.dropout.classifier, Site::HeadIn).apply_all(&mut df);
        }
        // Layers, last to first.
        let n_layers = self.layers.len();
        let full = self.word.train;
        let mut dy = df;
        if n_layers == 0 {
            // The features are the first tokens of the embeddings.
            let mut dx = vec![0.0f32; s.packed.tokens * d];
            for (b, &st) in s.packed.start.iter().enumerate() {
                dx[st * d..(st + 1) * d].copy_from_slice(&dy[b * d..(b + 1) * d]);
            }
            dy = dx;
        }
        for i in (0..n_layers).rev() {
            let last = i + 1 == n_layers;
            let need_dx = i > 0 || full;
            let masks = [
                self.mask(self.dropout.attention, Site::Attention(i)),
                self.mask(self.dropout.hidden, Site::AttnOut(i)),
                self.mask(self.dropout.hidden, Site::FfnOut(i)),
            ];
            let mut dx = Vec::new();
            self.layers[i].backward(
                &s.xs[i],
                &s.packed,
                last,
                self.lora_scale,
                self.rank,
                masks,
                &s.layers[i],
                &mut dy,
                need_dx.then_some(&mut dx),
            )?;
            if !need_dx {
                return Ok(());
            }
            dy = dx;
        }
        if !full {
            return Ok(());
        }
        // Embeddings.
        let tokens = s.packed.tokens;
        let mut de = match &mut self.project {
            Some(p) => {
                let mut de = Vec::new();
                p.backward(&s.emb, &dy, tokens, Some(&mut de))?;
                de
            }
            None => dy,
        };
        self.mask(self.dropout.hidden, Site::Embeddings).apply_all(&mut de);
        self.emb_norm.backward(&mut de, &s.emb_xhat, &s.emb_rstd);
        let e = self.width;
        for (t, &(id, pos, tt)) in s.ids.iter().enumerate() {
            let g = &de[t * e..(t + 1) * e];
            for (dst, src) in [
                (&mut self.word.g, id),
                (&mut self.position.g, pos),
                (&mut self.token_type.g, tt),
            ] {
                for (a, &b) in dst[src * e..(src + 1) * e].iter_mut().zip(g) {
                    *a += b;
                }
            }
        }
        Ok(())
    }

    /// Clips the accumulated gradients to the global norm (PyTorch's `clip_grad_norm_`), then
    /// one AdamW step (PyTorch's `AdamW`), then zeroes the gradients. Returns the norm before
    /// clipping.
    pub fn step(&mut self, opt: &AdamW) -> f64 {
        self.adam_steps += 1;
        let t = self.adam_steps;
        let mut params: Vec<&mut Param> = self.params_mut().into_iter().filter(|p| p.train).collect();
        let norm = params
            .iter()
            .map(|p| {
                let parts: Vec<f64> =
                    p.g.par_chunks(1 << 14)
                        .map(|c| c.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>())
                        .collect();
                parts.iter().sum::<f64>()
            })
            .sum::<f64>()
            .sqrt();
        let clip = match opt.max_grad_norm {
            Some(max) if norm.is_finite() => {
                let c = max / (norm + 1e-6);
                if c < 1.0 { c as f32 } else { 1.0 }
            }
            _ => 1.0,
        };
        let bc1 = 1.0 - opt.beta1.powi(t);
        let bc2 = 1.0 - opt.beta2.powi(t);
        let step_size = (opt.lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (opt.beta1 as f32, opt.beta2 as f32, opt.eps as f32);
        for p in &mut params {
            let decay = if p.decay {
                (1.0 - opt.lr * opt.weight_decay) as f32
            } else {
                1.0
            };
            let Param { v, g, m, s, .. } = &mut **p;
            v.par_chunks_mut(4096)
                .zip(g.par_chunks_mut(4096))
                .zip(m.par_chunks_mut(4096))
                .zip(s.par_chunks_mut(4096))
                .for_each(|(((v, g), m), s)| {
                    for i in 0..v.len() {
                        let gi = g[i] * clip;
                        m[i] = b1 * m[i] + (1.0 - b1) * gi;
                        s[i] = b2 * s[i] + (1.0 - b2) * gi * gi;
                        let denom = s[i].sqrt() / bc2_sqrt + eps;
                        v[i] = v[i] * decay - step_size * m[i] / denom;
                        g[i] = 0.0;
                    }
                });
        }
        norm
    }

    /// A copy of the trainable values (the best epoch's, kept while training goes on).
    pub fn snapshot(&self) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        self.visit(&mut |_, p| {
            if p.train {
                out.push(p.v.clone());
            }
        });
        out
    }

    /// Puts back values from [`snapshot`](Self::snapshot).
    ///
    /// # Errors
    /// A snapshot of another trainer.
    pub fn restore(&mut self, snap: Vec<Vec<f32>>) -> Result<()> {
        let mut params: Vec<&mut Param> = self.params_mut().into_iter().filter(|p| p.train).collect();
        if params.len() != snap.len() || params.iter().zip(&snap).any(|(p, v)| p.v.len() != v.len()) {
            return Err(BackboneError::Invalid("a snapshot of another model".into()));
        }
        for (p, v) in params.iter_mut().zip(snap) {
            p.v = v;
        }
        Ok(())
    }

    /// Writes the weights into `model` (same architecture), LoRA merged (`w + scale · a · b`).
    ///
    /// # Errors
    /// A model of another shape.
    pub fn write_into(&self, model: &mut SequenceClassifier) -> Result<()> {
        use burn::module::Param as BParam;
        use burn::tensor::{Tensor, TensorData};
        fn set<const D: usize>(p: &mut BParam<Tensor<D>>, v: &[f32], what: &str) -> Result<()> {
            let dims = p.val().dims();
            if dims.iter().product::<usize>() != v.len() {
                return Err(BackboneError::Invalid(format!(
                    "{what}: shape {dims:?} does not hold {} values",
                    v.len()
                )));
            }
            let device = p.val().device();
            let mut fresh = BParam::from_tensor(Tensor::from_data(TensorData::new(v.to_vec(), dims), &device));
            fresh.id = p.id;
            *p = fresh;
            Ok(())
        }
        fn set_linear(l: &mut burn::nn::Linear, w: &[f32], b: &[f32], what: &str) -> Result<()> {
            set(&mut l.weight, w, what)?;
            if let Some(bias) = &mut l.bias {
                set(bias, b, what)?;
            }
            Ok(())
        }
        fn set_norm(l: &mut burn::nn::LayerNorm, n: &Norm, what: &str) -> Result<()> {
            set(&mut l.gamma, &n.gamma.v, what)?;
            if let Some(b) = &mut l.beta {
                set(b, &n.beta.v, what)?;
            }
            Ok(())
        }
        let enc = &mut model.backbone;
        if enc.encoder.layer.len() != self.layers.len() {
            return Err(BackboneError::Invalid("write_into: another number of layers".into()));
        }
        set(
            &mut enc.embeddings.word_embeddings.weight,
            &self.word.v,
            "word embeddings",
        )?;
        set(
            &mut enc.embeddings.position_embeddings.weight,
            &self.position.v,
            "position embeddings",
        )?;
        set(
            &mut enc.embeddings.token_type_embeddings.weight,
            &self.token_type.v,
            "token-type embeddings",
        )?;
        set_norm(&mut enc.embeddings.layer_norm, &self.emb_norm, "embeddings")?;
        if let (Some(dst), Some(src)) = (&mut enc.embeddings_project, &self.project) {
            set_linear(dst, &src.w.v, &src.b.v, "embeddings_project")?;
        }
        for (i, (dst, src)) in enc.encoder.layer.iter_mut().zip(&self.layers).enumerate() {
            let what = format!("layer {i}");
            let d = src.qkv.d_in;
            let dq = src.qkv.d_out / 3;
            let sa = &mut dst.attention.self_attn;
            for (t, lin) in [&mut sa.query, &mut sa.key, &mut sa.value].into_iter().enumerate() {
                let mut w: Vec<f32> = src
                    .qkv
                    .w
                    .v
                    .chunks(3 * dq)
                    .flat_map(|r| r[t * dq..(t + 1) * dq].iter().copied())
                    .collect();
                if let Some(ad) = &src.lora[t] {
                    mm(
                        &mut w,
                        dq,
                        rows(&ad.a.v, d, self.rank),
                        rows(&ad.b.v, self.rank, dq),
                        self.lora_scale,
                        true,
                    )?;
                }
                set_linear(lin, &w, &src.qkv.b.v[t * dq..(t + 1) * dq], &what)?;
            }
            set_linear(&mut dst.attention.output.dense, &src.out.w.v, &src.out.b.v, &what)?;
            set_norm(&mut dst.attention.output.layer_norm, &src.norm1, &what)?;
            set_linear(&mut dst.intermediate.dense, &src.inter.w.v, &src.inter.b.v, &what)?;
            set_linear(&mut dst.output.dense, &src.down.w.v, &src.down.b.v, &what)?;
            set_norm(&mut dst.output.layer_norm, &src.norm2, &what)?;
        }
        set_linear(
            &mut model.head.dense,
            &self.head.dense.w.v,
            &self.head.dense.b.v,
            "the head",
        )?;
        set_linear(
            &mut model.head.out_proj,
            &self.head.out.w.v,
            &self.head.out.b.v,
            "the head",
        )?;
        Ok(())
    }
}

/// GELU's derivative (erf form): `Φ(x) + x·φ(x)`.
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    let x = f64::from(x);
    let cdf = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (cdf + x * pdf) as f32
}

/// GELU's tanh form's derivative, with `tanh(u) = 1 − 2/(1 + e^{2u})`.
#[inline(always)]
fn gelu_tanh_grad(x: f32) -> f32 {
    const K: f32 = 0.797_884_6;
    let u = K * (x + 0.044_715 * x * x * x);
    let t = 1.0 - 2.0 / (1.0 + kernels::exp(2.0 * u));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * 0.044_715 * x * x)
}

/// `dg ← dg · act'(h)`, where `g = act(h)` was kept: exact GELU's derivative is
/// `Φ(h) + h·φ(h)` with `Φ(h) = g/h` (so the erf is not computed again).
fn act_backward(act: HiddenAct, dg: &mut [f32], h: &[f32], g: &[f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    dg.par_chunks_mut(4096)
        .zip(h.par_chunks(4096))
        .zip(g.par_chunks(4096))
        .for_each(|((dc, hc), gc)| match act {
            HiddenAct::Gelu => {
                for ((d, &x), &y) in dc.iter_mut().zip(hc).zip(gc) {
                    let cdf = if x.abs() > 1e-3 { y / x } else { 0.5 + INV_SQRT_2PI * x };
                    *d *= cdf + x * INV_SQRT_2PI * kernels::exp(-0.5 * x * x);
                }
            }
            HiddenAct::GeluTanh => dc.iter_mut().zip(hc).for_each(|(d, &x)| *d *= gelu_tanh_grad(x)),
            HiddenAct::Relu => dc
                .iter_mut()
                .zip(hc)
                .for_each(|(d, &x)| *d *= f32::from(u8::from(x > 0.0))),
        });
}

impl Layer {
    /// `x` `[tokens, d]` → `y` `[tokens, d]`, or `[B, d]` (first tokens only) when `last`;
    /// keeps what the backward pass needs in `sv`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &[f32],
        packed: &Packed,
        last: bool,
        lora_scale: f32,
        rank: usize,
        masks: [Mask; 3],
        sv: &mut LayerSaved,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.out.d_out;
        let tokens = packed.tokens;
        self.qkv.forward(x, tokens, &mut sv.qkv)?;
        for (t, ad) in self.lora.iter().enumerate() {
            if let Some(ad) = ad {
                let u = &mut sv.u[t];
                u.resize(tokens * rank, 0.0);
                mm(u, rank, rows(x, tokens, d), rows(&ad.a.v, d, rank), 1.0, false)?;
                let dst = &mut sv.qkv[t * d..];
                mm(
                    dst,
                    3 * d,
                    rows(u, tokens, rank),
                    rows(&ad.b.v, rank, d),
                    lora_scale,
                    true,
                )?;
            }
        }
        let q_of = query_rows(packed, last);
        let q_rows: usize = q_of.iter().map(|q| q.1).sum();
        self.attention_forward(packed, &q_of, q_rows, masks[0], sv)?;
        // Output projection, dropout, residual, LayerNorm.
        let mut a = Vec::new();
        self.out.forward(&sv.ctx, q_rows, &mut a)?;
        masks[1].apply_all(&mut a);
        add_residual(&mut a, x, &q_of, d);
        self.norm1.forward(&mut a, &mut sv.xhat1, &mut sv.rstd1);
        // Feed-forward.
        self.inter.forward(&a, q_rows, &mut sv.h)?;
        sv.g.clear();
        sv.g.extend_from_slice(&sv.h);
        let act = self.act;
        sv.g.par_chunks_mut(4096).for_each(|c| match act {
            HiddenAct::Gelu => kernels::gelu_in_place(c),
            HiddenAct::GeluTanh => kernels::gelu_tanh_in_place(c),
            HiddenAct::Relu => kernels::relu_in_place(c),
        });
        self.down.forward(&sv.g, q_rows, y)?;
        masks[2].apply_all(y);
        y.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(a.par_chunks(d * ROWS_PER_TASK))
            .for_each(|(yc, ac)| yc.iter_mut().zip(ac).for_each(|(v, r)| *v += *r));
        self.norm2.forward(y, &mut sv.xhat2, &mut sv.rstd2);
        sv.a = a;
        Ok(())
    }

    /// Softmax attention of the saved `qkv` into `sv.ctx` `[q_rows, d]`, keeping the
    /// probabilities (before dropout) in `sv.probs`.
    fn attention_forward(
        &self,
        packed: &Packed,
        q_of: &[(usize, usize)],
        q_rows: usize,
        mask: Mask,
        sv: &mut LayerSaved,
    ) -> Result<()> {
        let d = self.out.d_out;
        let h = self.heads.max(1);
        let dh = d / h;
        let stride = 3 * d;
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        sv.prob_at.clear();
        let mut total = 0;
        for (b, &(_, nq)) in q_of.iter().enumerate() {
            sv.prob_at.push(total);
            total += h * nq * packed.len[b];
        }
        sv.probs.resize(total, 0.0);
        sv.ctx.resize(q_rows * d, 0.0);
        let qkv = &sv.qkv;
        let mut blocks: Vec<(usize, &mut [f32], &mut [f32])> = Vec::with_capacity(q_of.len());
        let (mut crest, mut prest) = (&mut sv.ctx[..], &mut sv.probs[..]);
        for (b, &(_, nq)) in q_of.iter().enumerate() {
            let (c, ct) = crest.split_at_mut(nq * d);
            let (p, pt) = prest.split_at_mut(h * nq * packed.len[b]);
            blocks.push((b, c, p));
            crest = ct;
            prest = pt;
        }
        let prob_at = &sv.prob_at;
        blocks.into_par_iter().try_for_each(|(b, out, probs)| -> Result<()> {
            let (q0, nq) = q_of[b];
            let (k0, nk) = (packed.start[b], packed.len[b]);
            let mut dropped = vec![0.0f32; nq * nk];
            for head in 0..h {
                let col = head * dh;
                let p = &mut probs[head * nq * nk..(head + 1) * nq * nk];
                let q = Operand::rows(&qkv[q0 * stride + col..], nq, dh, stride);
                let k = Operand::rows(&qkv[k0 * stride + d + col..], nk, dh, stride);
                let v = Operand::rows(&qkv[k0 * stride + 2 * d + col..], nk, dh, stride);
                matmul(p, nk, q, k.t(), scale, false, false).map_err(shape_err)?;
                kernels::softmax_rows(p, nk);
                let pd: &[f32] = if mask.on {
                    dropped.copy_from_slice(p);
                    mask.apply(&mut dropped, (prob_at[b] + head * nq * nk) as u64);
                    &dropped
                } else {
                    p
                };
                matmul(&mut out[col..], d, Operand::rows(pd, nq, nk, nk), v, 1.0, false, false).map_err(shape_err)?;
            }
            Ok(())
        })
    }

    /// The backward pass from `dy` (the output's gradient, overwritten), accumulating the
    /// trainable parameters' gradients; `dx` gets the input's gradient when asked.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &mut self,
        x: &[f32],
        packed: &Packed,
        last: bool,
        lora_scale: f32,
        rank: usize,
        masks: [Mask; 3],
        sv: &LayerSaved,
        dy: &mut [f32],
        dx: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let d = self.out.d_out;
        let tokens = packed.tokens;
        let q_of = query_rows(packed, last);
        let q_rows: usize = q_of.iter().map(|q| q.1).sum();
        // LayerNorm 2; its input was down(g) (dropped out) + a.
        self.norm2.backward(dy, &sv.xhat2, &sv.rstd2);
        let mut da = dy.to_vec();
        masks[2].apply_all(dy);
        let mut dg = Vec::new();
        self.down.backward(&sv.g, dy, q_rows, Some(&mut dg))?;
        act_backward(self.act, &mut dg, &sv.h, &sv.g);
        let mut da2 = Vec::new();
        self.inter.backward(&sv.a, &dg, q_rows, Some(&mut da2))?;
        da.iter_mut().zip(&da2).for_each(|(a, b)| *a += b);
        drop(da2);
        drop(dg);
        // LayerNorm 1; its input was out(ctx) (dropped out) + x at the query rows.
        self.norm1.backward(&mut da, &sv.xhat1, &sv.rstd1);
        let dres = da.clone();
        masks[1].apply_all(&mut da);
        let mut dctx = Vec::new();
        self.out.backward(&sv.ctx, &da, q_rows, Some(&mut dctx))?;
        drop(da);
        // Attention.
        let mut dqkv = vec![0.0f32; tokens * 3 * d];
        self.attention_backward(packed, &q_of, masks[0], sv, &dctx, &mut dqkv)?;
        drop(dctx);
        // LoRA.
        let mut du: [Vec<f32>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for (t, ad) in self.lora.iter_mut().enumerate() {
            if let Some(ad) = ad {
                let dq = Operand::rows(&dqkv[t * d..], tokens, d, 3 * d);
                // b's gradient: scale · uᵀ · dq.
                mm(&mut ad.b.g, d, rows(&sv.u[t], tokens, rank).t(), dq, lora_scale, true)?;
                // u's: scale · dq · bᵀ; then a's: xᵀ · du.
                du[t].resize(tokens * rank, 0.0);
                mm(&mut du[t], rank, dq, rows(&ad.b.v, rank, d).t(), lora_scale, false)?;
                mm(
                    &mut ad.a.g,
                    rank,
                    rows(x, tokens, d).t(),
                    rows(&du[t], tokens, rank),
                    1.0,
                    true,
                )?;
            }
        }
        let want_dx = dx.is_some();
        let mut dxv = Vec::new();
        self.qkv.backward(x, &dqkv, tokens, want_dx.then_some(&mut dxv))?;
        if let Some(dx) = dx {
            for (t, ad) in self.lora.iter().enumerate() {
                if let Some(ad) = ad {
                    mm(
                        &mut dxv,
                        d,
                        rows(&du[t], tokens, rank),
                        rows(&ad.a.v, d, rank).t(),
                        1.0,
                        true,
                    )?;
                }
            }
            // The residual reached the query rows.
            let mut r = 0;
            for &(q0, nq) in &q_of {
                for j in 0..nq {
                    let dst = &mut dxv[(q0 + j) * d..(q0 + j + 1) * d];
                    dst.iter_mut()
                        .zip(&dres[(r + j) * d..(r + j + 1) * d])
                        .for_each(|(a, b)| *a += b);
                }
                r += nq;
            }
            *dx = dxv;
        }
        Ok(())
    }

    /// The gradient of the packed `qkv` from the context's, per sequence in parallel.
    fn attention_backward(
        &self,
        packed: &Packed,
        q_of: &[(usize, usize)],
        mask: Mask,
        sv: &LayerSaved,
        dctx: &[f32],
        dqkv: &mut [f32],
    ) -> Result<()> {
        let d = self.out.d_out;
        let h = self.heads.max(1);
        let dh = d / h;
        let stride = 3 * d;
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        let qkv = &sv.qkv;
        // Each sequence's rows of dqkv are one contiguous block.
        let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(q_of.len());
        let mut rest = dqkv;
        for b in 0..q_of.len() {
            let (blk, tail) = rest.split_at_mut(packed.len[b] * stride);
            blocks.push((b, blk));
            rest = tail;
        }
        let mut q_at = Vec::with_capacity(q_of.len());
        let mut r = 0;
        for &(_, nq) in q_of {
            q_at.push(r);
            r += nq;
        }
        blocks.into_par_iter().try_for_each(|(b, blk)| -> Result<()> {
            let (_, nq) = q_of[b];
            let (k0, nk) = (packed.start[b], packed.len[b]);
            let mut dp = vec![0.0f32; nq * nk];
            let mut pd = vec![0.0f32; nq * nk];
            for head in 0..h {
                let col = head * dh;
                let at = sv.prob_at[b] + head * nq * nk;
                let p = &sv.probs[at..at + nq * nk];
                pd.copy_from_slice(p);
                mask.apply(&mut pd, at as u64);
                let dc = Operand::rows(&dctx[q_at[b] * d + col..], nq, dh, d);
                let q = Operand::rows(&qkv[k0 * stride + col..], nq, dh, stride);
                let k = Operand::rows(&qkv[k0 * stride + d + col..], nk, dh, stride);
                let v = Operand::rows(&qkv[k0 * stride + 2 * d + col..], nk, dh, stride);
                // dV = P̃ᵀ · dctx.
                matmul(
                    &mut blk[2 * d + col..],
                    stride,
                    Operand::rows(&pd, nq, nk, nk).t(),
                    dc,
                    1.0,
                    false,
                    false,
                )
                .map_err(shape_err)?;
                // dP̃ = dctx · Vᵀ, then through dropout and the softmax.
                matmul(&mut dp, nk, dc, v.t(), 1.0, false, false).map_err(shape_err)?;
                mask.apply(&mut dp, at as u64);
                for (dr, pr) in dp.chunks_exact_mut(nk).zip(p.chunks_exact(nk)) {
                    let dot: f64 = dr.iter().zip(pr).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let dot = dot as f32;
                    dr.iter_mut().zip(pr).for_each(|(g, &pv)| *g = pv * (*g - dot));
                }
                let ds = Operand::rows(&dp, nq, nk, nk);
                // dQ = scale · dS · K; dK = scale · dSᵀ · Q.
                matmul(&mut blk[col..], stride, ds, k, scale, false, false).map_err(shape_err)?;
                matmul(&mut blk[d + col..], stride, ds.t(), q, scale, false, false).map_err(shape_err)?;
            }
            Ok(())
        })
    }
}

/// Each sequence's query rows: (first token, count): every token, or the first when `last`.
fn query_rows(packed: &Packed, last: bool) -> Vec<(usize, usize)> {
    packed
        .start
        .iter()
        .zip(&packed.len)
        .map(|(&st, &l)| (st, if last { 1 } else { l }))
        .collect()
}

/// `a[r] += x[token of query row r]`.
fn add_residual(a: &mut [f32], x: &[f32], q_of: &[(usize, usize)], d: usize) {
    let mut r = 0;
    for &(q0, nq) in q_of {
        let n = nq * d;
        a[r * d..r * d + n]
            .iter_mut()
            .zip(&x[q0 * d..q0 * d + n])
            .for_each(|(v, xv)| *v += xv);
        r += nq;
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param as BParam};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    use super::*;
    use crate::config::{EncoderConfig, RawConfig};
    use crate::tokenize::collate;

    fn config(model_type: &str, extra: serde_json::Value) -> EncoderConfig {
        let mut v = serde_json::json!({
            "model_type": model_type, "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 40,
            "type_vocab_size": 2, "pad_token_id": 1, "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "id2label": {"0": "a", "1": "b", "2": "c"}
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let raw: RawConfig = serde_json::from_value(v).unwrap();
        EncoderConfig::resolve(raw, std::path::Path::new("config.json")).unwrap()
    }

    fn batch() -> (Vec<Encoded>, Vec<usize>) {
        let enc = [7usize, 3, 12, 1, 5]
            .iter()
            .enumerate()
            .map(|(i, &l)| Encoded {
                ids: (0..l).map(|j| (2 + (i * 13 + j * 7) % 48) as u32).collect(),
                type_ids: (0..l).map(|j| u32::from(j >= l / 2 && i % 2 == 1)).collect(),
            })
            .collect();
        (enc, vec![0, 2, 1, 1, 0])
    }

    fn positions(cfg: &EncoderConfig) -> Positions {
        if cfg.family == Family::Roberta {
            Positions::AfterPad
        } else {
            Positions::FromZero
        }
    }

    fn families() -> Vec<EncoderConfig> {
        vec![
            config("bert", serde_json::json!({})),
            config("roberta", serde_json::json!({"hidden_act": "gelu_new"})),
            config(
                "electra",
                serde_json::json!({"embedding_size": 16, "hidden_act": "relu"}),
            ),
            config("electra", serde_json::json!({})),
        ]
    }

    /// burn's autodiff gradient of the mean cross-entropy, by the host trainer's names.
    fn burn_grads(model: &SequenceClassifier, cfg: &EncoderConfig) -> Vec<(String, Vec<f32>)> {
        let ad = Device::flex().autodiff();
        let model = model.clone().fork(&ad).train();
        let (enc, labels) = batch();
        let order: Vec<usize> = (0..enc.len()).collect();
        let input = collate(&enc, &order, cfg.pad_token_id as u32, positions(cfg), &ad);
        let y: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [labels.len()]), &ad);
        let loss = CrossEntropyLossConfig::new()
            .init(&ad)
            .forward(model.forward(&input).logits, y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut out = Vec::new();
        let mut push2 = |name: String, p: &BParam<Tensor<2>>| {
            out.push((name, to_host(grads.get::<2>(p.id).unwrap()).unwrap()));
        };
        let e = &model.backbone.embeddings;
        push2(
            "backbone.embeddings.word_embeddings.weight".into(),
            &e.word_embeddings.weight,
        );
        push2(
            "backbone.embeddings.position_embeddings.weight".into(),
            &e.position_embeddings.weight,
        );
        push2(
            "backbone.embeddings.token_type_embeddings.weight".into(),
            &e.token_type_embeddings.weight,
        );
        if let Some(p) = &model.backbone.embeddings_project {
            push2("backbone.embeddings_project.weight".into(), &p.weight);
        }
        for (i, l) in model.backbone.encoder.layer.iter().enumerate() {
            let p = format!("backbone.encoder.layer.{i}");
            let sa = &l.attention.self_attn;
            push2(format!("{p}.attention.self_attn.query.weight"), &sa.query.weight);
            push2(format!("{p}.attention.self_attn.key.weight"), &sa.key.weight);
            push2(format!("{p}.attention.self_attn.value.weight"), &sa.value.weight);
            push2(
                format!("{p}.attention.output.dense.weight"),
                &l.attention.output.dense.weight,
            );
            push2(format!("{p}.intermediate.dense.weight"), &l.intermediate.dense.weight);
            push2(format!("{p}.output.dense.weight"), &l.output.dense.weight);
        }
        push2("head.dense.weight".into(), &model.head.dense.weight);
        push2("head.out_proj.weight".into(), &model.head.out_proj.weight);
        let mut push1 = |name: String, p: &BParam<Tensor<1>>| {
            out.push((name, to_host(grads.get::<1>(p.id).unwrap()).unwrap()));
        };
        push1("backbone.embeddings.layer_norm.gamma".into(), &e.layer_norm.gamma);
        push1(
            "backbone.embeddings.layer_norm.beta".into(),
            e.layer_norm.beta.as_ref().unwrap(),
        );
        for (i, l) in model.backbone.encoder.layer.iter().enumerate() {
            let p = format!("backbone.encoder.layer.{i}");
            let sa = &l.attention.self_attn;
            push1(
                format!("{p}.attention.self_attn.query.bias"),
                sa.query.bias.as_ref().unwrap(),
            );
            push1(
                format!("{p}.attention.self_attn.value.bias"),
                sa.value.bias.as_ref().unwrap(),
            );
            push1(
                format!("{p}.attention.output.layer_norm.gamma"),
                &l.attention.output.layer_norm.gamma,
            );
            push1(
                format!("{p}.output.layer_norm.beta"),
                l.output.layer_norm.beta.as_ref().unwrap(),
            );
            push1(
                format!("{p}.intermediate.dense.bias"),
                l.intermediate.dense.bias.as_ref().unwrap(),
            );
        }
        push1("head.out_proj.bias".into(), model.head.out_proj.bias.as_ref().unwrap());
        out
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
    }

    fn host_batch(t: &mut HostTrainer, cfg: &EncoderConfig) -> f64 {
        let (enc, labels) = batch();
        let refs: Vec<&Encoded> = enc.iter().collect();
        t.accumulate(&refs, None, &labels, cfg.pad_token_id as u32, positions(cfg), 1.0)
            .unwrap()
    }

    /// Full fine-tuning: every parameter's gradient against burn's autodiff, all families.
    #[test]
    fn full_gradients_match_burns_autodiff() {
        let device = Device::flex();
        for cfg in families() {
            let model = cfg.init_sequence_classifier(&device);
            let want = burn_grads(&model, &cfg);
            let mut t = HostTrainer::new(&model, &FinetuneMode::Full, Dropouts::none(), 0).unwrap();
            host_batch(&mut t, &cfg);
            let got: std::collections::HashMap<String, Vec<f32>> = t.gradients().into_iter().collect();
            for (name, w) in &want {
                let g = got.get(name).unwrap_or_else(|| panic!("no host gradient {name}"));
                assert_eq!(g.len(), w.len(), "{name}");
                let err = max_rel(g, w);
                assert!(err < 1e-4, "{:?} {name}: off by {err} of its largest", cfg.family);
            }
        }
    }

    /// LoRA: the factors' gradients are `scale · G · bᵀ` and `scale · aᵀ · G`, with G the
    /// gradient of the merged weight, which burn's autodiff gives on the merged model.
    #[test]
    fn lora_gradients_match_burns_autodiff_of_the_merged_weight() {
        let device = Device::flex();
        for cfg in families() {
            let mut model = cfg.init_sequence_classifier(&device);
            let mut t = HostTrainer::new(&model, &FinetuneMode::lora(), Dropouts::none(), 3).unwrap();
            let (d, r) = (cfg.hidden_size, 8);
            let mut rng = ueb_rng::Xoshiro256::new(5, 0);
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| (ueb_rng::Rng64::unit(&mut rng) - 0.5) as f32 * 0.4)
                    .collect()
            };
            let mut factors = Vec::new();
            for l in 0..cfg.num_layers {
                for target in TARGETS {
                    let (a, b) = (draw(d * r), draw(r * d));
                    t.set_lora(l, target, a.clone(), b.clone()).unwrap();
                    factors.push((l, target, a, b));
                }
            }
            t.write_into(&mut model).unwrap();
            let want: std::collections::HashMap<String, Vec<f32>> = burn_grads(&model, &cfg).into_iter().collect();
            host_batch(&mut t, &cfg);
            let got: std::collections::HashMap<String, Vec<f32>> = t.gradients().into_iter().collect();
            assert!(!got.contains_key("backbone.encoder.layer.0.attention.self_attn.query.weight"));
            for (l, target, a, b) in factors {
                let p = format!("backbone.encoder.layer.{l}.attention.self_attn.{target}");
                let g = &want[&format!("{p}.weight")];
                let mut da = vec![0.0f32; d * r];
                let mut db = vec![0.0f32; r * d];
                mm(&mut da, r, rows(g, d, d), rows(&b, r, d).t(), 2.0, false).unwrap();
                mm(&mut db, d, rows(&a, d, r).t(), rows(g, d, d), 2.0, false).unwrap();
                let (ga, gb) = (&got[&format!("{p}.lora_a")], &got[&format!("{p}.lora_b")]);
                assert!(max_rel(ga, &da) < 1e-4, "{:?} {p} a: {}", cfg.family, max_rel(ga, &da));
                assert!(max_rel(gb, &db) < 1e-4, "{:?} {p} b: {}", cfg.family, max_rel(gb, &db));
            }
            for name in ["head.dense.weight", "head.out_proj.weight", "head.out_proj.bias"] {
                assert!(max_rel(&got[name], &want[name]) < 1e-4, "{:?} {name}", cfg.family);
            }
        }
    }

    /// Dropout masks are a function of the seed and the pass: the same seed gives the same
    /// losses, another seed other ones, and evaluation has none.
    #[test]
    fn dropout_is_deterministic_per_seed() {
        let device = Device::flex();
        let cfg = config("roberta", serde_json::json!({}));
        let model = cfg.init_sequence_classifier(&device);
        let drop = Dropouts {
            hidden: 0.1,
            attention: 0.1,
            classifier: 0.1,
        };
        let run = |seed| {
            let mut t = HostTrainer::new(&model, &FinetuneMode::Full, drop, seed).unwrap();
            let l1 = host_batch(&mut t, &cfg);
            let l2 = host_batch(&mut t, &cfg);
            (l1, l2, t.gradients())
        };
        let (a1, a2, ga) = run(7);
        let (b1, b2, gb) = run(7);
        let (c1, _, _) = run(8);
        assert_eq!((a1, a2), (b1, b2));
        assert_eq!(ga, gb);
        assert_ne!(a1, a2, "two passes, two masks");
        assert_ne!(a1, c1, "another seed, other masks");
        let mut t = HostTrainer::new(&model, &FinetuneMode::Full, drop, 7).unwrap();
        let (enc, _) = batch();
        let refs: Vec<&Encoded> = enc.iter().collect();
        let z1 = t.logits(&refs, None, 1, Positions::AfterPad).unwrap();
        let z2 = t.logits(&refs, None, 1, Positions::AfterPad).unwrap();
        assert_eq!(z1, z2, "no dropout in evaluation");
        // The mask keeps about 1 − p of the elements.
        let m = Mask::new(0.1, 99, true);
        let kept = (0..100_000u64).filter(|&i| m.factor(i) > 0.0).count();
        assert!((89_000..91_000).contains(&kept), "{kept}");
    }

    /// Bad rows and labels are errors naming the caller's row, not the batch position.
    #[test]
    fn bad_rows_are_errors_naming_the_row() {
        let device = Device::flex();
        let cfg = config("bert", serde_json::json!({}));
        let model = cfg.init_sequence_classifier(&device);
        let mut t = HostTrainer::new(&model, &FinetuneMode::lora(), Dropouts::none(), 0).unwrap();
        let good = Encoded {
            ids: vec![2, 3],
            type_ids: vec![0, 0],
        };
        let bad = Encoded {
            ids: vec![2, 50],
            type_ids: vec![0, 0],
        };
        let err = t
            .accumulate(&[&good, &bad], Some(&[7, 41]), &[0, 1], 1, Positions::FromZero, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("row 41, token 1: id 50"), "{err}");
        let err = t
            .accumulate(&[&good], Some(&[9]), &[3], 1, Positions::FromZero, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("row 9: label 3"), "{err}");
        let empty = Encoded {
            ids: vec![],
            type_ids: vec![],
        };
        let err = t
            .logits(&[&good, &empty], Some(&[0, 5]), 1, Positions::FromZero)
            .unwrap_err();
        assert!(err.to_string().contains("row 5 has no tokens"), "{err}");
    }

    /// Numerical check of the gradient with dropout on (the masks are fixed per pass key).
    #[test]
    fn gradients_with_dropout_match_finite_differences() {
        let device = Device::flex();
        let cfg = config("bert", serde_json::json!({}));
        let model = cfg.init_sequence_classifier(&device);
        let drop = Dropouts {
            hidden: 0.2,
            attention: 0.2,
            classifier: 0.2,
        };
        let base = HostTrainer::new(&model, &FinetuneMode::Full, drop, 11).unwrap();
        let mut t = base.clone();
        host_batch(&mut t, &cfg);
        let grads: std::collections::HashMap<String, Vec<f32>> = t.gradients().into_iter().collect();
        let name = "backbone.encoder.layer.0.intermediate.dense.weight";
        let g = &grads[name];
        let (enc, labels) = batch();
        let refs: Vec<&Encoded> = enc.iter().collect();
        let loss_at = |delta: f32, idx: usize| -> f64 {
            let mut t = base.clone();
            t.layers[0].inter.w.v[idx] += delta;
            // Same pass number → same masks as the gradient's pass.
            t.accumulate(&refs, None, &labels, 1, Positions::FromZero, 1.0).unwrap()
        };
        let big = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
        for idx in [big, 5, 100] {
            let h = 1e-2f32;
            let num = (loss_at(h, idx) - loss_at(-h, idx)) / (2.0 * f64::from(h));
            assert!(
                (num - f64::from(g[idx])).abs() < 2e-3 + 0.02 * num.abs(),
                "element {idx}: numeric {num}, analytic {}",
                g[idx]
            );
        }
    }
}
