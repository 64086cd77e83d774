//! The stages of a run: backbone → cache, heads → scores, metrics. Each is keyed by a content
//! hash of its resolved inputs, skipped when its valid output exists, and written into a
//! temporary directory that is renamed into place only when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result, bail, message};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ueb_backbones::is_decoder;
use ueb_backbones::multiple_choice::{
    ChoiceItemSplits, ChoiceQuestion, SubjectQuestion, choice_items, export_choice_items, fit_shots,
};
use ueb_backbones::scratch::{tokenizer_from_json, word_level_tokenizer_json};
use ueb_backbones::{
    ClassifierModel, DecoderClassifier, Encoded, ExportMeta, ExportSplits, FeatureSplit, FeatureSplits, FinetuneConfig,
    FinetuneMode, FinetuneReport, LabeledSplit, LoadOptions, ModelRef, SequenceClassifier, TextInput, TextTokenizer,
    export_cache, export_cache_from_features, finetune, finetune_on_features, load_causal_lm, load_decoder_classifier,
    load_sequence_classifier,
};
use ueb_cache::write_safetensors;
use ueb_cache::{FeatureCache, Split};
use ueb_heads::FitContext;

use crate::plan::{Backbone, Cell, ChoiceSettings, DatasetSpec, FEWSHOT, Plan, PlanHead, Source, reference_backbone};
use ueb_report::parquet::ScoreTable;
use ueb_report::results::{PROBS_FROM_CLASSIFIER, PROBS_FROM_HEAD, PROBS_SOURCE_KEY, SCORES_FILE};

/// Bump when a stage's output format or meaning changes: old outputs are then redone.
const STAGE_VERSION: u32 = 1;

/// `stage.json`: what was computed from what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// Hex SHA-256 of the stage's resolved inputs.
    pub hash: String,
    /// The inputs, for people reading the directory.
    pub inputs: serde_json::Value,
    /// Seconds the stage took.
    pub seconds: f64,
}

/// Hex SHA-256 of a JSON value (serde_json writes maps in insertion order, which is fixed for
/// our structs, so the hash is stable).
pub fn hash_json(v: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(v.to_string().as_bytes());
    hex(h)
}

