//! Errors of fitting, scoring, saving and loading heads.

use std::path::PathBuf;

/// What went wrong while fitting, scoring, saving or loading a head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A head's JSON is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A fitted head's `head.json` says something inconsistent or unsupported.
    #[error("{path}: {reason}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A head's configuration is invalid.
    #[error("head `{head}`: {reason}")]
    Config {
        /// The head.
        head: String,
        /// What is wrong.
        reason: String,
    },
    /// A head cannot be fitted on this data (e.g. a class with no sample, no errors to learn).
    #[error("head `{head}`: {reason}")]
    Fit {
        /// The head.
        head: String,
        /// What is wrong.
        reason: String,
    },
    /// A metric on the head's output failed.
    #[error(transparent)]
    Metrics(#[from] ueb_metrics::MetricsError),
    /// Reading the cache, or a fitted head's safetensors file, failed.
    #[error(transparent)]
    Cache(#[from] ueb_cache::CacheError),
    /// A host matrix product was handed operands that do not fit their buffers (a bug).
    #[error(transparent)]
    HostProduct(#[from] ueb_kernels::gemm::ShapeError),
}

impl HeadError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HeadError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(head: &str, reason: impl Into<String>) -> Self {
        HeadError::Config {
            head: head.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn fit(head: &str, reason: impl Into<String>) -> Self {
        HeadError::Fit {
            head: head.to_string(),
            reason: reason.into(),
        }
    }
}
