//! A whole feature cache: loading validates every file and recomputes the logits from the
//! features with the classifier; writing puts `meta.json` last, so its presence marks a
//! complete cache.

use std::collections::HashMap;
use std::path::Path;

use crate::classifier::Classifier;
use crate::classifier::classifier_from_tensors;
use crate::error::CacheError;
use crate::forward::HostClassifier;
use crate::meta::{Activation, CACHE_FORMAT, CACHE_VERSION, CacheMeta, ClassifierKind, RowUnit, Split};
use crate::split::SplitData;
use crate::tensors::{Tensors, read_bytes, read_json, write_atomic, write_tensors};

/// Tolerance of the logit check on load: `|stored − recomputed| ≤ atol + rtol·|recomputed|`.
///
/// The default (1e-3, 1e-3) accepts f32 exporters and their summation orders; caches exported
/// under bf16 autocast need a looser setting, which the error message makes visible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitTolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Default for LogitTolerance {
    fn default() -> Self {
        Self { atol: 1e-3, rtol: 1e-3 }
    }
}

/// A whole feature cache.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureCache {
    /// `meta.json`.
    pub meta: CacheMeta,
    /// The task classifier.
    pub classifier: Classifier,
    /// The training split.
    pub train: SplitData,
    /// The validation split.
    pub val: SplitData,
    /// The test split.
    pub test: SplitData,
}

/// What the logit check of [`FeatureCache::load`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitCheck {
    /// Largest `|stored − recomputed|` logit deviation of each split.
    pub max_logit_deviation: Vec<(Split, f64)>,
}