/// SHA-256 of every file of a cache (its identity for bring-your-own caches).
fn hash_cache_files(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in [
        "meta.json",
        "classifier.safetensors",
        "train.safetensors",
        "val.safetensors",
        "test.safetensors",
    ] {
        let p = dir.join(f);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        h.update(f.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex(h))
}

/// The record of a finished stage in `dir`, if its hash is `hash`.
fn done(dir: &Path, hash: &str) -> bool {
    std::fs::read_to_string(dir.join("stage.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<StageRecord>(&t).ok())
        .is_some_and(|r| r.hash == hash)
}

/// Writes a stage's output: `fill` fills a fresh temporary sibling of `dir`, then `stage.json`
/// is written last inside it and the directory is renamed to `dir` (replacing an outdated one).
/// A kill at any moment leaves either the old state or the new one, plus at most a temporary
/// directory that the next run removes.
fn commit_dir(dir: &Path, record: &StageRecord, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let filled = fill(&tmp).and_then(|()| {
        std::fs::write(tmp.join("stage.json"), serde_json::to_string_pretty(record)?)
            .with_context(|| format!("cannot write {}", tmp.join("stage.json").display()))
    });
    if let Err(e) = filled {
        // A failed stage leaves nothing behind (a kill still may; the next run removes that).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old).with_context(|| format!("cannot move {}", dir.display()))?;
        std::fs::rename(&tmp, dir).with_context(|| format!("cannot write {}", dir.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    } else {
        std::fs::rename(&tmp, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    }
    Ok(())
}

/// Removes temporary directories and files left by killed runs (any `.*.tmp-*` / `.*.old-*`
/// under `root`), except those of live processes of this run (our own pid).
pub fn clean_stale(root: &Path) -> Result<usize> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-"));
            if stale {
                let pid: Option<u32> = name.rsplit('-').next().and_then(|s| s.parse().ok());
                if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
                    continue; // another shard, alive, is writing it
                }
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
                } else {
                    std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
                }
                removed += 1;
            } else if p.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(removed)
}

/// Where a cell's cache is and the hash that identifies its content.
pub struct CacheRef {
    /// The cache directory.
    pub dir: PathBuf,
    /// The cache stage's hash (or the files' hash for bring-your-own caches).
    pub hash: String,
}

/// SHA-256 of what a model reads from a dataset: every example of train, val and test (id,
/// text(s), label) in order, as `ueb data export` writes it, then of each of `optional` splits
/// the dataset has (a multiple-choice few-shot pool). The split fingerprints leave the text
/// out; a cache must be redone when a text changes.
fn data_digest(data: &ueb_data::Dataset, optional: &[&str]) -> Result<String> {
    let mut h = Sha256::new();
    for name in ["train", "val", "test"].iter().chain(optional) {
        let split = match data.split(name) {
            Ok(s) => s,
            Err(_) if optional.contains(name) => continue,
            Err(e) => return Err(e.into()),
        };
        h.update(name.as_bytes());
        h.update((split.len() as u64).to_le_bytes());
        for ex in split.examples() {
            h.update(ueb_data::example_json(data, ex).to_string().as_bytes());
            h.update([0x1E]);
        }
    }
    Ok(hex(h))
}

/// The lowercase hex of a finished SHA-256.
fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Inputs of a cache stage.
fn cache_inputs(backbone: &Backbone, dataset: &DatasetSpec, seed: u64, data: &str) -> serde_json::Value {
    serde_json::json!({
        "stage": "cache",
        "version": STAGE_VERSION,
        "backbone": backbone,
        "dataset": dataset,
        "data": data,
        "seed": seed,
    })
}

/// A stage's inputs with the precision of its model pass, which changes the numbers; f32, the
/// default, is left out so that stages recorded before precision existed stay valid.
fn with_precision(mut inputs: serde_json::Value, precision: crate::device::Precision) -> serde_json::Value {
    if !precision.is_f32()
        && let Some(map) = inputs.as_object_mut()
    {
        map.insert("precision".into(), serde_json::Value::from(precision.as_str()));
    }
    inputs
}

/// A stage's inputs with the engine an encoder fine-tunes on, where it is the host engine
/// (whose dropout masks and LoRA draws differ from burn's, so its numbers do too); burn's,
/// the engine before the host one existed, is left out so that those stages stay valid.
fn with_encoder_engine(
    mut inputs: serde_json::Value,
    backbone: &Backbone,
    device: &Device,
) -> Result<serde_json::Value> {
    if ueb_backbones::finetune_engine(&backbone.finetune, device, true)? == "host"
        && let Some(map) = inputs.as_object_mut()
    {
        map.insert("encoder_engine".into(), serde_json::Value::from("host"));
    }
    Ok(inputs)
}

/// Runs (or skips) the cache stage of `cell`.
pub fn cache_stage(cell: &Cell, plan: &Plan, out: &Path, device: &Device, progress: bool) -> Result<(CacheRef, bool)> {
    match &cell.source {
        Source::Cache { path } => Ok((
            CacheRef {
                dir: path.clone(),
                hash: hash_cache_files(path)?,
            },
            false,
        )),
        Source::Model { backbone, dataset } if dataset.is_multiple_choice() => {
            choice_cache_stage(cell, backbone, dataset, plan, out, device, progress)
        }
        Source::Model { backbone, dataset } => {
            let dir = out.join("caches").join(cell.rel_dir());
            // Reading the data is cheap next to fine-tuning, and its content (not where it
            // lives) is what the cache depends on.
            let data = dataset
                .load(&plan.data_root)
                .with_context(|| format!("cell {}", cell.rel_dir().display()))?;
            let digest = data_digest(&data, &[])?;
            let inputs = with_encoder_engine(cache_inputs(backbone, dataset, cell.seed, &digest), backbone, device)?;
            let hash = hash_json(&inputs);
            if done(&dir, &hash) && FeatureCache::load(&dir).is_ok() {
                tracing::info!("cache {}: up to date", cell.rel_dir().display());
                return Ok((CacheRef { dir, hash }, false));
            }
            let t0 = Instant::now();
            let texts = CellTexts::new(dataset, &data)?;
            let cache = if backbone.finetune.mode == FinetuneMode::Frozen {
                // A frozen backbone gives every seed the same features: compute them once per
                // (backbone, dataset) and train only the head per seed.
                let features = feature_stage(backbone, dataset, &texts, &digest, out, device, progress)?;
                build_frozen_cache(cell, backbone, dataset, &texts, &features, device, progress)
            } else {
                build_cache(cell, backbone, dataset, &texts, device, progress)
            }
            .with_context(|| format!("cell {}", cell.rel_dir().display()))?;
            let record = StageRecord {
                hash: hash.clone(),
                inputs,
                seconds: t0.elapsed().as_secs_f64(),
            };
            commit_dir(&dir, &record, |tmp| Ok(cache.write(tmp)?))?;
            tracing::info!("cache {}: built in {:.1} s", cell.rel_dir().display(), record.seconds);
            Ok((CacheRef { dir, hash }, true))
        }
    }
}

/// Rows per batch of a causal LM scoring multiple-choice prompts, unless `multiple_choice.batch_size` says
/// otherwise: k-shot prompts are long (MMLU 5-shot: up to about 2,000 tokens), so fewer rows
/// than a classifier's export batch.
const CHOICE_BATCH: usize = 8;

/// Runs (or skips) the cache stage of a multiple-choice cell: the causal LM scores the
/// questions as they are (no training), so the cache does not depend on the seed. It is
/// computed once per backbone × dataset into `caches/<backbone>/<dataset>/all-seeds/`, keyed
/// without the seed, and every seed's cell reads it; concurrent jobs wait for the one that
/// computes it.
fn choice_cache_stage(
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    plan: &Plan,
    out: &Path,
    device: &Device,
    progress: bool,
) -> Result<(CacheRef, bool)> {
    let rel = cell.cache_rel_dir();
    let dir = out.join("caches").join(&rel);
    let data = dataset
        .load(&plan.data_root)
        .with_context(|| format!("cell {}", cell.rel_dir().display()))?;
    let digest = data_digest(&data, &[FEWSHOT])?;
    let choice = backbone.multiple_choice.clone().unwrap_or_default();
    // The keys `mc-cache` and `mc` predate the `multiple_choice` name; they are hash inputs,
    // and renaming them would recompute every multiple-choice cache already on disk.
    let inputs = serde_json::json!({
        "stage": "mc-cache",
        "version": STAGE_VERSION,
        "model": backbone.model,
        "mc": choice,
        "dataset": dataset,
        "data": digest,
    });
    let inputs = with_precision(inputs, plan.precision);
    let hash = hash_json(&inputs);
    let _lock = StageLock::acquire(&dir)?;
    if done(&dir, &hash) && FeatureCache::load(&dir).is_ok() {
        tracing::info!("cache {}: up to date", rel.display());
        return Ok((CacheRef { dir, hash }, false));
    }
    let t0 = Instant::now();
    let cache = build_choice_cache(backbone, dataset, &data, &choice, device, progress)
        .with_context(|| format!("backbone {} on dataset {}", backbone.name, dataset.name))?;
    let record = StageRecord {
        hash: hash.clone(),
        inputs,
        seconds: t0.elapsed().as_secs_f64(),
    };
    commit_dir(&dir, &record, |tmp| Ok(cache.write(tmp)?))?;
    tracing::info!("cache {}: built in {:.1} s", rel.display(), record.seconds);
    Ok((CacheRef { dir, hash }, true))
}

/// The questions of one split, in order.
fn choice_questions(data: &ueb_data::Dataset, dataset: &str, split: &str) -> Result<Vec<SubjectQuestion>> {
    let s = data.split(split)?;
    s.examples()
        .iter()
        .map(|ex| {
            let ueb_data::Input::Choice {
                question,
                options,
                subject,
            } = &ex.input
            else {
                bail!("{dataset}: {split} example {} is not a multiple-choice question", ex.id);
            };
            let ueb_data::Label::Class(answer) = ex.label else {
                bail!("{dataset}: {split} example {} has token tags", ex.id);
            };
            Ok(SubjectQuestion {
                // MMLU's subjects are file names (`high_school_physics`); the prompt names
                // them in words, as the MMLU evaluation code does.
                subject: subject.as_deref().unwrap_or_default().replace('_', " "),
                question: ChoiceQuestion {
                    question: question.clone(),
                    choices: options.clone(),
                    answer,
                },
            })
        })
        .collect()
}

/// Loads the causal LM and scores every question of the three splits, each prompted with its
/// subject and, for k-shot, the first k solved examples of that subject in the few-shot pool.
fn build_choice_cache(
    backbone: &Backbone,
    dataset: &DatasetSpec,
    data: &ueb_data::Dataset,
    choice: &ChoiceSettings,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let name = &dataset.name;
    let mut splits = [
        choice_questions(data, name, "train")?,
        choice_questions(data, name, "val")?,
        choice_questions(data, name, "test")?,
    ];
    // One cache has one number of options C: the most common one (MMLU: always 4). ARC has a
    // few questions with 3 or 5 options; they are left out, the same ones for every model (so
    // base and instruct caches stay aligned), and counted in the cache's provenance.
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for q in splits.iter().flatten() {
        *counts.entry(q.question.choices.len()).or_default() += 1;
    }
    let c = counts
        .iter()
        .max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k)))
        .map(|(k, _)| *k)
        .ok_or_else(|| message!("{name}: no questions"))?;
    let mut left_out = serde_json::Map::new();
    for (split, qs) in SPLITS.iter().zip(splits.iter_mut()) {
        let before = qs.len();
        qs.retain(|q| q.question.choices.len() == c);
        if qs.len() < before {
            tracing::warn!(
                "{name}: {} of {before} {split} questions do not have {c} options and are left out",
                before - qs.len()
            );
            left_out.insert((*split).to_string(), (before - qs.len()).into());
        }
    }
    let mut shots: std::collections::HashMap<String, Vec<ChoiceQuestion>> = std::collections::HashMap::new();
    if choice.shots > 0 {
        for q in choice_questions(data, name, FEWSHOT)? {
            let pool = shots.entry(q.subject).or_default();
            if pool.len() < choice.shots && q.question.choices.len() == c {
                pool.push(q.question);
            }
        }
        for q in splits.iter().flatten() {
            let have = shots.get(&q.subject).map_or(0, Vec::len);
            if have < choice.shots {
                bail!(
                    "{name}: subject {:?} has {have} solved example(s) with {c} options in the few-shot pool, fewer than multiple_choice.shots = {}",
                    q.subject,
                    choice.shots
                );
            }
        }
    }
    let model_dir = ModelRef::parse(&backbone.model)?.resolve()?;
    if !is_decoder(&model_dir)? {
        bail!(
            "{} is not a causal LM (LLaMA, Qwen2, Qwen3); multiple-choice datasets need one",
            backbone.model
        );
    }
    let (lm, config, report) = load_causal_lm(&model_dir, device)?;
    tracing::info!("{}: {}", backbone.name, report.summary());
    let tokenizer = TextTokenizer::from_file(&model_dir.tokenizer, &config, choice.max_length)?;
    let [train, val, test] = &splits;
    let (mut train, mut val, mut test) = (
        choice_items(train, &shots),
        choice_items(val, &shots),
        choice_items(test, &shots),
    );
    let mut fewer_shots = serde_json::Map::new();
    for (split, items) in SPLITS.iter().zip([&mut train, &mut val, &mut test]) {
        let n = fit_shots(&tokenizer, items)?;
        if n > 0 {
            tracing::warn!(
                "{name}: {n} {split} prompt(s) reach max_length {} with {} shots and have fewer solved examples",
                tokenizer.max_length(),
                choice.shots
            );
            fewer_shots.insert((*split).to_string(), n.into());
        }
    }
    let total = train.len() + val.len() + test.len();
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30} [{bar:30}] {pos}/{len} questions, {elapsed_precise} ETA {eta_precise}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("multiple choice {}/{}", backbone.name, name));
        b
    });
    let mut cache = export_choice_items(
        lm,
        &tokenizer,
        c,
        ChoiceItemSplits {
            train: &train,
            val: &val,
            test: &test,
        },
        choice.batch_size.unwrap_or(CHOICE_BATCH),
        device,
        bar.as_ref(),
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let fingerprint = |split: &str| data.split(split).map(|s| s.fingerprint().to_string()).ok();
    cache.meta.provenance = serde_json::json!({
        "exporter": format!("ueb {}", env!("CARGO_PKG_VERSION")),
        "backbone": backbone.name,
        "model": backbone.model,
        "dataset": name,
        "fingerprints": {"train": fingerprint("train"), "val": fingerprint("val"), "test": fingerprint("test"), "fewshot": fingerprint(FEWSHOT)},
        "multiple_choice": {"shots": choice.shots, "num_choices": c, "max_length": tokenizer.max_length(), "left_out": left_out, "fewer_shots": fewer_shots},
    });
    Ok(cache)
}

