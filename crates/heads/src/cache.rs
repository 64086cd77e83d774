//! The feature cache: one directory per backbone × dataset × seed, written once by the
//! expensive model pass and read by every head (`docs/cache-format.md`).
//!
//! ```text
//! meta.json                {"format": "ueb-cache", "version": 1, "task": ..., "num_classes": C,
//!                           "feature_dim": d, "classifier": {"kind", "activation"},
//!                           "label_names": [...], "provenance": {...}}
//! classifier.safetensors   PyTorch nn.Linear layout (weight is [out, in])
//! train|val|test.safetensors   features f32 [N, d], logits f32 [N, C], labels i64 [N] (+ group i64 [N])
//! ```
//!
//! Loading validates everything and recomputes the logits from the features with the
//! classifier: a deviation beyond the tolerance is an error naming the split, row and class.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::HeadError;

/// The `format` value of `meta.json`.
pub const CACHE_FORMAT: &str = "ueb-cache";
/// The `version` value of `meta.json` this crate reads and writes.
pub const CACHE_VERSION: u32 = 1;

/// A split of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The split the backbone was fine-tuned on.
    Train,
    /// The held-out validation split (20% of train in 2505.15443).
    Val,
    /// The test split.
    Test,
}

impl Split {
    /// All splits, in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "val" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split `{other}` (expected train, val or test)")),
        }
    }
}

/// Sequence or token classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One prediction per example.
    Sequence,
    /// One prediction per token; rows carry a `group` (sentence index).
    Token,
}

/// Architecture of the task classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifierKind {
    /// `out_proj(act(dense(h)))`: the RoBERTa/ELECTRA (and BERT pooler) head.
    Mlp,
    /// `out_proj(h)`: a linear probe or a decoder's `score` head.
    Linear,
}

/// Activation between `dense` and `out_proj` of an `mlp` classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// tanh (RoBERTa, BERT pooler).
    Tanh,
    /// GELU, the exact erf form (ELECTRA, transformers' `"gelu"`).
    Gelu,
    /// None (linear classifiers).
    None,
}

impl Activation {
    /// The activation of one value, in f64 (the scalar form of [`Activation::apply_in_place`]:
    /// the same bits).
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => crate::simd::tanh(x),
            Activation::Gelu => crate::simd::gelu(x),
            Activation::None => x,
        }
    }

    /// The activation of every value in place, vectorised (`crate::simd`): within 2 ulp of
    /// `libm::tanh` for tanh, a few ulp of `½·x·libm::erfc(−x/√2)` for GELU.
    pub fn apply_in_place(self, v: &mut [f64]) {
        match self {
            Activation::Tanh => crate::simd::tanh_in_place(v),
            Activation::Gelu => crate::simd::gelu_in_place(v),
            Activation::None => {}
        }
    }
}

/// `classifier` in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierMeta {
    /// `mlp` or `linear`.
    pub kind: ClassifierKind,
    /// `tanh`, `gelu` or `none`.
    pub activation: Activation,
}

/// `meta.json`, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheMeta {
    /// Always `ueb-cache`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// `sequence` or `token`.
    pub task: Task,
    /// Number of classes C.
    pub num_classes: usize,
    /// Feature dimension d (the classifier's input).
    pub feature_dim: usize,
    /// The classifier's architecture.
    pub classifier: ClassifierMeta,
    /// One name per class, in index order.
    pub label_names: Vec<String>,
    /// Free-form provenance: model, revision, dataset fingerprints, seed, exporter.
    #[serde(default)]
    pub provenance: serde_json::Value,
}

/// The task classifier in PyTorch `nn.Linear` layout (weights are `[out, in]`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// `mlp` or `linear`.
    pub kind: ClassifierKind,
    /// Activation after `dense` (`None` for linear classifiers).
    pub activation: Activation,
    /// `dense.weight` `[d, d]` (mlp only).
    pub dense_weight: Option<Vec<f32>>,
    /// `dense.bias` `[d]` (mlp only).
    pub dense_bias: Option<Vec<f32>>,
    /// `out_proj.weight` `[C, d]`.
    pub out_weight: Vec<f32>,
    /// `out_proj.bias` `[C]` (optional for linear classifiers).
    pub out_bias: Option<Vec<f32>>,
    /// Feature dimension d.
    pub dim: usize,
    /// Number of classes C.
    pub num_classes: usize,
}

fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

impl Classifier {
    /// Runs the classifier in f64 over row-major features `[n, d]`; calls `f(row_offset, hidden,
    /// logits)` per block of rows, where `hidden` is `act(dense(h))` (`h` itself for linear
    /// classifiers) `[rows, d]` and `logits` `[rows, C]`, both row-major.
    ///
    /// # Errors
    /// Weights whose lengths do not fit `dim` and `num_classes`.
    pub fn forward_blocks(&self, features: &[f32], f: impl FnMut(usize, &[f64], &[f64])) -> Result<(), HeadError> {
        Ok(crate::host::HostHead::new(self).forward_blocks(features, true, f)?)
    }

    /// `act(dense(h))` for every row (f64, row-major `[n, d]`), the `dense` features of the
    /// Mahalanobis heads; `h` itself for a linear classifier.
    ///
    /// # Errors
    /// As [`Classifier::forward_blocks`].
    pub fn hidden(&self, features: &[f32]) -> Result<Vec<f64>, HeadError> {
        let mut out = Vec::with_capacity(features.len());
        self.forward_blocks(features, |_, hid, _| out.extend_from_slice(hid))?;
        Ok(out)
    }

    /// The logits of every row (f64, row-major `[n, C]`).
    ///
    /// # Errors
    /// As [`Classifier::forward_blocks`].
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f64>, HeadError> {
        Ok(crate::host::HostHead::new(self).logits(features)?)
    }
}

/// One split: features, the model's logits and the labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SplitData {
    /// Features `[n, d]`, row-major: the classifier's input.
    pub features: Vec<f32>,
    /// The model's logits `[n, C]`, row-major.
    pub logits: Vec<f32>,
    /// Labels `[n]` in `0..C`.
    pub labels: Vec<i64>,
    /// Sentence index of each token (token tasks only).
    pub group: Option<Vec<i64>>,
    /// Feature dimension d.
    pub dim: usize,
    /// Number of classes C.
    pub num_classes: usize,
}

impl SplitData {
    /// Number of rows.
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Features of row `i`.
    pub fn feature_row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The model's errors: argmax of the stored logits (lowest index on ties) ≠ label.
    pub fn errors(&self) -> Vec<bool> {
        self.logits
            .chunks_exact(self.num_classes)
            .zip(&self.labels)
            .map(|(z, &y)| {
                let k = z
                    .iter()
                    .enumerate()
                    .fold(0, |best, (k, &v)| if v > z[best] { k } else { best });
                k as i64 != y
            })
            .collect()
    }

    /// Softmax of the stored logits in f64, row-major `[n, C]`.
    pub fn probs(&self) -> Vec<f64> {
        let z = as_f64(&self.logits);
        let mut p = vec![0.0; z.len()];
        ueb_metrics::softmax_rows(&z, self.num_classes, &mut p);
        p
    }

    /// The stored logits widened to f64.
    pub fn logits_f64(&self) -> Vec<f64> {
        as_f64(&self.logits)
    }
}

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

