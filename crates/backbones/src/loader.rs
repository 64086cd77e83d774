//! Loading a Hugging Face model directory (`config.json`, `model.safetensors` or the shards
//! of `model.safetensors.index.json`, `tokenizer.json`) into the encoder of `encoder.rs`,
//! with burn-store.
//!
//! How checkpoint keys map to module paths, in the order the rules apply (every rule is a
//! regex replacement on the key; later rules see the result of earlier ones):
//!
//! | checkpoint key | module path | why |
//! |---|---|---|
//! | `…LayerNorm.gamma` / `…LayerNorm.beta` | `…LayerNorm.weight` / `.bias` | TF-converted BERT checkpoints |
//! | `bert.` / `roberta.` / `electra.` prefix | `backbone.` | task checkpoints (`*ForSequenceClassification`) |
//! | unprefixed `embeddings.`, `encoder.`, `embeddings_project.` | `backbone.…` | base-model checkpoints (`BertModel`) |
//! | `.LayerNorm.` | `.layer_norm.` | Rust field names are snake case |
//! | `.attention.self.` | `.attention.self_attn.` | `self` is a Rust keyword |
//! | BERT `pooler.dense.` | `head.dense.` | BERT's pooler is the head's dense layer |
//! | BERT `classifier.` | `head.out_proj.` | |
//! | RoBERTa/ELECTRA `classifier.{dense,out_proj}.` | `head.{dense,out_proj}.` | |
//! | token task `classifier.` | `token_head.` | `*ForTokenClassification` |
//!
//! burn-store's PyTorch adapter then transposes `Linear` weights (`[out, in]` → `[in, out]`)
//! and renames LayerNorm `weight`/`bias` to `gamma`/`beta`; a float cast gives every tensor the
//! float type of the model's device (f32 by default, bf16/f16 when the device was configured
//! for half precision). Only safetensors are read: no code path unpickles anything.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{DType, Device};

use crate::config::{EncoderConfig, Family};
use crate::encoder::{Encoder, SequenceClassifier, TokenClassifier};
use crate::error::{BackboneError, Result};

/// The rules that hold for every family and task (see the table above).
const COMMON_RULES: &[(&str, &str)] = &[
    (r"LayerNorm\.gamma$", "LayerNorm.weight"),
    (r"LayerNorm\.beta$", "LayerNorm.bias"),
    (r"^(?:bert|roberta|electra)\.", "backbone."),
    (r"^(embeddings|encoder|embeddings_project)\.", "backbone.$1."),
    (r"\.LayerNorm\.", ".layer_norm."),
    (r"\.attention\.self\.", ".attention.self_attn."),
];

/// Where a checkpoint key that is deliberately not loaded is sent (a re-initialised head):
/// no module path starts with it, so it lands among the unused keys, and the report
/// leaves it out of the unexpected ones.
pub(crate) const DROPPED: &str = "__reinitialised__.";

/// The index of a sharded checkpoint, as transformers writes it.
const INDEX_FILE: &str = "model.safetensors.index.json";

