//! The stages of a run: backbone → cache, heads → scores, metrics. Each is keyed by a content
//! hash of its resolved inputs, skipped when its valid output exists, and written into a
//! temporary directory that is renamed into place only when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ueb_backbones::scratch::{tokenizer_from_json, word_level_tokenizer_json};
use ueb_backbones::{
    Encoded, ExportMeta, ExportSplits, FinetuneConfig, LabeledSplit, LoadOptions, ModelRef, TextInput, TextTokenizer,
    export_cache, finetune, load_sequence_classifier,
};
use ueb_heads::{FeatureCache, FitContext, HeadSpec, Split};

use super::parquet::{Column, to_bytes};
use super::plan::{Backbone, Cell, DatasetSpec, Plan, Source};

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
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
    fill(&tmp)?;
    std::fs::write(tmp.join("stage.json"), serde_json::to_string_pretty(record)?)
        .with_context(|| format!("cannot write {}", tmp.join("stage.json").display()))?;
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
/// text(s), label) in order, as `ueb data export` writes it. The split fingerprints leave the
/// text out; a cache must be redone when a text changes.
fn data_digest(data: &ueb_data::Dataset) -> Result<String> {
    let mut h = Sha256::new();
    for name in ["train", "val", "test"] {
        let split = data.split(name)?;
        h.update(name.as_bytes());
        h.update((split.len() as u64).to_le_bytes());
        for ex in split.examples() {
            h.update(ueb_data::example_json(data, ex).to_string().as_bytes());
            h.update([0x1E]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
        Source::Model { backbone, dataset } => {
            let dir = out.join("caches").join(cell.rel_dir());
            // Reading the data is cheap next to fine-tuning, and its content (not where it
            // lives) is what the cache depends on.
            let data = dataset
                .load(&plan.data_root)
                .with_context(|| format!("cell {}", cell.rel_dir().display()))?;
            let inputs = cache_inputs(backbone, dataset, cell.seed, &data_digest(&data)?);
            let hash = hash_json(&inputs);
            if done(&dir, &hash) && FeatureCache::load(&dir).is_ok() {
                tracing::info!("cache {}: up to date", cell.rel_dir().display());
                return Ok((CacheRef { dir, hash }, false));
            }
            let t0 = Instant::now();
            let cache = build_cache(cell, backbone, dataset, &data, device, progress)
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

/// Fine-tunes (or trains) the backbone on the cell's dataset and exports the cache.
fn build_cache(
    cell: &Cell,
    backbone: &Backbone,
    dataset: &DatasetSpec,
    data: &ueb_data::Dataset,
    device: &Device,
    progress: bool,
) -> Result<FeatureCache> {
    let labels = data.label_names().to_vec();
    type Texts = Vec<(String, Option<String>)>;
    let split_texts = |name: &str| -> Result<(Texts, Vec<usize>, String)> {
        let s = data.split(name)?;
        let mut texts = Vec::with_capacity(s.len());
        let mut ys = Vec::with_capacity(s.len());
        for ex in s.examples() {
            texts.push(match &ex.input {
                ueb_data::Input::Text(t) => (t.clone(), None),
                ueb_data::Input::Pair(a, b) => (a.clone(), Some(b.clone())),
                _ => bail!("{}: example {} is not a text or a text pair", dataset.name, ex.id),
            });
            ys.push(match &ex.label {
                ueb_data::Label::Class(c) => *c,
                ueb_data::Label::Tags(_) => bail!("{}: example {} has token tags", dataset.name, ex.id),
            });
        }
        Ok((texts, ys, s.fingerprint().to_string()))
    };
    let (train_t, train_y, train_fp) = split_texts("train")?;
    let (val_t, val_y, val_fp) = split_texts("val")?;
    let (test_t, test_y, test_fp) = split_texts("test")?;
    device.seed(cell.seed);
    let (model, tokenizer) = if backbone.model == "scratch" {
        let scratch = backbone.scratch.clone().unwrap_or_default();
        let json = word_level_tokenizer_json(
            train_t
                .iter()
                .flat_map(|(a, b)| std::iter::once(a.as_str()).chain(b.as_deref())),
            scratch.max_vocab,
        );
        let vocab = json["model"]["vocab"].as_object().map_or(0, serde_json::Map::len);
        let config = scratch.encoder_config(vocab, labels.clone())?;
        let tok = TextTokenizer::from_tokenizer(
            tokenizer_from_json(&json)?,
            "scratch tokenizer",
            &config,
            backbone.max_length,
        )?;
        (config.init_sequence_classifier(device), tok)
    } else {
        let dir = ModelRef::parse(&backbone.model)?.resolve()?;
        let (model, config, report) = load_sequence_classifier(
            &dir,
            &LoadOptions {
                labels: Some(labels.clone()),
            },
            device,
        )?;
        tracing::info!("{}: {}", backbone.name, report.summary());
        let tok = TextTokenizer::from_file(&dir.tokenizer, &config, backbone.max_length)?;
        (model, tok)
    };
    let enc = |texts: &[(String, Option<String>)]| -> Result<Vec<Encoded>> {
        let inputs: Vec<TextInput<'_>> = texts
            .iter()
            .map(|(a, b)| match b {
                Some(b) => TextInput::Pair(a, b),
                None => TextInput::Single(a),
            })
            .collect();
        Ok(tokenizer.encode(&inputs)?)
    };
    let (train_e, val_e, test_e) = (enc(&train_t)?, enc(&val_t)?, enc(&test_t)?);
    let cfg = FinetuneConfig {
        seed: cell.seed,
        ..backbone.finetune.clone()
    };
    let train = LabeledSplit {
        encoded: &train_e,
        labels: &train_y,
    };
    let val = LabeledSplit {
        encoded: &val_e,
        labels: &val_y,
    };
    let test = LabeledSplit {
        encoded: &test_e,
        labels: &test_y,
    };
    let (model, report) = finetune(model, &tokenizer, train, val, &cfg, device, progress)?;
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
    let provenance = serde_json::json!({
        "exporter": format!("ueb {}", env!("CARGO_PKG_VERSION")),
        "backbone": backbone.name,
        "model": backbone.model,
        "dataset": dataset.name,
        "fingerprints": {"train": train_fp, "val": val_fp, "test": test_fp},
        "seed": cell.seed,
        "finetune": report,
    });
    Ok(export_cache(
        model,
        &tokenizer,
        ExportSplits { train, val, test },
        ExportMeta {
            label_names: labels,
            provenance,
        },
        64,
        device,
        None,
    )?)
}

/// What a head stage leaves in its directory besides `stage.json`.
pub const SCORES_FILE: &str = "scores.parquet";

/// The scores of one head on the test split, in row order.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadScores {
    /// Gold labels.
    pub labels: Vec<i64>,
    /// The head's probabilities `[N, C]` (calibrated ones for calibrating heads).
    pub probs: Vec<f64>,
    /// Number of classes.
    pub num_classes: usize,
    /// `u`, higher = more uncertain.
    pub score: Vec<f64>,
}

/// Runs (or skips) the head stage: fit on the cache, score the test split, write
/// `scores.parquet` (index, label, prediction, correct, score, confidence) and `head.json`.
pub fn head_stage(cell: &Cell, spec: &HeadSpec, cache: &CacheRef, out: &Path, device: &Device) -> Result<bool> {
    let dir = out.join("cells").join(cell.rel_dir()).join(spec.name());
    let inputs = serde_json::json!({
        "stage": "head",
        "version": STAGE_VERSION,
        "cache": cache.hash,
        "head": spec,
        "seed": cell.seed,
    });
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
        .with_context(|| format!("{}: head {}", cell.rel_dir().display(), spec.name()))?;
    let test = fc.split(Split::Test);
    let score = head.score(test)?;
    let probs = match head.probabilities(test) {
        Some(p) => p?,
        None => test.probs(),
    };
    let c = test.num_classes();
    let n = test.n();
    let mut prediction = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    for row in probs.chunks(c) {
        let (arg, max) = row
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
        prediction.push(arg as i64);
        confidence.push(max);
    }
    let correct: Vec<bool> = prediction.iter().zip(&test.labels).map(|(p, y)| p == y).collect();
    let index: Vec<i64> = (0..n as i64).collect();
    let bytes = to_bytes(&[
        Column::I64("index", &index),
        Column::I64("label", &test.labels),
        Column::I64("prediction", &prediction),
        Column::Bool("correct", &correct),
        Column::F64("score", &score),
        Column::F64("confidence", &confidence),
    ])?;
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
        let p: Vec<u8> = probs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![n, c], &p)?;
        std::fs::write(
            tmp.join("probs.safetensors"),
            safetensors::serialize([("probs", view)], None)?,
        )?;
        Ok(())
    })?;
    Ok(true)
}

/// Reads back a finished head stage.
pub fn read_head(dir: &Path) -> Result<HeadScores> {
    let rows = super::parquet::read_rows(&dir.join(SCORES_FILE))?;
    let mut labels = Vec::with_capacity(rows.len());
    let mut score = Vec::with_capacity(rows.len());
    for r in &rows {
        for (name, f) in r {
            match (name.as_str(), f) {
                ("label", parquet::record::Field::Long(v)) => labels.push(*v),
                ("score", parquet::record::Field::Double(v)) => score.push(*v),
                _ => {}
            }
        }
    }
    let p = dir.join("probs.safetensors");
    let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}", p.display()))?;
    let t = st
        .tensor("probs")
        .with_context(|| format!("{}: no probs", p.display()))?;
    let num_classes = t.shape().get(1).copied().unwrap_or(0);
    let probs = t
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect();
    if labels.len() != score.len() {
        bail!("{}: columns of different lengths", dir.join(SCORES_FILE).display());
    }
    Ok(HeadScores {
        labels,
        probs,
        num_classes,
        score,
    })
}