/// What loading a cache checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Largest `|stored − recomputed|` logit deviation of each split.
    pub max_logit_deviation: Vec<(Split, f64)>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, HeadError> {
    let text = std::fs::read_to_string(path).map_err(|e| HeadError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| HeadError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a safetensors file into memory.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, HeadError> {
    std::fs::read(path).map_err(|e| HeadError::io(path, e))
}

/// A tensor read from safetensors, widened.
pub(crate) struct Tensors<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
}

impl<'a> Tensors<'a> {
    pub(crate) fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Self, HeadError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| HeadError::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { path, st })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.st.names().contains(&name)
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>, HeadError> {
        self.st.tensor(name).map_err(|_| {
            let mut present: Vec<&str> = self.st.names();
            present.sort_unstable();
            HeadError::MissingTensor {
                path: self.path.to_path_buf(),
                name: name.to_string(),
                present: present.join(", "),
            }
        })
    }

    fn bad(&self, name: &str, found: String, expected: String) -> HeadError {
        HeadError::BadTensor {
            path: self.path.to_path_buf(),
            name: name.to_string(),
            found,
            expected,
        }
    }

    /// A float tensor of exactly `shape`, as f32 (f16/bf16 widen exactly; f64 is refused
    /// because the cache stores f32 and narrowing would silently change the numbers).
    pub(crate) fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, HeadError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape {
            return Err(self.bad(name, found, format!("F32 {shape:?}")));
        }
        let raw = t.data();
        Ok(match t.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => return Err(self.bad(name, found, format!("F32 {shape:?} (F16/BF16 also accepted)"))),
        })
    }

    /// An f64 tensor of exactly `shape` (fitted heads store their statistics in f64).
    pub(crate) fn f64(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>, HeadError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape || t.dtype() != Dtype::F64 {
            return Err(self.bad(name, found, format!("F64 {shape:?}")));
        }
        Ok(t.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }

    /// An integer tensor of exactly `shape`, as i64 (I32 widens).
    pub(crate) fn i64(&self, name: &str, shape: &[usize]) -> Result<Vec<i64>, HeadError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape {
            return Err(self.bad(name, found, format!("I64 {shape:?}")));
        }
        let raw = t.data();
        Ok(match t.dtype() {
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            _ => return Err(self.bad(name, found, format!("I64 {shape:?} (I32 also accepted)"))),
        })
    }

    /// The first dimension of tensor `name`.
    pub(crate) fn rows(&self, name: &str) -> Result<usize, HeadError> {
        let t = self.view(name)?;
        t.shape()
            .first()
            .copied()
            .ok_or_else(|| self.bad(name, format!("{:?} []", t.dtype()), "a tensor with rows".into()))
    }
}

/// The classifier's tensors (`dense.*`, `out_proj.*`) from a parsed safetensors file, checked for
/// shape and finiteness.
pub(crate) fn classifier_from_tensors(
    t: &Tensors<'_>,
    meta: ClassifierMeta,
    d: usize,
    c: usize,
) -> Result<Classifier, HeadError> {
    let (dense_weight, dense_bias) = match meta.kind {
        ClassifierKind::Mlp => (Some(t.f32("dense.weight", &[d, d])?), Some(t.f32("dense.bias", &[d])?)),
        ClassifierKind::Linear => (None, None),
    };
    let out_weight = t.f32("out_proj.weight", &[c, d])?;
    let out_bias = match meta.kind {
        ClassifierKind::Mlp => Some(t.f32("out_proj.bias", &[c])?),
        ClassifierKind::Linear if t.has("out_proj.bias") => Some(t.f32("out_proj.bias", &[c])?),
        ClassifierKind::Linear => None,
    };
    let all = [
        ("dense.weight", dense_weight.as_deref()),
        ("dense.bias", dense_bias.as_deref()),
        ("out_proj.weight", Some(&out_weight[..])),
        ("out_proj.bias", out_bias.as_deref()),
    ];
    for (name, values) in all.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))) {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(t.bad(name, format!("{} at flat index {i}", values[i]), "finite values".into()));
        }
    }
    Ok(Classifier {
        kind: meta.kind,
        activation: meta.activation,
        dense_weight,
        dense_bias,
        out_weight,
        out_bias,
        dim: d,
        num_classes: c,
    })
}

impl Classifier {
    /// `kind` and `activation`, as `meta.json` writes them.
    pub fn meta(&self) -> ClassifierMeta {
        ClassifierMeta {
            kind: self.kind,
            activation: self.activation,
        }
    }

