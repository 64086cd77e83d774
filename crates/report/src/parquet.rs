//! The results directory's two Parquet tables, `scores.parquet` and `metrics.parquet`: their
//! columns, their one encoder (the `parquet` crate) and their one reader (polars).
//!
//! `ueb run` writes both through this module and `ueb report` reads both through it, so a column
//! is named in one place. The layout is documented in `docs/runner.md`.

use std::path::Path;
use std::sync::Arc;

use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use polars::prelude::{DataFrame, DataType, ParquetReader, SerReader};

use crate::error::{ReportError, Result, io, pl};
use crate::results::{CellKey, MetricValue};

/// One column to encode: a name and its values.
#[derive(Debug, Clone, Copy)]
enum Column<'a> {
    /// INT64, required.
    I64(&'a str, &'a [i64]),
    /// DOUBLE, required.
    F64(&'a str, &'a [f64]),
    /// DOUBLE, optional (`None` is null).
    OptF64(&'a str, &'a [Option<f64>]),
    /// BOOLEAN, required.
    Bool(&'a str, &'a [bool]),
    /// UTF-8 string, required.
    Str(&'a str, &'a [String]),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::I64(_, v) => v.len(),
            Column::F64(_, v) => v.len(),
            Column::OptF64(_, v) => v.len(),
            Column::Bool(_, v) => v.len(),
            Column::Str(_, v) => v.len(),
        }
    }

    fn schema(&self) -> String {
        match self {
            Column::I64(n, _) => format!("REQUIRED INT64 {n};"),
            Column::F64(n, _) => format!("REQUIRED DOUBLE {n};"),
            Column::OptF64(n, _) => format!("OPTIONAL DOUBLE {n};"),
            Column::Bool(n, _) => format!("REQUIRED BOOLEAN {n};"),
            Column::Str(n, _) => format!("REQUIRED BYTE_ARRAY {n} (UTF8);"),
        }
    }
}

/// A Parquet file (one row group, snappy) with `columns`, all of one length; `what` names the
/// table in errors.
fn encode(what: &str, columns: &[Column<'_>]) -> Result<Vec<u8>> {
    let err = |source: parquet::errors::ParquetError| ReportError::Parquet {
        path: what.into(),
        source,
    };
    let n = columns.first().map_or(0, Column::len);
    if let Some(c) = columns.iter().find(|c| c.len() != n) {
        return Err(ReportError::Invalid {
            path: what.into(),
            reason: format!("column {} has {} rows, the first column {n}", c.schema(), c.len()),
        });
    }
    let schema = format!(
        "message table {{ {} }}",
        columns.iter().map(Column::schema).collect::<Vec<_>>().join(" ")
    );
    let schema = Arc::new(parse_message_type(&schema).map_err(err)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buf, schema, props).map_err(err)?;
    let mut group = writer.next_row_group().map_err(err)?;
    for col in columns {
        let Some(mut w) = group.next_column().map_err(err)? else {
            return Err(ReportError::Invalid {
                path: what.into(),
                reason: "the schema has fewer columns than the table".into(),
            });
        };
        match col {
            Column::I64(_, v) => w.typed::<Int64Type>().write_batch(v, None, None),
            Column::F64(_, v) => w.typed::<DoubleType>().write_batch(v, None, None),
            Column::OptF64(_, v) => {
                let values: Vec<f64> = v.iter().flatten().copied().collect();
                let def: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                w.typed::<DoubleType>().write_batch(&values, Some(&def), None)
            }
            Column::Bool(_, v) => w.typed::<BoolType>().write_batch(v, None, None),
            Column::Str(_, v) => {
                let values: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                w.typed::<ByteArrayType>().write_batch(&values, None, None)
            }
        }
        .map_err(err)?;
        w.close().map_err(err)?;
    }
    group.close().map_err(err)?;
    writer.close().map_err(err)?;
    Ok(buf)
}

/// Reads a Parquet file into a DataFrame.
pub(crate) fn read_frame(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    ParquetReader::new(file).finish().map_err(pl(path))
}

/// A required column read as `T`; a null names its row.
fn required<T>(
    df: &DataFrame,
    name: &str,
    path: &Path,
    dtype: &DataType,
    get: impl Fn(&polars::prelude::Column) -> polars::prelude::PolarsResult<Vec<Option<T>>>,
) -> Result<Vec<T>> {
    let col = df.column(name).map_err(pl(path))?;
    let cast = col.cast(dtype).map_err(pl(path))?;
    get(&cast)
        .map_err(pl(path))?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| ReportError::Invalid {
                path: path.to_path_buf(),
                reason: format!("column {name}: null in row {i}"),
            })
        })
        .collect()
}

fn i64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<i64>> {
    required(df, name, path, &DataType::Int64, |c| Ok(c.i64()?.iter().collect()))
}

fn f64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<f64>> {
    required(df, name, path, &DataType::Float64, |c| Ok(c.f64()?.iter().collect()))
}

fn strings(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<String>> {
    let col = df.column(name).map_err(pl(path))?;
    let ca = col.str().map_err(pl(path))?;
    ca.iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(str::to_string).ok_or_else(|| ReportError::Invalid {
                path: path.to_path_buf(),
                reason: format!("column {name}: null in row {i}"),
            })
        })
        .collect()
}