/// The texts (or text pairs), labels and fingerprint of one split.
struct SplitTexts {
    texts: Vec<(String, Option<String>)>,
    labels: Vec<usize>,
    fingerprint: String,
}

/// The three splits of a cell's dataset as a model reads them.
struct CellTexts {
    label_names: Vec<String>,
    train: SplitTexts,
    val: SplitTexts,
    test: SplitTexts,
}

impl CellTexts {
    fn new(dataset: &DatasetSpec, data: &ueb_data::Dataset) -> Result<Self> {
        let split = |name: &str| -> Result<SplitTexts> {
            let s = data.split(name)?;
            let mut texts = Vec::with_capacity(s.len());
            let mut labels = Vec::with_capacity(s.len());
            for ex in s.examples() {
                texts.push(match &ex.input {
                    ueb_data::Input::Text(t) => (t.clone(), None),
                    ueb_data::Input::Pair(a, b) => (a.clone(), Some(b.clone())),
                    _ => bail!("{}: example {} is not a text or a text pair", dataset.name, ex.id),
                });
                labels.push(match &ex.label {
                    ueb_data::Label::Class(c) => *c,
                    ueb_data::Label::Tags(_) => bail!("{}: example {} has token tags", dataset.name, ex.id),
                });
            }
            Ok(SplitTexts {
                texts,
                labels,
                fingerprint: s.fingerprint().to_string(),
            })
        };
        Ok(Self {
            label_names: data.label_names().to_vec(),
            train: split("train")?,
            val: split("val")?,
            test: split("test")?,
        })
    }

