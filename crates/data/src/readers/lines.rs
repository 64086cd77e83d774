//! One-example-per-line formats `<label> <text>`: SST-5 (`stsa.fine.*`) and TREC.

use std::path::Path;

use crate::dataset::{Example, Input, Label, LabelSet};
use crate::error::{DataError, Location, Result};
use crate::io::{read_bytes, read_text, utf8_or_latin1};
use crate::readers::row_id;

/// The six coarse TREC classes.
pub(crate) const TREC_COARSE: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

/// `(line, label, text)` for each line, split at the first space. Blank lines and lines
/// without a space are errors.
fn label_text_lines(path: &Path, text: &str) -> Result<Vec<(u64, String, String)>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let line_no = i as u64 + 1;
            match line.split_once(' ') {
                Some((label, text)) if !label.is_empty() && !text.trim().is_empty() => {
                    Ok((line_no, label.to_owned(), text.to_owned()))
                }
                _ => Err(DataError::malformed(
                    path,
                    Location::Line(line_no),
                    "expected `<label> <text>`",
                )),
            }
        })
        .collect()
}

/// SST-5 (and the sentence-level SST-2 files): `<label> <sentence>`.
pub(crate) fn sst5(path: &Path, dataset: &str, file_split: &str, labels: &LabelSet) -> Result<Vec<Example>> {
    let text = read_text(path)?;
    label_text_lines(path, &text)?
        .into_iter()
        .enumerate()
        .map(|(row, (line, label, text))| {
            let label = labels
                .lookup(&label)
                .map_err(|m| DataError::malformed(path, Location::Line(line), m))?;
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Text(text),
                label: Label::Class(label),
            })
        })
        .collect()
}

/// TREC lines `COARSE:fine question`, as `(line, coarse, fine label "COARSE:fine", question)`.
///
/// The upstream `TREC.train` is ISO-8859-1; a file that is not valid UTF-8 is decoded as
/// Latin-1.
pub(crate) fn trec_lines(path: &Path) -> Result<Vec<(u64, String, String, String)>> {
    let text = utf8_or_latin1(read_bytes(path)?);
    label_text_lines(path, &text)?
        .into_iter()
        .map(|(line, label, text)| match label.split_once(':') {
            Some((coarse, fine)) if TREC_COARSE.contains(&coarse) && !fine.is_empty() => {
                Ok((line, coarse.to_owned(), label.clone(), text))
            }
            _ => Err(DataError::malformed(
                path,
                Location::Line(line),
                format!(
                    "expected a label `COARSE:fine` with COARSE one of {}, found `{label}`",
                    TREC_COARSE.join(", ")
                ),
            )),
        })
        .collect()
}

/// TREC examples with coarse labels, or with fine labels (`"COARSE:fine"`) when `fine`.
pub(crate) fn trec(
    path: &Path,
    rows: Vec<(u64, String, String, String)>,
    dataset: &str,
    file_split: &str,
    labels: &LabelSet,
    fine: bool,
) -> Result<Vec<Example>> {
    rows.into_iter()
        .enumerate()
        .map(|(row, (line, coarse, fine_label, text))| {
            let name = if fine { fine_label } else { coarse };
            let label = labels
                .lookup(&name)
                .map_err(|m| DataError::malformed(path, Location::Line(line), m))?;
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Text(text),
                label: Label::Class(label),
            })
        })
        .collect()
}
