//! GLUE TSV files (SST-2, CoLA, MRPC), as `download_glue_data.py` writes them: UTF-8, split
//! on `\t` only (no quoting), MRPC with a byte-order mark.

use std::path::Path;

use crate::dataset::{Example, Input, Label, LabelSet};
use crate::error::Result;
use crate::io::Table;
use crate::readers::row_id;

/// SST-2: a header with `sentence` and `label` columns.
pub(crate) fn sst2(path: &Path, dataset: &str, file_split: &str, labels: &LabelSet) -> Result<Vec<Example>> {
    let table = Table::tsv(path, true)?;
    let text = table.column("sentence")?;
    let label = table.column("label")?;
    class_rows(&table, dataset, file_split, labels, text, label)
}

/// CoLA: no header; fields are source, label, original mark, sentence.
pub(crate) fn cola(path: &Path, dataset: &str, file_split: &str, labels: &LabelSet) -> Result<Vec<Example>> {
    let table = Table::tsv(path, false)?;
    table.require_width(4)?;
    class_rows(&table, dataset, file_split, labels, 3, 1)
}

/// MRPC (and the original MSRP files): a header with `Quality`, `#1 ID`, `#2 ID`,
/// `#1 String`, `#2 String`. The id is `"{#1 ID}-{#2 ID}"`.
pub(crate) fn mrpc(path: &Path, labels: &LabelSet) -> Result<Vec<Example>> {
    let table = Table::tsv(path, true)?;
    let quality = table.column("Quality")?;
    let id1 = table.column("#1 ID")?;
    let id2 = table.column("#2 ID")?;
    let s1 = table.column("#1 String")?;
    let s2 = table.column("#2 String")?;
    table
        .rows
        .iter()
        .map(|(line, f)| {
            Ok(Example {
                id: format!("{}-{}", f[id1], f[id2]),
                input: Input::Pair(f[s1].clone(), f[s2].clone()),
                label: Label::Class(labels.lookup(&f[quality]).map_err(|m| table.error(*line, m))?),
            })
        })
        .collect()
}

fn class_rows(
    table: &Table,
    dataset: &str,
    file_split: &str,
    labels: &LabelSet,
    text: usize,
    label: usize,
) -> Result<Vec<Example>> {
    table
        .rows
        .iter()
        .enumerate()
        .map(|(row, (line, f))| {
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Text(f[text].clone()),
                label: Label::Class(labels.lookup(&f[label]).map_err(|m| table.error(*line, m))?),
            })
        })
        .collect()
}