    fn fingerprints(&self) -> serde_json::Value {
        serde_json::json!({
            "train": self.train.fingerprint,
            "val": self.val.fingerprint,
            "test": self.test.fingerprint,
        })
    }
}

/// A backbone with its classification head, as loaded: an encoder or a decoder.
enum Loaded {
    Encoder(Box<SequenceClassifier>),
    Decoder(Box<DecoderClassifier>),
}

/// Builds (scratch) or loads the backbone with a head for `labels`, and its tokenizer. The
/// device is seeded with the cell's seed first: a new head (or a scratch model) is drawn from it.
fn load_model(
    backbone: &Backbone,
    labels: &[String],
    train: &SplitTexts,
    seed: u64,
    device: &Device,
) -> Result<(Loaded, TextTokenizer)> {
    device.seed(seed);
    if backbone.model == "scratch" {
        let scratch = backbone.scratch.clone().unwrap_or_default();
        let json = word_level_tokenizer_json(
            train
                .texts
                .iter()
                .flat_map(|(a, b)| std::iter::once(a.as_str()).chain(b.as_deref())),
            scratch.max_vocab,
        );
        let vocab = json["model"]["vocab"].as_object().map_or(0, serde_json::Map::len);
        let config = scratch.encoder_config(vocab, labels.to_vec())?;
        let tok = TextTokenizer::from_tokenizer(
            tokenizer_from_json(&json)?,
            "scratch tokenizer",
            &config,
            backbone.max_length,
        )?;
        return Ok((Loaded::Encoder(Box::new(config.init_sequence_classifier(device))), tok));
    }
    let dir = ModelRef::parse(&backbone.model)?.resolve()?;
    let options = LoadOptions {
        labels: Some(labels.to_vec()),
    };
    if is_decoder(&dir)? {
        let (model, config, report) = load_decoder_classifier(&dir, &options, device)?;
        tracing::info!("{}: {}", backbone.name, report.summary());
        let tok = TextTokenizer::from_file(&dir.tokenizer, &config, backbone.max_length)?;
        Ok((Loaded::Decoder(Box::new(model)), tok))
    } else {
        let (model, config, report) = load_sequence_classifier(&dir, &options, device)?;
        tracing::info!("{}: {}", backbone.name, report.summary());
        let tok = TextTokenizer::from_file(&dir.tokenizer, &config, backbone.max_length)?;
        Ok((Loaded::Encoder(Box::new(model)), tok))
    }
}