    /// The named tensors in PyTorch layout, for writing.
    pub(crate) fn tensors(&self) -> Vec<(&'static str, &[f32], Vec<usize>)> {
        let (d, c) = (self.dim, self.num_classes);
        let mut out: Vec<(&'static str, &[f32], Vec<usize>)> = Vec::new();
        if let (Some(w), Some(b)) = (&self.dense_weight, &self.dense_bias) {
            out.push(("dense.weight", w, vec![d, d]));
            out.push(("dense.bias", b, vec![d]));
        }
        out.push(("out_proj.weight", &self.out_weight, vec![c, d]));
        if let Some(b) = &self.out_bias {
            out.push(("out_proj.bias", b, vec![c]));
        }
        out
    }
}

/// Writes f32/i64/f64 tensors as a safetensors file, atomically (temp file + rename).
pub(crate) fn write_tensors(
    path: &Path,
    f32s: &[(&str, &[f32], Vec<usize>)],
    i64s: &[(&str, &[i64], Vec<usize>)],
    f64s: &[(&str, &[f64], Vec<usize>)],
) -> Result<(), HeadError> {
    write_safetensors(path, f32s, i64s, f64s, None)
}

/// Writes f32/i64/f64 tensors (name, row-major values, shape) and optional string metadata as
/// a safetensors file, atomically (temp file in the same directory, then rename).
///
/// # Errors
/// A shape that does not match its values, or an I/O error naming the file.
pub fn write_safetensors(
    path: &Path,
    f32s: &[(&str, &[f32], Vec<usize>)],
    i64s: &[(&str, &[i64], Vec<usize>)],
    f64s: &[(&str, &[f64], Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), HeadError> {
    use safetensors::tensor::TensorView;
    let f32_bytes: Vec<Vec<u8>> = f32s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let f64_bytes: Vec<Vec<u8>> = f64s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let i64_bytes: Vec<Vec<u8>> = i64s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let bad = |e: safetensors::SafeTensorError| HeadError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for ((name, _, shape), bytes) in f32s.iter().zip(&f32_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    for ((name, _, shape), bytes) in i64s.iter().zip(&i64_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::I64, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    for ((name, _, shape), bytes) in f64s.iter().zip(&f64_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F64, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    let data = safetensors::serialize(views, metadata).map_err(bad)?;
    write_atomic(path, &data)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HeadError> {
    let tmp: PathBuf = {
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(name)
    };
    std::fs::write(&tmp, bytes).map_err(|e| HeadError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| HeadError::io(path, e))
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
    pub fn load(dir: &Path) -> Result<(Self, LoadReport), HeadError> {
        Self::load_with(dir, LogitTolerance::default())
    }

    /// [`FeatureCache::load`] with an explicit tolerance for the logit check.
    ///
    /// # Errors
    /// As [`FeatureCache::load`].
    pub fn load_with(dir: &Path, tol: LogitTolerance) -> Result<(Self, LoadReport), HeadError> {
        let meta_path = dir.join("meta.json");
        let meta: CacheMeta = read_json(&meta_path)?;
        let meta_err = |reason: String| HeadError::Meta {
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
        let mut report = LoadReport {
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

    fn read_classifier(path: &Path, meta: &CacheMeta) -> Result<Classifier, HeadError> {
        let bytes = read_bytes(path)?;
        let t = Tensors::parse(path, &bytes)?;
        classifier_from_tensors(&t, meta.classifier, meta.feature_dim, meta.num_classes)
    }

    fn read_split(path: &Path, split: Split, meta: &CacheMeta) -> Result<SplitData, HeadError> {
        let bytes = read_bytes(path)?;
        let t = Tensors::parse(path, &bytes)?;
        let (d, c) = (meta.feature_dim, meta.num_classes);
        let n = t.rows("labels")?;
        let bad = |reason: String| HeadError::BadValue {
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
            Task::Token => Some(t.i64("group", &[n])?),
            Task::Sequence => None,
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
    pub fn write(&self, dir: &Path) -> Result<(), HeadError> {
        std::fs::create_dir_all(dir).map_err(|e| HeadError::io(dir, e))?;
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
        let meta = serde_json::to_string_pretty(&self.meta).map_err(|source| HeadError::Json {
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
) -> Result<f64, HeadError> {
    let c = classifier.num_classes;
    let mut max_dev = 0.0f64;
    let mut worst: Option<(f64, usize, usize, f64)> = None; // (excess ratio, row, class, deviation)
    crate::host::HostHead::new(classifier).forward_blocks(&data.features, false, |start, _, z| {
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
        Some((_, row, class, deviation)) => Err(HeadError::LogitMismatch {
            split: split.to_string(),
            row,
            class,
            deviation,
            atol: tol.atol,
            rtol: tol.rtol,
        }),
    }
}