impl FeatureCache {
    /// The data of one split.
    pub fn split(&self, split: Split) -> &SplitData {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Reads and validates a cache directory with the default logit tolerance.
    ///
    /// # Errors
    /// Any file missing or malformed, inconsistent shapes, NaN/Inf (naming the split and row),
    /// a label out of range, an empty split, or logits that the classifier does not reproduce.
    pub fn load(dir: &Path) -> Result<(Self, LogitCheck), CacheError> {
        Self::load_with(dir, LogitTolerance::default())
    }

    /// [`FeatureCache::load`] with an explicit tolerance for the logit check.
    ///
    /// # Errors
    /// As [`FeatureCache::load`].
    pub fn load_with(dir: &Path, tol: LogitTolerance) -> Result<(Self, LogitCheck), CacheError> {
        let meta_path = dir.join("meta.json");
        let meta: CacheMeta = read_json(&meta_path)?;
        let meta_err = |reason: String| CacheError::Meta {
            path: meta_path.clone(),
            reason,
        };
        if meta.format != CACHE_FORMAT {
            return Err(meta_err(format!(
                "format is `{}`, expected `{CACHE_FORMAT}`",
                meta.format
            )));
        }
        if meta.version != CACHE_VERSION {
            return Err(meta_err(format!(
                "version {} is not supported (this ueb reads version {CACHE_VERSION})",
                meta.version
            )));
        }
        if meta.num_classes < 2 {
            return Err(meta_err(format!(
                "num_classes is {}; at least 2 are needed",
                meta.num_classes
            )));
        }
        if meta.feature_dim == 0 {
            return Err(meta_err("feature_dim is 0".into()));
        }
        if meta.label_names.len() != meta.num_classes {
            return Err(meta_err(format!(
                "{} label_names for {} classes",
                meta.label_names.len(),
                meta.num_classes
            )));
        }
        let activation_ok = match meta.classifier.kind {
            ClassifierKind::Mlp => meta.classifier.activation != Activation::None,
            ClassifierKind::Linear => meta.classifier.activation == Activation::None,
        };
        if !activation_ok {
            return Err(meta_err(format!(
                "classifier kind {:?} with activation {:?} (mlp needs tanh or gelu, linear needs none)",
                meta.classifier.kind, meta.classifier.activation
            )));
        }
        let classifier = Self::read_classifier(&dir.join("classifier.safetensors"), &meta)?;
        let mut splits = HashMap::new();
        let mut report = LogitCheck {
            max_logit_deviation: Vec::new(),
        };
        for split in Split::ALL {
            let data = Self::read_split(&dir.join(format!("{split}.safetensors")), split, &meta)?;
            let dev = check_logits(&classifier, &data, split, tol)?;
            report.max_logit_deviation.push((split, dev));
            splits.insert(split, data);
        }
        let mut take = |s: Split| splits.remove(&s).unwrap_or_default();
        let cache = Self {
            train: take(Split::Train),
            val: take(Split::Val),
            test: take(Split::Test),
            meta,
            classifier,
        };
        Ok((cache, report))
    }

    fn read_classifier(path: &Path, meta: &CacheMeta) -> Result<Classifier, CacheError> {
        let bytes = read_bytes(path)?;
        let t = Tensors::parse(path, &bytes)?;
        classifier_from_tensors(&t, meta.classifier, meta.feature_dim, meta.num_classes)
    }

    fn read_split(path: &Path, split: Split, meta: &CacheMeta) -> Result<SplitData, CacheError> {
        let bytes = read_bytes(path)?;
        let t = Tensors::parse(path, &bytes)?;
        let (d, c) = (meta.feature_dim, meta.num_classes);
        let n = t.rows("labels")?;
        let bad = |reason: String| CacheError::BadValue {
            split: split.to_string(),
            reason,
        };
        if n == 0 {
            return Err(bad(format!("{} holds no rows", path.display())));
        }
        let features = t.f32("features", &[n, d])?;
        let logits = t.f32("logits", &[n, c])?;
        let labels = t.i64("labels", &[n])?;
        let group = match meta.task {
            RowUnit::Token => Some(t.i64("group", &[n])?),
            RowUnit::Sequence => None,
        };
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "features: row {}, column {} is {}",
                i / d,
                i % d,
                features[i]
            )));
        }
        if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("logits: row {}, class {} is {}", i / c, i % c, logits[i])));
        }
        if let Some(i) = labels.iter().position(|&y| !(0..c as i64).contains(&y)) {
            return Err(bad(format!("labels: row {i} has label {}, outside 0..{c}", labels[i])));
        }
        Ok(SplitData {
            features,
            logits,
            labels,
            group,
            dim: d,
            num_classes: c,
        })
    }

    /// Writes the cache to `dir` (created if needed), each file atomically.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write(&self, dir: &Path) -> Result<(), CacheError> {
        std::fs::create_dir_all(dir).map_err(|e| CacheError::io(dir, e))?;
        let (d, c) = (self.meta.feature_dim, self.meta.num_classes);
        write_tensors(
            &dir.join("classifier.safetensors"),
            &self.classifier.tensors(),
            &[],
            &[],
        )?;
        for split in Split::ALL {
            let s = self.split(split);
            let n = s.n();
            let mut ints: Vec<(&str, &[i64], Vec<usize>)> = vec![("labels", &s.labels, vec![n])];
            if let Some(g) = &s.group {
                ints.push(("group", g, vec![n]));
            }
            write_tensors(
                &dir.join(format!("{split}.safetensors")),
                &[("features", &s.features, vec![n, d]), ("logits", &s.logits, vec![n, c])],
                &ints,
                &[],
            )?;
        }
        // meta.json last: its presence marks a complete cache.
        let meta = serde_json::to_string_pretty(&self.meta).map_err(|source| CacheError::Json {
            path: dir.join("meta.json"),
            source,
        })?;
        write_atomic(&dir.join("meta.json"), meta.as_bytes())
    }
}

/// Recomputes the logits of `data` with `classifier` and returns the largest absolute deviation,
/// or an error at the worst violation of the tolerance.
fn check_logits(
    classifier: &Classifier,
    data: &SplitData,
    split: Split,
    tol: LogitTolerance,
) -> Result<f64, CacheError> {
    let c = classifier.num_classes;
    let mut max_dev = 0.0f64;
    let mut worst: Option<(f64, usize, usize, f64)> = None; // (excess ratio, row, class, deviation)
    HostClassifier::new(classifier).forward_blocks(&data.features, false, |start, _, z| {
        for (i, row) in z.chunks_exact(c).enumerate() {
            for (k, &zk) in row.iter().enumerate() {
                let stored = f64::from(data.logits[(start + i) * c + k]);
                let dev = (stored - zk).abs();
                max_dev = max_dev.max(dev);
                let ratio = dev / (tol.atol + tol.rtol * zk.abs());
                if ratio > 1.0 && worst.is_none_or(|w| ratio > w.0) {
                    worst = Some((ratio, start + i, k, dev));
                }
            }
        }
    })?;
    match worst {
        None => Ok(max_dev),
        Some((_, row, class, deviation)) => Err(CacheError::LogitMismatch {
            split: split.to_string(),
            row,
            class,
            deviation,
            atol: tol.atol,
            rtol: tol.rtol,
        }),
    }
}