/// Tokenizes one split's texts.
fn encode(tokenizer: &TextTokenizer, texts: &[(String, Option<String>)]) -> Result<Vec<Encoded>> {
    let inputs: Vec<TextInput<'_>> = texts
        .iter()
        .map(|(a, b)| match b {
            Some(b) => TextInput::Pair(a, b),
            None => TextInput::Single(a),
        })
        .collect();
    Ok(tokenizer.encode(&inputs)?)
}

/// What the cache's `meta.json` records about how it was made.
fn provenance(
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    report: &FinetuneReport,
) -> serde_json::Value {
    serde_json::json!({
        "exporter": format!("ueb {}", env!("CARGO_PKG_VERSION")),
        "backbone": backbone.name,
        "model": backbone.model,
        "dataset": dataset.name,
        "fingerprints": texts.fingerprints(),
        "seed": cell.seed,
        "finetune": report,
    })
}

fn log_finetune(cell: &Cell, cfg: &FinetuneConfig, report: &FinetuneReport) {
    let best = &report.epochs[report.best_epoch - 1];
    tracing::info!(
        "{}: fine-tuned ({}), best epoch {} of {}: val accuracy {:.4}, loss {:.4}",
        cell.rel_dir().display(),
        cfg.mode.name(),
        report.best_epoch,
        report.epochs.len(),
        best.val_accuracy,
        best.val_loss
    );
}