/// The files of a Hugging Face model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// The weights as messages name them: `model.safetensors`, or for a sharded checkpoint
    /// `model.safetensors.index.json`.
    pub weights: PathBuf,
    /// The safetensors files to read: `model.safetensors` alone, or every shard the index
    /// lists (in name order). Each is memory-mapped in turn while loading.
    pub shards: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelDir {
    /// Checks that `dir` has the three files.
    ///
    /// # Errors
    /// [`BackboneError::MissingFile`] naming the first missing file (with advice when only a
    /// pickled `pytorch_model.bin` is there).
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(BackboneError::Hub {
                reference: dir.display().to_string(),
                message: "not a directory (expected a Hugging Face model directory or hf:ID@REVISION)".into(),
            });
        }
        let need = |file: &'static str| -> Result<PathBuf> {
            let p = dir.join(file);
            if p.is_file() {
                return Ok(p);
            }
            let pickled = dir.join("pytorch_model.bin").is_file() || dir.join("pytorch_model.bin.index.json").is_file();
            let hint = if file == "model.safetensors" && pickled {
                "; only pytorch_model.bin (a pickle) is there, which ueb never executes: convert it once with \
                 transformers (`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`)"
                    .to_string()
            } else {
                String::new()
            };
            Err(BackboneError::MissingFile {
                dir: dir.to_path_buf(),
                file,
                hint,
            })
        };
        let config = need("config.json")?;
        let index = dir.join(INDEX_FILE);
        let (weights, shards) = if !dir.join("model.safetensors").is_file() && index.is_file() {
            let shards = shard_files(&index)?;
            (index, shards)
        } else {
            let single = need("model.safetensors")?;
            (single.clone(), vec![single])
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            shards,
            tokenizer: need("tokenizer.json")?,
        })
    }

    /// The headers of every weights file, merged: each tensor's dtype and shape by key.
    ///
    /// # Errors
    /// An unreadable or malformed header; a key in two shards; for a sharded checkpoint, a
    /// tensor the index places in a shard that does not hold it.
    pub fn header(&self) -> Result<BTreeMap<String, TensorInfo>> {
        let mut merged = BTreeMap::new();
        let mut found_in: BTreeMap<String, PathBuf> = BTreeMap::new();
        for shard in &self.shards {
            for (key, info) in read_header(shard)? {
                if let Some(first) = found_in.get(&key) {
                    return Err(BackboneError::weights(
                        &self.weights,
                        format!("tensor {key:?} is in both {} and {}", first.display(), shard.display()),
                    ));
                }
                found_in.insert(key.clone(), shard.clone());
                merged.insert(key, info);
            }
        }
        if self.weights.ends_with(INDEX_FILE) {
            for (key, file) in index_map(&self.weights)? {
                let want = self.dir.join(&file);
                if found_in.get(&key) != Some(&want) {
                    return Err(BackboneError::weights(
                        &self.weights,
                        format!("the index places {key:?} in {file}, which does not hold it"),
                    ));
                }
            }
        }
        Ok(merged)
    }

    /// Reads and validates `config.json`.
    ///
    /// # Errors
    /// As [`EncoderConfig::from_file`].
    pub fn encoder_config(&self) -> Result<EncoderConfig> {
        EncoderConfig::from_file(&self.config)
    }
}

/// `weight_map` of a sharded checkpoint's index: tensor key → shard file name.
fn index_map(index: &Path) -> Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| BackboneError::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text)
        .map_err(|e| BackboneError::weights(index, format!("not a safetensors index: {e}")))?;
    Ok(parsed.weight_map)
}

/// The shard files an index lists, each once, in name order; every one must be a plain file
/// name (no directory part) that exists next to the index.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names: Vec<String> = index_map(index)?.into_values().collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(BackboneError::weights(index, "the index lists no shard"));
    }
    names
        .into_iter()
        .map(|name| {
            let plain = Path::new(&name).file_name().is_some_and(|f| f == name.as_str());
            if !plain || !name.ends_with(".safetensors") {
                return Err(BackboneError::weights(
                    index,
                    format!("shard {name:?} is not a .safetensors file name in this directory"),
                ));
            }
            let p = dir.join(&name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(BackboneError::weights(index, format!("shard {name} is missing")))
            }
        })
        .collect()
}

/// What loading every shard into a module found: the union of the shards' results, with a
/// module tensor missing only when no shard had it.
pub(crate) struct Loaded {
    /// Module paths applied.
    pub applied: usize,
    /// Module paths no shard provided.
    pub missing: Vec<String>,
    /// Remapped checkpoint keys the module does not use.
    pub unused: Vec<String>,
}

