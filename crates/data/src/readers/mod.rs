//! Readers of the papers' datasets in their original release formats.
//!
//! Each reader turns one file into examples; the registry decides which files make which split.
//! Ids without a dataset-provided id are `"{dataset}:{file split}:{row}"`, where `row` is the
//! 0-based data row of the file (header excluded).

pub(crate) mod choice;
pub(crate) mod conll;
pub(crate) mod glue;
pub(crate) mod lines;
pub(crate) mod newsgroups;
pub(crate) mod toxigen;

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{DataError, Result};
use crate::io::read_text;

/// The id of row `row` of a file without ids.
pub(crate) fn row_id(dataset: &str, file_split: &str, row: usize) -> String {
    format!("{dataset}:{file_split}:{row}")
}

/// Reads a JSON Lines file (optionally `.gz`): one object per non-blank line, each with its
/// 1-based line number.
pub(crate) fn jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(u64, T)>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i as u64 + 1;
        let value = serde_json::from_str(line).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        out.push((line_no, value));
    }
    Ok(out)
}