/// Fine-tunes (or trains) the backbone on the cell's dataset and exports the cache.
fn build_cache(
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let (model, tokenizer) = load_model(backbone, &texts.label_names, &texts.train, cell.seed, device)?;
    match model {
        Loaded::Encoder(m) => finetune_and_export(*m, &tokenizer, cell, backbone, dataset, texts, device, progress),
        Loaded::Decoder(m) => finetune_and_export(*m, &tokenizer, cell, backbone, dataset, texts, device, progress),
    }
}

#[allow(clippy::too_many_arguments)]
fn finetune_and_export<M: ClassifierModel>(
    model: M,
    tokenizer: &TextTokenizer,
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let train_e = encode(tokenizer, &texts.train.texts)?;
    let val_e = encode(tokenizer, &texts.val.texts)?;
    let test_e = encode(tokenizer, &texts.test.texts)?;
    let cfg = FinetuneConfig {
        seed: cell.seed,
        ..backbone.finetune.clone()
    };
    let (train, val, test) = (
        LabeledSplit {
            encoded: &train_e,
            labels: &texts.train.labels,
        },
        LabeledSplit {
            encoded: &val_e,
            labels: &texts.val.labels,
        },
        LabeledSplit {
            encoded: &test_e,
            labels: &texts.test.labels,
        },
    );
    let (model, report) = finetune(model, tokenizer, train, val, &cfg, device, progress)?;
    log_finetune(cell, &cfg, &report);
    Ok(export_cache(
        model,
        tokenizer,
        ExportSplits { train, val, test },
        ExportMeta {
            label_names: texts.label_names.clone(),
            provenance: provenance(cell, backbone, dataset, texts, &report),
        },
        EXPORT_BATCH,
        device,
        None,
    )?)
}

/// Rows per batch of a model pass when exporting.
const EXPORT_BATCH: usize = 64;

/// The features of a frozen backbone on the three splits: `[N, d]` each, row-major.
struct SplitFeatures {
    dim: usize,
    train: Vec<f32>,
    val: Vec<f32>,
    test: Vec<f32>,
}

const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Runs (or skips) the feature stage of a frozen backbone on a dataset, shared by every seed:
/// `features/<backbone>/<dataset>/{train,val,test}.safetensors`. Keyed by what the features
/// depend on (model, truncation, data), not by the seed or the head's training settings.
/// Concurrent jobs wait for the one that computes it.
fn feature_stage(
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    digest: &str,
    out: &Path,
    device: &Device,
    progress: bool,
) -> Result<SplitFeatures> {
    let dir = out.join("features").join(&backbone.name).join(&dataset.name);
    let inputs = serde_json::json!({
        "stage": "features",
        "version": STAGE_VERSION,
        "model": backbone.model,
        "max_length": backbone.max_length,
        "dataset": dataset,
        "data": digest,
        "batch_size": EXPORT_BATCH,
    });
    let hash = hash_json(&inputs);
    let _lock = StageLock::acquire(&dir)?;
    if done(&dir, &hash)
        && let Ok(f) = read_features(&dir)
    {
        tracing::info!("features {}/{}: up to date", backbone.name, dataset.name);
        return Ok(f);
    }
    let t0 = Instant::now();
    // Any seed: the head drawn here is dropped, only the backbone runs.
    let (model, tokenizer) = load_model(backbone, &texts.label_names, &texts.train, 0, device)?;
    let extractor = match model {
        Loaded::Encoder(m) => m.split().0,
        Loaded::Decoder(m) => m.split().0,
    };
    let total = texts.train.texts.len() + texts.val.texts.len() + texts.test.texts.len();
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30} [{bar:30}] {pos}/{len} texts, {elapsed_precise} ETA {eta_precise}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("features {}/{}", backbone.name, dataset.name));
        b
    });
    let mut parts = Vec::with_capacity(3);
    for s in [&texts.train, &texts.val, &texts.test] {
        let enc = encode(&tokenizer, &s.texts)?;
        parts.push(extractor.run(&tokenizer, &enc, EXPORT_BATCH, device, bar.as_ref())?);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let dim = parts[0].dim;
    let mut it = parts.into_iter().map(|p| p.features);
    let features = SplitFeatures {
        dim,
        train: it.next().unwrap_or_default(),
        val: it.next().unwrap_or_default(),
        test: it.next().unwrap_or_default(),
    };
    let record = StageRecord {
        hash,
        inputs,
        seconds: t0.elapsed().as_secs_f64(),
    };
    commit_dir(&dir, &record, |tmp| {
        for (name, f) in SPLITS.iter().zip([&features.train, &features.val, &features.test]) {
            let path = tmp.join(format!("{name}.safetensors"));
            write_safetensors(&path, &[("features", f, vec![f.len() / dim, dim])], &[], &[], None)?;
        }
        Ok(())
    })?;
    tracing::info!(
        "features {}/{}: computed in {:.1} s",
        backbone.name,
        dataset.name,
        record.seconds
    );
    Ok(features)
}

