//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong loading, tokenizing, training or exporting an encoder.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or has a wrong type.
    #[error("{path}: {source}")]
    ConfigJson {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` parsed but describes something we cannot build.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A model directory lacks a required file.
    #[error(
        "{dir}: no {file} (a Hugging Face model directory needs config.json, model.safetensors and tokenizer.json){hint}"
    )]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The missing file name.
        file: &'static str,
        /// Extra advice (e.g. a pickle-only checkpoint).
        hint: String,
    },
    /// The weights could not be read or applied.
    #[error("{path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What went wrong, naming the key.
        message: String,
    },
    /// `tokenizer.json` could not be loaded, or a text could not be encoded.
    #[error("{context}: {message}")]
    Tokenizer {
        /// The file, or the input row.
        context: String,
        /// The tokenizers crate's message.
        message: String,
    },
    /// A model reference (`hf:ID@REVISION` or a path) could not be resolved.
    #[error("{reference}: {message}")]
    Hub {
        /// What the user wrote.
        reference: String,
        /// Why it failed.
        message: String,
    },
    /// An input file (texts for extraction) is malformed.
    #[error("{path}:{line}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A training or export request is inconsistent (empty split, bad hyperparameter, …).
    #[error("{0}")]
    Invalid(String),
    /// A tensor computation produced a non-finite value.
    #[error("{0}")]
    NonFinite(String),
    /// Writing the feature cache failed.
    #[error(transparent)]
    Cache(#[from] ueb_cache::CacheError),
    /// A host matrix product was handed operands that do not fit their buffers (a bug).
    #[error(transparent)]
    HostProduct(#[from] ueb_kernels::gemm::ShapeError),
}

impl BackboneError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A configuration error on `path`.
    pub fn config(path: &Path, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// A weights error on `path`.
    pub fn weights(path: &Path, message: impl Into<String>) -> Self {
        Self::Weights {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = BackboneError> = std::result::Result<T, E>;
