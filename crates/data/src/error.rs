//! The error type of every reader, the split protocol and the generator.

use std::fmt;
use std::path::PathBuf;

/// Where in a file a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line of a text file.
    Line(u64),
    /// A 0-based data row (parquet files have no lines).
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// Everything that can go wrong while reading, splitting or generating a dataset.
///
/// Every variant that concerns a file names it, and a bad record also names its line (or, for
/// parquet, its row).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record does not have the expected shape or content.
    #[error("{}: {location}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line (or parquet row) of the record.
        location: Location,
        /// What is wrong, in words.
        reason: String,
    },
    /// A Parquet file whose metadata or pages are corrupt (the reader's panic, caught, or an
    /// offset outside the file).
    #[error("{}: not a valid Parquet file: {reason}", path.display())]
    BadParquet {
        /// The file.
        path: PathBuf,
        /// What the check or the reader found.
        reason: String,
    },
    /// A text file is not valid UTF-8.
    #[error("{}: line {line}: not valid UTF-8", path.display())]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: u64,
    },
    /// The CSV parser rejected a record (its message gives the line).
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error, with the record's position.
        #[source]
        source: csv::Error,
    },
    /// A JSON Lines record is not valid JSON, or lacks a field.
    #[error("{}: line {line}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A parquet file could not be decoded.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A YAML dataset mapping could not be parsed.
    #[error("{origin}: {source}")]
    Yaml {
        /// The YAML file, or `<string>`.
        origin: String,
        /// The underlying error (with line and column).
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A column named in a mapping (or required by a reader) is not in the file.
    #[error("{}: no column `{column}` (columns: {available})", path.display())]
    UnknownColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The columns that the file has, comma-separated.
        available: String,
    },
    /// The files of a dataset are not under the data root.
    #[error(
        "dataset `{dataset}`: not found under the data root `{}` (looked for {}). It needs, \
         relative to the root: {needs}. How to get them: {how_to_get} Pass `--root DIR` (or set \
         the data root in the experiment YAML) if they live elsewhere. Downloading from the \
         Hugging Face hub is not available in this build; see docs/datasets.md.",
        root.display(),
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The dataset.
        dataset: String,
        /// The data root that was searched.
        root: PathBuf,
        /// Every path that was tried, in order.
        looked: Vec<PathBuf>,
        /// The files the dataset reads, relative to the root.
        needs: String,
        /// Where the files come from.
        how_to_get: String,
    },
    /// The name is not in the registry.
    #[error("unknown dataset `{name}` (known: {known})")]
    UnknownDataset {
        /// The requested name.
        name: String,
        /// The registry's names, comma-separated.
        known: String,
    },
    /// Two examples of one dataset share an id.
    #[error("dataset `{dataset}`: id `{id}` occurs twice (in `{first}` and in `{second}`)")]
    DuplicateId {
        /// The dataset.
        dataset: String,
        /// The repeated id.
        id: String,
        /// Origin of the first occurrence.
        first: String,
        /// Origin of the second occurrence.
        second: String,
    },
    /// A split would be empty.
    #[error("dataset `{dataset}`: split `{split}` is empty ({origin})")]
    EmptySplit {
        /// The dataset.
        dataset: String,
        /// The split.
        split: String,
        /// Where its examples came from.
        origin: String,
    },
    /// The dataset has no such split.
    #[error("dataset `{dataset}` has no `{split}` split: {reason}")]
    MissingSplit {
        /// The dataset.
        dataset: String,
        /// The requested split.
        split: String,
        /// Why, and what to do.
        reason: String,
    },
    /// An option or a mapping field has an invalid value.
    #[error("invalid `{option}`: {reason}")]
    InvalidOption {
        /// The option or field.
        option: String,
        /// What is wrong.
        reason: String,
    },
}

impl DataError {
    pub(crate) fn malformed(path: &std::path::Path, location: Location, reason: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.to_path_buf(),
            location,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Self {
        DataError::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
