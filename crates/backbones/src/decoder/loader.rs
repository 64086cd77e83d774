//! Loading a Hugging Face LLaMA / Qwen2 / Qwen3 directory into the decoder of `model.rs`.
//!
//! The module tree is transformers' own, so the key remap table is short (rules apply in
//! order, each a regex replacement on the checkpoint key):
//!
//! | checkpoint key | module path | why |
//! |---|---|---|
//! | `model.…` | `model.…` (unchanged) | task and causal-LM checkpoints (`*ForSequenceClassification`, `*ForCausalLM`) |
//! | unprefixed `embed_tokens.`, `layers.`, `norm.` | `model.…` | base-model checkpoints (`LlamaModel`, `Qwen2Model`, …) |
//! | `score.` | `score.` (or dropped when the task has another number of classes) | the sequence head |
//! | `lm_head.` | `lm_head.` | the causal-LM head (absent when tied to `embed_tokens`) |
//! | `…rotary_emb.inv_freq` | ignored | a buffer older checkpoints saved; recomputed from θ |
//!
//! burn-store's PyTorch adapter transposes `Linear` weights and renames RMSNorm's `weight` to
//! `gamma`; a float cast makes f16/bf16 checkpoints f32. Tensors are read one at a time from
//! the memory-mapped file into the module, so loading never holds a second full copy of the
//! weights. Only safetensors are read.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot};
use burn::tensor::Device;

use super::config::DecoderConfig;
use super::model::{CausalLm, Decoder, DecoderClassifier};
use crate::error::Result;
use crate::loader::{DROPPED, LoadOptions, LoadReport, ModelDir, TensorInfo, head_labels, settle_missing};

/// The remap rules (see the table above).
const RULES: &[(&str, &str)] = &[(r"^(embed_tokens|layers|norm)\.", "model.$1.")];

impl ModelDir {
    /// Reads and validates `config.json` as a decoder's.
    ///
    /// # Errors
    /// As [`DecoderConfig::from_file`].
    pub fn decoder_config(&self) -> Result<DecoderConfig> {
        DecoderConfig::from_file(&self.config)
    }
}

fn remapper(drop_score: bool) -> KeyRemapper {
    let mut rules: Vec<(String, String)> = RULES.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    if drop_score {
        rules.push((r"^score\.".into(), format!("{DROPPED}score.")));
    }
    // The patterns are constants of this file: a failure is a bug caught by every test.
    KeyRemapper::from_patterns(rules).unwrap_or_default()
}

fn load_into<M: Module + ModuleSnapshot>(
    model: &mut M,
    dir: &ModelDir,
    header: &BTreeMap<String, TensorInfo>,
    drop_score: bool,
) -> Result<(LoadReport, Vec<String>)> {
    let mut dtypes = BTreeMap::new();
    for info in header.values() {
        *dtypes.entry(info.dtype.clone()).or_insert(0) += 1;
    }
    let prefixed = header.keys().any(|k| k.starts_with("model."));
    let remap = remapper(drop_score);
    let original: BTreeMap<String, String> = header
        .keys()
        .map(|k| {
            let mut new = k.clone();
            for (re, to) in &remap.patterns {
                new = re.replace_all(&new, to.as_str()).into_owned();
            }
            (new, k.clone())
        })
        .collect();
    let result = crate::loader::load_shards(model, dir, &remap)?;
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !k.starts_with(DROPPED) && !k.ends_with("rotary_emb.inv_freq"))
        .map(|k| original.get(k).cloned().unwrap_or_else(|| k.clone()))
        .collect();
    let missing = result.missing;
    Ok((
        LoadReport {
            prefix: prefixed.then(|| "model".to_string()),
            dtypes,
            loaded: result.applied,
            initialised: Vec::new(),
            unexpected,
            head_initialised: false,
            head_note: None,
        },
        missing,
    ))
}

/// The number of classes of the checkpoint's `score` head, when it has one.
pub fn checkpoint_score_classes(header: &BTreeMap<String, TensorInfo>) -> Option<usize> {
    header.get("score.weight").and_then(|t| t.shape.first().copied())
}

/// Loads a decoder sequence classifier (`*ForSequenceClassification`). A `score` absent from
/// the checkpoint (a base or causal-LM checkpoint) or with another number of classes than
/// `options.labels` is initialised as transformers does and reported; the stack must be
/// complete.
///
/// # Errors
/// Missing files, a bad config, unreadable weights, a shape mismatch or missing stack
/// tensors, each naming the file and key.
pub fn load_decoder_classifier(
    dir: &ModelDir,
    options: &LoadOptions,
    device: &Device,
) -> Result<(DecoderClassifier, DecoderConfig, LoadReport)> {
    let mut config = dir.decoder_config()?;
    let header = dir.header()?;
    let ckpt = checkpoint_score_classes(&header);
    let note = head_labels(options, ckpt, config.num_labels(), &dir.config, "score")?;
    if let Some(labels) = &options.labels {
        config = config.with_labels(labels.clone());
    }
    let mut model = config.init_classifier(device);
    let (mut report, missing) = load_into(&mut model, dir, &header, note.is_some())?;
    if let Some(n) = note {
        report.head_note = Some(n);
    }
    let report = settle_missing(report, missing, &["score."], &dir.weights)?;
    Ok((model, config, report))
}

/// Loads a causal LM (`*ForCausalLM`); with tied embeddings the output layer is
/// `embed_tokens`. A missing untied `lm_head` is an error (its logits would be noise).
///
/// # Errors
/// As [`load_decoder_classifier`].
pub fn load_causal_lm(dir: &ModelDir, device: &Device) -> Result<(CausalLm, DecoderConfig, LoadReport)> {
    let config = dir.decoder_config()?;
    let header = dir.header()?;
    let mut model = config.init_causal_lm(device);
    let (report, missing) = load_into(&mut model, dir, &header, false)?;
    let report = settle_missing(report, missing, &[], &dir.weights)?;
    Ok((model, config, report))
}

/// Loads the decoder stack alone (features from a checkpoint with no `score`).
///
/// # Errors
/// As [`load_decoder_classifier`].
pub fn load_decoder(dir: &ModelDir, device: &Device) -> Result<(Decoder, DecoderConfig, LoadReport)> {
    let config = dir.decoder_config()?;
    let header = dir.header()?;
    #[derive(Module, Debug)]
    struct Wrapper {
        model: Decoder,
    }
    let mut model = Wrapper {
        model: config.init_decoder(device),
    };
    let (report, missing) = load_into(&mut model, dir, &header, false)?;
    let report = settle_missing(report, missing, &[], &dir.weights)?;
    Ok((model.model, config, report))
}

/// Whether a model directory holds a decoder (its `config.json`'s `model_type`).
///
/// # Errors
/// An unreadable or invalid `config.json`.
pub fn is_decoder(dir: &ModelDir) -> Result<bool> {
    super::config::is_decoder_config(&dir.config)
}