/// Loads every shard of `dir` into `model` through `remap` and the PyTorch adapter with a
/// float cast to the float type of the model's device (f32, or the half precision the device
/// was configured for); each shard is memory-mapped in turn, so no second copy of the weights
/// is held.
///
/// # Errors
/// A store error or a tensor that could not be applied (shape or dtype), naming the file.
pub(crate) fn load_shards<M: Module + ModuleSnapshot>(
    model: &mut M,
    dir: &ModelDir,
    remap: &KeyRemapper,
) -> Result<Loaded> {
    let mut applied = 0;
    let mut unused = Vec::new();
    let mut missing: Option<std::collections::BTreeSet<String>> = None;
    // The float type the model's device creates tensors in (f32 unless the device was
    // configured for half precision): each shard's tensors are cast to it as they are read, so
    // a bf16 checkpoint on a bf16 device is never widened.
    let dtype = model
        .devices()
        .first()
        .map_or(DType::F32, |d| DType::from(d.settings().float_dtype));
    for shard in &dir.shards {
        let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(dtype));
        let mut store = SafetensorsStore::from_file(shard)
            .remap(remap.clone())
            .with_from_adapter(adapter)
            .allow_partial(true)
            .validate(true);
        let result = model
            .load_from(&mut store)
            .map_err(|e| BackboneError::weights(shard, e.to_string()))?;
        if !result.errors.is_empty() {
            let msgs: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
            return Err(BackboneError::weights(shard, msgs.join("; ")));
        }
        applied += result.applied.len();
        unused.extend(result.unused);
        let here: std::collections::BTreeSet<String> = result.missing.into_iter().map(|(p, _)| p).collect();
        missing = Some(match missing {
            None => here,
            Some(before) => before.intersection(&here).cloned().collect(),
        });
    }
    Ok(Loaded {
        applied,
        missing: missing.unwrap_or_default().into_iter().collect(),
        unused,
    })
}

/// One entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// `F32`, `F16`, `BF16`, `I64`, …
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
}

/// Reads only the header of a safetensors file (the tensors stay on disk).
///
/// # Errors
/// I/O errors, or a malformed header.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>> {
    let mut f = std::fs::File::open(path).map_err(|e| BackboneError::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| BackboneError::io(path, e))?;
    let len = u64::from_le_bytes(len);
    let file_len = f.metadata().map_err(|e| BackboneError::io(path, e))?.len();
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(BackboneError::weights(
            path,
            format!("not a safetensors file (header length {len})"),
        ));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| BackboneError::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| BackboneError::weights(path, format!("malformed safetensors header: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| BackboneError::weights(path, "malformed safetensors header: not an object"))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if k == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<usize>> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect());
        match (dtype, shape) {
            (Some(dtype), Some(shape)) => {
                out.insert(
                    k.clone(),
                    TensorInfo {
                        dtype: dtype.to_string(),
                        shape,
                    },
                );
            }
            _ => {
                return Err(BackboneError::weights(
                    path,
                    format!("malformed safetensors header entry {k:?}"),
                ));
            }
        }
    }
    Ok(out)
}

/// Which task's head to read from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadKeys {
    Backbone,
    Sequence,
    Token,
}

/// What loading found: the layout, what was loaded, what was missing or left over.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// The key prefix of the backbone (`bert`, `roberta`, `electra`), or `None` for a
    /// base-model checkpoint without one.
    pub prefix: Option<String>,
    /// The checkpoint's float dtypes and how many tensors have each.
    pub dtypes: BTreeMap<String, usize>,
    /// Number of module tensors loaded from the checkpoint.
    pub loaded: usize,
    /// Module tensors absent from the checkpoint, freshly initialised (a missing head).
    pub initialised: Vec<String>,
    /// Checkpoint keys the model does not use (original names).
    pub unexpected: Vec<String>,
    /// Whether the task head was initialised rather than loaded.
    pub head_initialised: bool,
    /// Why the head was initialised (absent, or another number of classes).
    pub head_note: Option<String>,
}

impl LoadReport {
    /// One line per fact, for logs.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "loaded {} tensors ({}; layout: {})",
            self.loaded,
            self.dtypes
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.prefix
                .as_deref()
                .map_or("unprefixed".to_string(), |p| format!("prefix {p}."))
        );
        if let Some(note) = &self.head_note {
            s.push_str(&format!("\nhead initialised: {note}"));
        }
        if !self.initialised.is_empty() {
            s.push_str(&format!(
                "\ninitialised (absent from the checkpoint): {}",
                self.initialised.join(", ")
            ));
        }
        if !self.unexpected.is_empty() {
            s.push_str(&format!("\nunused checkpoint keys: {}", self.unexpected.join(", ")));
        }
        s
    }
}

