//! A generic sequence-classification reader for CSV, TSV, JSON Lines and parquet files, driven
//! by a column mapping ([`GenericSpec`]) that a YAML file (or the experiment YAML) provides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use parquet::file::reader::FileReader;
use parquet::record::Field;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Example, Input, Label, LabelSet, SplitParts, Task};
use crate::error::{DataError, Location, Result};
use crate::io::{Locator, Table, read_text};
use crate::readers::row_id;
use crate::registry::{DatasetOptions, holdout_parts};

/// File format of a generic dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// RFC 4180 CSV (quoted fields may hold commas and newlines).
    Csv,
    /// Tab-separated, no quoting: lines are split on `\t` only.
    Tsv,
    /// One JSON object per line; columns are top-level keys.
    Jsonl,
    /// Apache parquet; columns are top-level fields.
    Parquet,
}

impl Format {
    /// The format named by a file's extension (`.csv`, `.tsv`, `.jsonl`/`.ndjson`,
    /// `.parquet`), looking through a final `.gz`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "csv" => Some(Self::Csv),
            "tsv" => Some(Self::Tsv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// A column: a name (header, JSON key or parquet field) or a 0-based position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// 0-based position (for header-less CSV/TSV, or parquet).
    Index(usize),
    /// Column name.
    Name(String),
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Index(i) => write!(f, "#{i}"),
            Column::Name(n) => f.write_str(n),
        }
    }
}

/// The files of a generic dataset, relative to the data root (or absolute).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSplits {
    /// The training file.
    pub train: PathBuf,
    /// The validation file; without it, val is the protocol's seeded holdout of train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<PathBuf>,
    /// The test file.
    pub test: PathBuf,
}

/// A column mapping, e.g. in YAML:
///
/// ```yaml
/// name: my-reviews
/// format: csv          # optional: inferred from the extension (.csv .tsv .jsonl .parquet, + .gz)
/// text: review
/// text_pair: null      # optional second text
/// label: stars
/// id: review_id        # optional: otherwise "{name}:{split}:{row}"
/// header: true         # CSV/TSV only
/// labels: ["1", "2", "3", "4", "5"]   # optional: otherwise the sorted distinct values
/// splits: {train: reviews/train.csv, val: reviews/dev.csv, test: reviews/test.csv}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSpec {
    /// Dataset name (used in ids and reports). Optional in YAML where the context names the
    /// dataset (an experiment's `datasets:` entry fills it in); [`load_generic`] refuses an
    /// empty one.
    #[serde(default)]
    pub name: String,
    /// File format; inferred from each file's extension when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The text column.
    pub text: Column,
    /// The second text of a pair, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair: Option<Column>,
    /// The label column (strings, integers or booleans; labels are their text).
    pub label: Column,
    /// The id column, if the data has ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Column>,
    /// Whether CSV/TSV files start with a header (default true).
    #[serde(default = "default_header")]
    pub header: bool,
    /// The label names in index order; default: the distinct labels of all splits, sorted
    /// numerically when all are integers, else as strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The files.
    pub splits: GenericSplits,
}

fn default_header() -> bool {
    true
}

impl GenericSpec {
    /// Parses a mapping from YAML text; `origin` names it in errors.
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<Self> {
        serde_yaml_ng::from_str(yaml).map_err(|source| DataError::Yaml {
            origin: origin.to_owned(),
            source,
        })
    }

    /// Reads a mapping from a YAML file.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        Self::from_yaml_str(&read_text(path)?, &path.display().to_string())
    }
}

/// One record's requested values.
struct Record {
    location: Location,
    values: Vec<String>,
}

