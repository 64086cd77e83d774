//! Export to the feature cache: features, logits and labels per split, and the classifier in
//! PyTorch layout (`docs/cache-format.md`).

use burn::tensor::{Device, Tensor, TensorData};
use indicatif::ProgressBar;
use ueb_cache::{CACHE_FORMAT, CACHE_VERSION, CacheMeta, Classifier, ClassifierMeta, FeatureCache, RowUnit, SplitData};

use crate::encoder::SequenceClassifier;
use crate::error::{BackboneError, Result};
use crate::finetune::{ClassifierModel, FeatureSplit, LabeledSplit};
use crate::readback::to_host;
use crate::tokenize::TextTokenizer;

/// The head of an encoder classifier as the cache's `mlp` classifier (tanh for BERT and
/// RoBERTa, GELU for ELECTRA).
///
/// # Errors
/// A tensor that cannot be read back.
pub fn classifier_of(model: &SequenceClassifier) -> Result<Classifier> {
    model.cache_classifier()
}

/// The three splits to export, labeled and tokenized.
#[derive(Debug, Clone, Copy)]
pub struct ExportSplits<'a> {
    /// Training split.
    pub train: LabeledSplit<'a>,
    /// Validation split.
    pub val: LabeledSplit<'a>,
    /// Test split.
    pub test: LabeledSplit<'a>,
}

/// What `meta.json` says besides the shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMeta {
    /// One name per class.
    pub label_names: Vec<String>,
    /// Free-form provenance (model, revision, dataset fingerprints, seed, fine-tuning), as is.
    pub provenance: serde_json::Value,
}

/// Runs `model` over every split and assembles the cache (not yet written: call
/// [`FeatureCache::write`]). Encoders export their head as the `mlp` classifier, decoders
/// their `score` as the `linear` one.
///
/// # Errors
/// Empty splits, label errors, non-finite outputs.
pub fn export_cache<M: ClassifierModel>(
    model: M,
    tokenizer: &TextTokenizer,
    splits: ExportSplits<'_>,
    meta: ExportMeta,
    batch_size: usize,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<FeatureCache> {
    let ExportMeta {
        label_names,
        provenance,
    } = meta;
    let classifier = model.cache_classifier()?;
    let c = classifier.num_classes;
    if label_names.len() != c {
        return Err(BackboneError::Invalid(format!(
            "{} label names for a {c}-class head",
            label_names.len()
        )));
    }
    let extractor = model.into_extractor();
    let run = |name: &str, s: LabeledSplit<'_>| -> Result<SplitData> {
        if s.encoded.len() != s.labels.len() {
            return Err(BackboneError::Invalid(format!(
                "the {name} split has {} inputs but {} labels",
                s.encoded.len(),
                s.labels.len()
            )));
        }
        if let Some((i, l)) = s.labels.iter().enumerate().find(|(_, l)| **l >= c) {
            return Err(BackboneError::Invalid(format!(
                "{name} row {i}: label {l} is out of range for {c} classes"
            )));
        }
        let out = extractor.run(tokenizer, s.encoded, batch_size, device, progress)?;
        Ok(SplitData {
            logits: out.logits.unwrap_or_default(),
            features: out.features,
            labels: s.labels.iter().map(|&l| l as i64).collect(),
            group: None,
            dim: classifier.dim,
            num_classes: c,
        })
    };
    let train = run("train", splits.train)?;
    let val = run("val", splits.val)?;
    let test = run("test", splits.test)?;
    Ok(assemble_cache(classifier, label_names, provenance, [train, val, test]))
}

/// A cache from its parts: the classifier, the class names, provenance and the train, val and
/// test splits. One place for what `meta.json` says, for every exporter.
pub(crate) fn assemble_cache(
    classifier: Classifier,
    label_names: Vec<String>,
    provenance: serde_json::Value,
    [train, val, test]: [SplitData; 3],
) -> FeatureCache {
    let meta = CacheMeta {
        format: CACHE_FORMAT.to_string(),
        version: CACHE_VERSION,
        task: RowUnit::Sequence,
        num_classes: classifier.num_classes,
        feature_dim: classifier.dim,
        classifier: ClassifierMeta {
            kind: classifier.kind,
            activation: classifier.activation,
        },
        label_names,
        provenance,
    };
    FeatureCache {
        meta,
        classifier,
        train,
        val,
        test,
    }
}

/// The train, val and test features a frozen backbone computed, with their labels.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSplits<'a> {
    /// Training split.
    pub train: FeatureSplit<'a>,
    /// Validation split.
    pub val: FeatureSplit<'a>,
    /// Test split.
    pub test: FeatureSplit<'a>,
}

/// Rows per head pass when logits are computed from features.
const HEAD_BATCH: usize = 1024;

/// The cache of a model whose backbone is frozen, from features computed once: the features
/// as given, logits from the model's head on them, the head as the classifier. The same cache
/// [`export_cache`] writes for that model, without running the backbone again.
///
/// # Errors
/// Features whose width is not the head's, labels out of range, non-finite logits.
pub fn export_cache_from_features<M: ClassifierModel>(
    model: M,
    splits: FeatureSplits<'_>,
    meta: ExportMeta,
    device: &Device,
) -> Result<FeatureCache> {
    let ExportMeta {
        label_names,
        provenance,
    } = meta;
    let classifier = model.cache_classifier()?;
    let (c, d) = (classifier.num_classes, classifier.dim);
    if label_names.len() != c {
        return Err(BackboneError::Invalid(format!(
            "{} label names for a {c}-class head",
            label_names.len()
        )));
    }
    let (_, head) = model.split();
    let run = |name: &str, s: FeatureSplit<'_>| -> Result<SplitData> {
        if s.dim != d {
            return Err(BackboneError::Invalid(format!(
                "the {name} features have width {} but the head reads {d}",
                s.dim
            )));
        }
        if let Some((i, l)) = s.labels.iter().enumerate().find(|(_, l)| **l >= c) {
            return Err(BackboneError::Invalid(format!(
                "{name} row {i}: label {l} is out of range for {c} classes"
            )));
        }
        let mut logits = Vec::with_capacity(s.len() * c);
        for rows in s.features.chunks(HEAD_BATCH * d) {
            let x = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [rows.len() / d, d]), device);
            logits.extend(to_host(M::head_forward(&head, x))?);
        }
        if let Some(i) = logits.iter().position(|z| !z.is_finite()) {
            return Err(BackboneError::NonFinite(format!(
                "non-finite logit in {name} row {} (class {})",
                i / c,
                i % c
            )));
        }
        Ok(SplitData {
            logits,
            features: s.features.to_vec(),
            labels: s.labels.iter().map(|&l| l as i64).collect(),
            group: None,
            dim: d,
            num_classes: c,
        })
    };
    let train = run("train", splits.train)?;
    let val = run("val", splits.val)?;
    let test = run("test", splits.test)?;
    Ok(assemble_cache(classifier, label_names, provenance, [train, val, test]))
}