fn optional_f64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>> {
    let col = df.column(name).map_err(pl(path))?;
    let cast = col.cast(&DataType::Float64).map_err(pl(path))?;
    Ok(cast.f64().map_err(pl(path))?.iter().collect())
}

/// A head stage's test-split rows, as `scores.parquet` stores them: `index, label, prediction,
/// correct, score, confidence`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreTable {
    /// Gold labels.
    pub label: Vec<i64>,
    /// The head's prediction: argmax of its probabilities, lowest index on ties (§11).
    pub prediction: Vec<i64>,
    /// `prediction == label`.
    pub correct: Vec<bool>,
    /// The head's score `u` (higher = more uncertain).
    pub score: Vec<f64>,
    /// The largest probability.
    pub confidence: Vec<f64>,
}

impl ScoreTable {
    /// The table of a head's probabilities (row-major `[N, C]`) and scores on the test split.
    pub fn new(labels: &[i64], probs: &[f64], num_classes: usize, score: Vec<f64>) -> Self {
        let n = labels.len();
        let mut prediction = Vec::with_capacity(n);
        let mut confidence = Vec::with_capacity(n);
        for row in probs.chunks(num_classes.max(1)) {
            let (arg, max) = row
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
            prediction.push(arg as i64);
            confidence.push(max);
        }
        let correct = prediction.iter().zip(labels).map(|(p, y)| p == y).collect();
        Self {
            label: labels.to_vec(),
            prediction,
            correct,
            score,
            confidence,
        }
    }

    /// The `scores.parquet` bytes (`index` is the row number).
    ///
    /// # Errors
    /// Columns of different lengths, or an encoder error.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let index: Vec<i64> = (0..self.label.len() as i64).collect();
        encode(
            crate::results::SCORES_FILE,
            &[
                Column::I64("index", &index),
                Column::I64("label", &self.label),
                Column::I64("prediction", &self.prediction),
                Column::Bool("correct", &self.correct),
                Column::F64("score", &self.score),
                Column::F64("confidence", &self.confidence),
            ],
        )
    }
}

/// The columns of `scores.parquet` that metrics are computed from: `label` and `score`.
///
/// # Errors
/// An unreadable file, a missing column or a null, naming the file.
pub fn read_labels_and_scores(path: &Path) -> Result<(Vec<i64>, Vec<f64>)> {
    let df = read_frame(path)?;
    Ok((i64s(&df, "label", path)?, f64s(&df, "score", path)?))
}

/// One row of `metrics.parquet`: a cell, a head label and one of its metrics.
pub type MetricRow = (CellKey, String, MetricValue);

/// The `metrics.parquet` bytes of `rows`, in order: `backbone, dataset, seed, head, metric,
/// value, ci_low, ci_high` (undefined values and intervals are nulls).
///
/// # Errors
/// A seed beyond `i64`, or an encoder error.
pub fn metrics_to_bytes(rows: &[MetricRow]) -> Result<Vec<u8>> {
    let col = |f: fn(&MetricRow) -> &str| rows.iter().map(|r| f(r).to_string()).collect::<Vec<String>>();
    let (b, d, h, m) = (
        col(|r| &r.0.backbone),
        col(|r| &r.0.dataset),
        col(|r| &r.1),
        col(|r| &r.2.metric),
    );
    let seed = rows
        .iter()
        .map(|r| {
            i64::try_from(r.0.seed).map_err(|_| ReportError::Invalid {
                path: crate::results::METRICS_FILE.into(),
                reason: format!("seed {} does not fit a Parquet INT64", r.0.seed),
            })
        })
        .collect::<Result<Vec<i64>>>()?;
    let opt = |f: fn(&MetricValue) -> Option<f64>| rows.iter().map(|r| f(&r.2)).collect::<Vec<Option<f64>>>();
    encode(
        crate::results::METRICS_FILE,
        &[
            Column::Str("backbone", &b),
            Column::Str("dataset", &d),
            Column::I64("seed", &seed),
            Column::Str("head", &h),
            Column::Str("metric", &m),
            Column::OptF64("value", &opt(|v| v.value)),
            Column::OptF64("ci_low", &opt(|v| v.ci_low)),
            Column::OptF64("ci_high", &opt(|v| v.ci_high)),
        ],
    )
}

/// The rows of a `metrics.parquet`, in file order.
///
/// # Errors
/// An unreadable file, a missing column, a null where a value is required, or a negative seed,
/// naming the file and row.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let df = read_frame(path)?;
    let (b, d, h, m) = (
        strings(&df, "backbone", path)?,
        strings(&df, "dataset", path)?,
        strings(&df, "head", path)?,
        strings(&df, "metric", path)?,
    );
    let seed = i64s(&df, "seed", path)?;
    let (v, lo, hi) = (
        optional_f64s(&df, "value", path)?,
        optional_f64s(&df, "ci_low", path)?,
        optional_f64s(&df, "ci_high", path)?,
    );
    (0..df.height())
        .map(|i| {
            let cell = CellKey {
                backbone: b[i].clone(),
                dataset: d[i].clone(),
                seed: u64::try_from(seed[i]).map_err(|_| ReportError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("column seed: negative value in row {i}"),
                })?,
            };
            let value = MetricValue {
                metric: m[i].clone(),
                value: v[i],
                ci_low: lo[i],
                ci_high: hi[i],
            };
            Ok((cell, h[i].clone(), value))
        })
        .collect()
}
