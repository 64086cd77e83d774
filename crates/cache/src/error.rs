//! Errors of reading, writing and checking a feature cache (and of the safetensors and JSON
//! files of fitted heads, which share its readers).

use std::path::PathBuf;

/// What went wrong while reading, writing or checking a feature cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `meta.json` (or a fitted head's JSON) is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is malformed.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The library's message.
        reason: String,
    },
    /// A required tensor is missing.
    #[error("{path}: missing tensor `{name}` (present: {present})")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Names that are present.
        present: String,
    },
    /// A tensor has the wrong dtype or shape.
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What was found (dtype and shape).
        found: String,
        /// What was expected.
        expected: String,
    },
    /// A `meta.json` (the cache's, or a fitted head's `head.json`) says something inconsistent or
    /// unsupported.
    #[error("{path}: {reason}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value in a split is NaN/Inf, a label is out of range, or a split is empty.
    #[error("{split} split: {reason}")]
    BadValue {
        /// The split (`train`, `val`, `test`).
        split: String,
        /// What is wrong, naming the row.
        reason: String,
    },
    /// Stored logits differ from the classifier applied to the stored features.
    #[error(
        "{split} split: stored logits differ from the classifier applied to the features by {deviation:.3e} at row {row}, class {class} (tolerance {atol:e} + {rtol:e}·|logit|); the features, logits and classifier.safetensors do not belong together"
    )]
    LogitMismatch {
        /// The split.
        split: String,
        /// Row of the largest relative violation.
        row: usize,
        /// Class of that violation.
        class: usize,
        /// Absolute deviation there.
        deviation: f64,
        /// Absolute tolerance.
        atol: f64,
        /// Relative tolerance.
        rtol: f64,
    },
    /// A host matrix product was handed operands that do not fit their buffers (a bug).
    #[error(transparent)]
    HostProduct(#[from] ueb_kernels::gemm::ShapeError),
}

impl CacheError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io {
            path: path.into(),
            source,
        }
    }
}
