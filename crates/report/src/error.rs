//! The report's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading a results directory or writing the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be read, or a table could not be built or written.
    #[error("{}: {source}", path.display())]
    Polars {
        /// The file (or the table being written).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A Parquet table could not be encoded.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The table being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// `probs.safetensors` is not a valid safetensors file.
    #[error("{}: {source}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// `plan.yaml` is not valid YAML.
    #[error("{}: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A metric could not be computed from a cell's files.
    #[error("{}: {source}", path.display())]
    Metrics {
        /// The head directory whose files were read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ueb_metrics::MetricsError,
    },
    /// A file has the wrong shape or content (a missing column, a tensor of the wrong shape, …).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The font `UEB_FONT` names is not there.
    #[error(
        "no font for the figures' text: {}; point UEB_FONT to a .ttf file, or unset it to use \
         the embedded DejaVu Sans",
        looked.join(", ")
    )]
    NoFont {
        /// Every place looked at, in order.
        looked: Vec<String>,
    },
    /// A font file was found but could not be parsed.
    #[error("{}: not a usable TrueType/OpenType font", path.display())]
    BadFont {
        /// The font file.
        path: PathBuf,
    },
    /// The font search of an earlier call failed (its message).
    #[error("{0}")]
    Font(String),
    /// plotters failed while drawing a figure.
    #[error("{}: drawing failed: {message}", path.display())]
    Plot {
        /// The figure being drawn.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// The PNG encoder failed.
    #[error("{}: {source}", path.display())]
    Png {
        /// The figure being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: png::EncodingError,
    },
    /// The results directory holds no finished head stage at all.
    #[error(
        "{}: no finished cells (expected cells/<backbone>/<dataset>/seed-<k>/<head>/scores.parquet); \
         run `ueb run` first",
        dir.display()
    )]
    NoCells {
        /// The results directory.
        dir: PathBuf,
    },
    /// An unknown output format was asked for.
    #[error("unknown report format {0:?} (expected md, tex, csv or html)")]
    UnknownFormat(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ReportError>;

/// Attaches a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.into();
    move |source| ReportError::Io { path, source }
}

/// Attaches a path to a polars error.
pub(crate) fn pl(path: impl Into<PathBuf>) -> impl FnOnce(polars::error::PolarsError) -> ReportError {
    let path = path.into();
    move |source| ReportError::Polars { path, source }
}