/// Loads a generic dataset: train, val (file or seeded holdout), test.
pub fn load_generic(spec: &GenericSpec, options: &DatasetOptions) -> Result<Dataset> {
    if spec.name.trim().is_empty() {
        return Err(DataError::invalid("name", "the dataset mapping needs a name"));
    }
    let how = format!(
        "the files named in the dataset mapping `{}` (paths are relative to the data root)",
        spec.name
    );
    let mut needs = vec![spec.splits.train.display().to_string()];
    needs.extend(spec.splits.val.iter().map(|p| p.display().to_string()));
    needs.push(spec.splits.test.display().to_string());
    let mut locator = Locator::new(&spec.name, &options.root, &how, needs.join(", "));
    let mut files: Vec<(&str, PathBuf)> = vec![("train", spec.splits.train.clone())];
    if let Some(val) = &spec.splits.val {
        files.push(("val", val.clone()));
    }
    files.push(("test", spec.splits.test.clone()));

    let mut columns = vec![&spec.text, &spec.label];
    columns.extend(spec.text_pair.as_ref());
    columns.extend(spec.id.as_ref());

    let mut raw = Vec::new();
    for (split, rel) in files {
        let path = locator.require(&[&rel.to_string_lossy()])?;
        let format = match spec.format {
            Some(format) => format,
            None => Format::from_path(&path).ok_or_else(|| {
                DataError::invalid(
                    "format",
                    format!(
                        "cannot tell the format of {} from its extension; set `format:` to \
                         csv, tsv, jsonl or parquet",
                        path.display()
                    ),
                )
            })?,
        };
        let records = read_records(&path, format, spec.header, &columns)?;
        raw.push((split, locator.show(&path), path, records));
    }

    let labels = match &spec.labels {
        Some(names) => {
            let distinct: BTreeSet<&String> = names.iter().collect();
            if names.is_empty() || distinct.len() != names.len() {
                return Err(DataError::invalid("labels", "must be a non-empty list without repeats"));
            }
            LabelSet::new(names)
        }
        None => {
            let distinct: BTreeSet<&str> = raw
                .iter()
                .flat_map(|(_, _, _, records)| records.iter().map(|r| r.values[1].as_str()))
                .collect();
            let mut names: Vec<&str> = distinct.into_iter().collect();
            if names.iter().all(|n| n.parse::<i64>().is_ok()) {
                names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
            }
            LabelSet::new(&names)
        }
    };

    let mut parts = Vec::new();
    for (split, shown, path, records) in raw {
        let examples = records
            .into_iter()
            .enumerate()
            .map(|(row, record)| {
                let mut values = record.values.into_iter();
                let text = values.next().unwrap_or_default();
                let label_name = values.next().unwrap_or_default();
                let pair = spec.text_pair.as_ref().and_then(|_| values.next());
                let id = spec.id.as_ref().and_then(|_| values.next());
                let label = labels
                    .lookup(&label_name)
                    .map_err(|m| DataError::malformed(&path, record.location, m))?;
                Ok(Example {
                    id: id.unwrap_or_else(|| row_id(&spec.name, split, row)),
                    input: match pair {
                        Some(pair) => Input::Pair(text, pair),
                        None => Input::Text(text),
                    },
                    label: Label::Class(label),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if split == "train" && spec.splits.val.is_none() {
            parts.extend(holdout_parts(&spec.name, examples, &shown, options)?);
        } else {
            parts.push(SplitParts::new(split, shown, examples));
        }
    }
    Dataset::new(&spec.name, Task::Sequence, labels.into_names(), parts, Vec::new())
}

fn read_records(path: &Path, format: Format, header: bool, columns: &[&Column]) -> Result<Vec<Record>> {
    match format {
        Format::Csv | Format::Tsv => {
            let table = if format == Format::Csv {
                Table::csv(path, header)?
            } else {
                Table::tsv(path, header)?
            };
            let width = table.rows.first().map_or(0, |(_, f)| f.len());
            let indices = columns
                .iter()
                .map(|c| match c {
                    Column::Name(name) if header => table.column(name),
                    Column::Name(name) => Err(DataError::UnknownColumn {
                        path: path.to_path_buf(),
                        column: name.clone(),
                        available: format!(
                            "none by name: the mapping says `header: false`, so use 0-based \
                             positions 0..{width}"
                        ),
                    }),
                    Column::Index(i) if *i < width || table.rows.is_empty() => Ok(*i),
                    Column::Index(i) => Err(DataError::UnknownColumn {
                        path: path.to_path_buf(),
                        column: format!("#{i}"),
                        available: format!("{width} columns"),
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(table
                .rows
                .into_iter()
                .map(|(line, fields)| Record {
                    location: Location::Line(line),
                    values: indices.iter().map(|&i| fields[i].clone()).collect(),
                })
                .collect())
        }
        Format::Jsonl => read_jsonl(path, columns),
        Format::Parquet => read_parquet(path, columns),
    }
}

fn read_jsonl(path: &Path, columns: &[&Column]) -> Result<Vec<Record>> {
    let keys = columns
        .iter()
        .map(|c| match c {
            Column::Name(name) => Ok(name.as_str()),
            Column::Index(i) => Err(DataError::invalid(
                "column",
                format!("`{i}`: JSON Lines columns are keys, not positions"),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    crate::readers::jsonl::<serde_json::Map<String, serde_json::Value>>(path)?
        .into_iter()
        .map(|(line, object)| {
            let location = Location::Line(line);
            let values = keys
                .iter()
                .map(|key| {
                    let value = object
                        .get(*key)
                        .ok_or_else(|| DataError::malformed(path, location, format!("no key `{key}`")))?;
                    json_scalar(value).ok_or_else(|| {
                        DataError::malformed(
                            path,
                            location,
                            format!("`{key}` is {value}, not a string, number or boolean"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Record { location, values })
        })
        .collect()
}

fn json_scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The rows of a Parquet file; a corrupt file is an error, whatever the reader does with it.
fn read_parquet(path: &Path, columns: &[&Column]) -> Result<Vec<Record>> {
    crate::untrusted::catch_panic(|| read_parquet_rows(path, columns)).unwrap_or_else(|reason| {
        Err(DataError::BadParquet {
            path: path.to_path_buf(),
            reason,
        })
    })
}

fn read_parquet_rows(path: &Path, columns: &[&Column]) -> Result<Vec<Record>> {
    let pq = |source| DataError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = crate::untrusted::open_parquet(path).map_err(|reason| DataError::BadParquet {
        path: path.to_path_buf(),
        reason,
    })?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let indices = columns
        .iter()
        .map(|c| {
            let found = match c {
                Column::Name(name) => names.iter().position(|n| n == name),
                Column::Index(i) => (*i < names.len()).then_some(*i),
            };
            found.ok_or_else(|| DataError::UnknownColumn {
                path: path.to_path_buf(),
                column: c.to_string(),
                available: names.join(", "),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut records = Vec::new();
    for (row_index, row) in reader.get_row_iter(None).map_err(pq)?.enumerate() {
        let row = row.map_err(pq)?;
        let location = Location::Row(row_index as u64);
        let fields: Vec<(&String, &Field)> = row.get_column_iter().collect();
        let values = indices
            .iter()
            .map(|&i| {
                let (name, field) = fields
                    .get(i)
                    .ok_or_else(|| DataError::malformed(path, location, format!("no column #{i}")))?;
                parquet_scalar(field).ok_or_else(|| {
                    DataError::malformed(
                        path,
                        location,
                        format!("`{name}` is {field}, not a string, integer or boolean"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        records.push(Record { location, values });
    }
    Ok(records)
}

fn parquet_scalar(field: &Field) -> Option<String> {
    Some(match field {
        Field::Str(s) => s.clone(),
        Field::Bool(b) => b.to_string(),
        Field::Byte(v) => v.to_string(),
        Field::Short(v) => v.to_string(),
        Field::Int(v) => v.to_string(),
        Field::Long(v) => v.to_string(),
        Field::UByte(v) => v.to_string(),
        Field::UShort(v) => v.to_string(),
        Field::UInt(v) => v.to_string(),
        Field::ULong(v) => v.to_string(),
        _ => return None,
    })
}