/// Reads a finished feature stage back.
fn read_features(dir: &Path) -> Result<SplitFeatures> {
    let mut dim = 0;
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(3);
    for name in SPLITS {
        let p = dir.join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}", p.display()))?;
        let t = st
            .tensor("features")
            .with_context(|| format!("{}: no `features` tensor", p.display()))?;
        let [_, d] = t.shape() else {
            bail!("{}: `features` is not a matrix", p.display());
        };
        if t.dtype() != safetensors::Dtype::F32 || (dim != 0 && *d != dim) {
            bail!("{}: `features` is not f32 of width {dim}", p.display());
        }
        dim = *d;
        out.push(
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    let mut it = out.into_iter();
    Ok(SplitFeatures {
        dim,
        train: it.next().unwrap_or_default(),
        val: it.next().unwrap_or_default(),
        test: it.next().unwrap_or_default(),
    })
}

/// The cache of a frozen backbone: the head trained per seed on the shared features.
fn build_frozen_cache(
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    features: &SplitFeatures,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let (model, _) = load_model(backbone, &texts.label_names, &texts.train, cell.seed, device)?;
    match model {
        Loaded::Encoder(m) => train_head_and_export(*m, cell, backbone, dataset, texts, features, device, progress),
        Loaded::Decoder(m) => train_head_and_export(*m, cell, backbone, dataset, texts, features, device, progress),
    }
}

#[allow(clippy::too_many_arguments)]
fn train_head_and_export<M: ClassifierModel>(
    model: M,
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    texts: &CellTexts,
    features: &SplitFeatures,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let d = features.dim;
    let splits = FeatureSplits {
        train: FeatureSplit::new(&features.train, d, &texts.train.labels)?,
        val: FeatureSplit::new(&features.val, d, &texts.val.labels)?,
        test: FeatureSplit::new(&features.test, d, &texts.test.labels)?,
    };
    let cfg = FinetuneConfig {
        seed: cell.seed,
        ..backbone.finetune.clone()
    };
    let (model, report) = finetune_on_features(model, splits.train, splits.val, &cfg, device, progress)?;
    log_finetune(cell, &cfg, &report);
    Ok(export_cache_from_features(
        model,
        splits,
        ExportMeta {
            label_names: texts.label_names.clone(),
            provenance: provenance(cell, backbone, dataset, texts, &report),
        },
        device,
    )?)
}

/// An exclusive claim on a stage directory among the jobs of one run (`--jobs`): a lock file
/// beside it holding the owner's pid. A lock whose process is gone is taken over.
struct StageLock {
    path: PathBuf,
}

impl StageLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = parent.join(format!(".{name}.lock"));
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write as _;
                    write!(f, "{}", std::process::id()).with_context(|| format!("cannot write {}", path.display()))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner: Option<u32> = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok());
                    let alive = owner.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or_default();
                    // Dead owner, or a file its owner died before writing its pid into.
                    if (owner.is_some() && !alive) || (owner.is_none() && age.as_secs() > 10) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
    }
}