fn remapper(family: Family, task: HeadKeys, drop_out_proj: bool) -> KeyRemapper {
    let mut rules: Vec<(String, String)> = COMMON_RULES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    match (task, family) {
        (HeadKeys::Sequence, Family::Bert) => {
            rules.push((r"^(?:backbone\.)?pooler\.dense\.".into(), "head.dense.".into()));
            rules.push((r"^classifier\.".into(), "head.out_proj.".into()));
        }
        (HeadKeys::Sequence, _) => rules.push((r"^classifier\.(dense|out_proj)\.".into(), "head.$1.".into())),
        (HeadKeys::Token, _) => rules.push((r"^classifier\.".into(), "token_head.".into())),
        (HeadKeys::Backbone, _) => {}
    }
    if drop_out_proj {
        rules.push((r"^head\.out_proj\.".into(), format!("{DROPPED}head.out_proj.")));
    }
    // The patterns are constants of this file: a failure is a bug caught by every test.
    KeyRemapper::from_patterns(rules).unwrap_or_default()
}

/// How to load: which classes the head should have.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Class names for the head. When their number differs from the checkpoint's head, the
    /// head's output layer is initialised (and reported) instead of loaded.
    pub labels: Option<Vec<String>>,
}

fn load_into<M: Module + ModuleSnapshot>(
    model: &mut M,
    dir: &ModelDir,
    family: Family,
    task: HeadKeys,
    drop_out_proj: bool,
) -> Result<(LoadReport, Vec<String>)> {
    let header = dir.header()?;
    let mut dtypes = BTreeMap::new();
    for info in header.values() {
        *dtypes.entry(info.dtype.clone()).or_insert(0) += 1;
    }
    let prefix = ["bert", "roberta", "electra"]
        .into_iter()
        .find(|p| header.keys().any(|k| k.starts_with(&format!("{p}."))))
        .map(str::to_string);
    if let Some(p) = &prefix
        && p != family.prefix()
    {
        return Err(BackboneError::weights(
            &dir.weights,
            format!(
                "the checkpoint's keys start with `{p}.` but config.json describes a {} model (model_type); they do not belong together",
                family.prefix()
            ),
        ));
    }
    let remap = remapper(family, task, drop_out_proj);
    // Module path → checkpoint key, so that the report speaks the checkpoint's language.
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
    let result = load_shards(model, dir, &remap)?;
    // Buffers transformers saves alongside parameters: not weights, nothing to report.
    let is_buffer = |k: &str| k.ends_with("position_ids") || k.ends_with("token_type_ids");
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !k.starts_with(DROPPED) && !is_buffer(k))
        .map(|k| original.get(k).cloned().unwrap_or_else(|| k.clone()))
        .collect();
    let missing = result.missing;
    Ok((
        LoadReport {
            prefix,
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

/// Checks the task's labels (`options.labels`) against a checkpoint's classification head of
/// `ckpt` classes (`head` names it in messages) and `config.json`'s `config_labels`. With task
/// labels, a head of another size is re-initialised: the returned note says so for the report.
/// Without them, the config and the checkpoint must agree.
///
/// # Errors
/// An empty label list, or a config whose label count differs from the checkpoint's head.
pub(crate) fn head_labels(
    options: &LoadOptions,
    ckpt: Option<usize>,
    config_labels: usize,
    config_path: &Path,
    head: &str,
) -> Result<Option<String>> {
    match (&options.labels, ckpt) {
        (Some(labels), _) if labels.is_empty() => {
            Err(BackboneError::Invalid("a classifier needs at least one class".into()))
        }
        (Some(labels), Some(c)) if c != labels.len() => Ok(Some(format!(
            "the checkpoint's {head} has {c} classes, the task {}",
            labels.len()
        ))),
        (None, Some(c)) if c != config_labels => Err(BackboneError::config(
            config_path,
            format!("config.json has {config_labels} labels but the checkpoint's {head} has {c} rows"),
        )),
        _ => Ok(None),
    }
}

/// Splits the missing module paths into the head's (initialised, reported) and the
/// backbone's (an error: features of a half-loaded backbone would be silent garbage).
pub(crate) fn settle_missing(
    mut report: LoadReport,
    missing: Vec<String>,
    head_prefixes: &[&str],
    weights: &Path,
) -> Result<LoadReport> {
    let (head, backbone): (Vec<String>, Vec<String>) = missing
        .into_iter()
        .partition(|p| head_prefixes.iter().any(|h| p.starts_with(h)));
    if !backbone.is_empty() {
        let shown: Vec<&str> = backbone.iter().take(8).map(String::as_str).collect();
        return Err(BackboneError::weights(
            weights,
            format!(
                "the checkpoint lacks {} backbone tensor(s), e.g. {} (is config.json's model_type right?{})",
                backbone.len(),
                shown.join(", "),
                if report.unexpected.is_empty() {
                    String::new()
                } else {
                    format!(
                        " unused keys: {}",
                        report.unexpected.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            ),
        ));
    }
    if !head.is_empty() && report.head_note.is_none() {
        report.head_note = Some("absent from the checkpoint".into());
    }
    report.head_initialised |= !head.is_empty();
    report.initialised = head;
    Ok(report)
}

/// Loads a sequence classifier. A head absent from the checkpoint (a base model) or with
/// another number of classes than `options.labels` is initialised as transformers would and
/// reported; the backbone must be complete.
///
/// # Errors
/// Missing files, a bad config, unreadable weights, a shape mismatch or missing backbone
/// tensors, each naming the file and key.
pub fn load_sequence_classifier(
    dir: &ModelDir,
    options: &LoadOptions,
    device: &Device,
) -> Result<(SequenceClassifier, EncoderConfig, LoadReport)> {
    let mut config = dir.encoder_config()?;
    let header = dir.header()?;
    let ckpt_classes = checkpoint_classes(&header, config.family);
    let note = head_labels(options, ckpt_classes, config.num_labels(), &dir.config, "head")?;
    if let Some(labels) = &options.labels {
        config = config.with_labels(labels.clone());
    }
    let mut model = config.init_sequence_classifier(device);
    let (mut report, missing) = load_into(&mut model, dir, config.family, HeadKeys::Sequence, note.is_some())?;
    if let Some(n) = note {
        report.head_note = Some(n);
    }
    let report = settle_missing(report, missing, &["head."], &dir.weights)?;
    Ok((model, config, report))
}

/// Loads a token classifier (NER); a missing or resized head is initialised and reported.
///
/// # Errors
/// As [`load_sequence_classifier`].
pub fn load_token_classifier(
    dir: &ModelDir,
    options: &LoadOptions,
    device: &Device,
) -> Result<(TokenClassifier, EncoderConfig, LoadReport)> {
    let mut config = dir.encoder_config()?;
    if let Some(labels) = &options.labels {
        config = config.with_labels(labels.clone());
    }
    let mut model = config.init_token_classifier(device);
    let (report, missing) = load_into(&mut model, dir, config.family, HeadKeys::Token, false)?;
    let report = settle_missing(report, missing, &["token_head."], &dir.weights)?;
    Ok((model, config, report))
}

/// Loads the backbone alone (feature extraction from a checkpoint with no head).
///
/// # Errors
/// As [`load_sequence_classifier`].
pub fn load_encoder(dir: &ModelDir, device: &Device) -> Result<(Encoder, EncoderConfig, LoadReport)> {
    let config = dir.encoder_config()?;
    #[derive(Module, Debug)]
    struct Wrapper {
        backbone: Encoder,
    }
    let mut model = Wrapper {
        backbone: config.init_encoder(device),
    };
    let (report, missing) = load_into(&mut model, dir, config.family, HeadKeys::Backbone, false)?;
    let report = settle_missing(report, missing, &[], &dir.weights)?;
    Ok((model.backbone, config, report))
}

/// Whether the checkpoint carries a sequence-classification head, and its number of classes.
pub fn checkpoint_classes(header: &BTreeMap<String, TensorInfo>, family: Family) -> Option<usize> {
    let key = match family {
        Family::Bert => "classifier.weight",
        Family::Roberta | Family::Electra => "classifier.out_proj.weight",
    };
    header.get(key).and_then(|t| t.shape.first().copied())
}