impl Drop for StageLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The cache a head's `reference` names, with its identity: `backbone:NAME` is that
/// backbone's cache for the cell's dataset and seed (built here if no process has built it
/// yet, e.g. when it belongs to another shard), a directory is hashed by its files.
fn reference_cache(cell: &Cell, head: &PlanHead, plan: &Plan, out: &Path, device: &Device) -> Result<Option<CacheRef>> {
    if let Some(name) = reference_backbone(&head.spec) {
        let rc = plan
            .cells
            .iter()
            .find(|c| c.backbone == name && c.dataset == cell.dataset && c.seed == cell.seed)
            .ok_or_else(|| {
                message!(
                    "head {}: the reference backbone {name} has no cell for {}/seed-{}",
                    head.label,
                    cell.dataset,
                    cell.seed
                )
            })?;
        return Ok(Some(cache_stage(rc, plan, out, device, false)?.0));
    }
    match &head.spec {
        ueb_heads::HeadSpec::ChoiceTemperature(cfg) => match &cfg.reference {
            Some(dir) => Ok(Some(CacheRef {
                dir: dir.clone(),
                hash: hash_cache_files(dir).with_context(|| format!("head {}: reference", head.label))?,
            })),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Runs (or skips) the head stage: fit on the cache, score the test split, write
/// `scores.parquet` (index, label, prediction, correct, score, confidence) and `head.json`.
pub fn head_stage(
    cell: &Cell,
    head: &PlanHead,
    cache: &CacheRef,
    plan: &Plan,
    out: &Path,
    device: &Device,
) -> Result<bool> {
    let reference = reference_cache(cell, head, plan, out, device)?;
    // The head fits against the reference's directory; the hash holds the reference's
    // identity (its stage hash or its files'), so a rebuilt reference re-runs the head.
    let mut spec = head.spec.clone();
    if let (ueb_heads::HeadSpec::ChoiceTemperature(cfg), Some(r)) = (&mut spec, &reference) {
        cfg.reference = Some(r.dir.clone());
    }
    let dir = out.join("cells").join(cell.rel_dir()).join(&head.label);
    let mut inputs = serde_json::json!({
        "stage": "head",
        "version": STAGE_VERSION,
        "cache": cache.hash,
        "head": head.spec,
        "seed": cell.seed,
    });
    if let Some(r) = &reference {
        inputs["reference"] = r.hash.clone().into();
    }
    let spec = &spec;
    let hash = hash_json(&inputs);
    if done(&dir, &hash) && dir.join(SCORES_FILE).is_file() {
        return Ok(false);
    }
    let t0 = Instant::now();
    let (fc, _) = FeatureCache::load(&cache.dir)?;
    let (fit, select) = spec.default_splits();
    let ctx = FitContext {
        cache: &fc,
        fit,
        select,
        seed: cell.seed,
        device,
    };
    let head = spec
        .fit(&ctx)
        .with_context(|| format!("{}: head {}", cell.rel_dir().display(), head.label))?;
    let test = fc.split(Split::Test);
    let score = head.score(test)?;
    // Whose probabilities the calibration metrics read: the head's own, or the classifier's
    // (a head that only scores); `ueb report` marks the latter in its calibration tables.
    let (probs, source) = match head.probabilities(test) {
        Some(p) => (p?, PROBS_FROM_HEAD),
        None => (test.probs(), PROBS_FROM_CLASSIFIER),
    };
    let c = test.num_classes();
    let n = test.n();
    let bytes = ScoreTable::new(&test.labels, &probs, c, score).to_bytes()?;
    let summary = head.summary();
    let record = StageRecord {
        hash,
        inputs,
        seconds: t0.elapsed().as_secs_f64(),
    };
    commit_dir(&dir, &record, |tmp| {
        std::fs::write(tmp.join(SCORES_FILE), &bytes)?;
        std::fs::write(tmp.join("head.json"), serde_json::to_string_pretty(&summary)?)?;
        // The probabilities the calibration metrics are computed from.
        let path = tmp.join("probs.safetensors");
        let meta = std::collections::HashMap::from([(PROBS_SOURCE_KEY.to_string(), source.to_string())]);
        write_safetensors(&path, &[], &[], &[("probs", &probs, vec![n, c])], Some(meta))?;
        Ok(())
    })?;
    Ok(true)
}
