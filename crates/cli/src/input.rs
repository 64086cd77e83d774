//! Reading per-sample arrays (probabilities, logits, labels, scores) from `.npy`, `.csv`,
//! `.parquet` and `.safetensors` files.
//!
//! A file argument is `PATH` or `PATH#SELECT`, where `SELECT` names a column (CSV with a header,
//! Parquet) or a tensor (safetensors): one name for a vector, one list column or several
//! comma-separated columns for a matrix. Without `#`, a vector file must hold a single column or
//! tensor, or one named after its role (`label`/`labels`, `score`/`scores`/`u`,
//! `probs`, `logits`); a matrix file is read whole (every column, one per class). Every error
//! names the file and, for a bad value, the row (0-based sample index) and column.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// What an input file provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `[N, C]` probabilities.
    Probs,
    /// `[N, C]` logits.
    Logits,
    /// `[N]` integer labels.
    Labels,
    /// `[N]` uncertainty scores.
    Scores,
}

impl Role {
    fn is_matrix(self) -> bool {
        matches!(self, Role::Probs | Role::Logits)
    }

    /// Column or tensor names recognised for this role, preferred first.
    fn names(self) -> &'static [&'static str] {
        match self {
            Role::Probs => &["probs", "probabilities"],
            Role::Logits => &["logits"],
            Role::Labels => &["labels", "label", "y"],
            Role::Scores => &["scores", "score", "u"],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.names()[0])
    }
}

/// A file argument: a path and an optional column/tensor selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The file.
    pub(crate) path: PathBuf,
    /// Column(s) or tensor after `#`.
    pub(crate) select: Option<String>,
}

impl Source {
    /// Parses `PATH` or `PATH#SELECT`.
    pub(crate) fn parse(arg: &str) -> Self {
        match arg.rsplit_once('#') {
            Some((path, sel)) if !sel.is_empty() && !path.is_empty() => Self {
                path: PathBuf::from(path),
                select: Some(sel.to_string()),
            },
            _ => Self {
                path: PathBuf::from(arg),
                select: None,
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(s) = &self.select {
            write!(f, "#{s}")?;
        }
        Ok(())
    }
}

/// A row-major array widened to f64. Vectors have `cols == 1`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Array {
    /// Rows (samples).
    pub(crate) rows: usize,
    /// Columns (classes); 1 for a vector.
    pub(crate) cols: usize,
    /// Whether the file stored one dimension only (`[N]`).
    pub(crate) one_dimensional: bool,
    /// Values, row-major.
    pub(crate) data: Vec<f64>,
    /// A single-column CSV whose first line `0` may be pandas' column name rather than a value
    /// (the values after it are integers too); the caller decides by the other files' rows.
    pub(crate) header_candidate: bool,
}

impl Array {
    fn vector(data: Vec<f64>) -> Self {
        Self {
            rows: data.len(),
            cols: 1,
            one_dimensional: true,
            data,
            header_candidate: false,
        }
    }
}

/// Reads the array that `src` provides for `role`, checking its shape.
pub(crate) fn read(src: &Source, role: Role) -> Result<Array> {
    let path = &src.path;
    if path.is_dir() {
        bail!("{}: is a directory; give the {role} file", path.display());
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let array = match ext.as_deref() {
        Some("npy") => {
            if src.select.is_some() {
                bail!("{src}: a .npy file holds one array; remove the `#` selection");
            }
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            npy::parse(&bytes).with_context(|| format!("{}: not a valid .npy file", path.display()))?
        }
        Some("csv") | Some("tsv") => csv_table(path, role, src.select.as_deref())?,
        Some("parquet") => parquet_table(path, role, src.select.as_deref())?,
        Some("safetensors") => safetensors_array(path, role, src.select.as_deref())?,
        _ => bail!(
            "{}: unsupported file type (expected .npy, .csv, .tsv, .parquet or .safetensors)",
            path.display()
        ),
    };
    if role.is_matrix() {
        ensure!(array.rows > 0, "{}: the {role} array is empty", path.display());
    } else {
        ensure!(
            array.cols == 1,
            "{}: {role} must be one value per sample, found shape [{}, {}]",
            path.display(),
            array.rows,
            array.cols
        );
    }
    Ok(array)
}

/// Labels read from a file: integer class indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Labels {
    /// One per sample.
    pub(crate) values: Vec<i64>,
    /// See [`Array::header_candidate`].
    pub(crate) header_candidate: bool,
}

/// Reads labels: integer values, or floats that are whole numbers.
pub(crate) fn read_labels(src: &Source) -> Result<Labels> {
    let a = read(src, Role::Labels)?;
    let values = a
        .data
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            if !v.is_finite() || v.fract() != 0.0 {
                Err(anyhow!("{src}: labels: row {row} is {v}, not an integer class index"))
            } else if v.abs() >= 9.0e15 {
                Err(anyhow!(
                    "{src}: labels: row {row} is {v}, far beyond any class index (labels count classes from 0)"
                ))
            } else {
                Ok(v as i64)
            }
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(Labels {
        values,
        header_candidate: a.header_candidate,
    })
}

/// Drops the first value of a single-column CSV when its first line `0` can only be pandas'
/// column name: the file has exactly one row more than the `reference` file.
pub(crate) fn reconcile_header<T>(
    values: &mut Vec<T>,
    header_candidate: bool,
    rows: usize,
    src: &Source,
    reference: &Source,
) {
    if header_candidate && values.len() == rows + 1 {
        values.remove(0);
        crate::stdio::write_err(&format!(
            "note: {src}: the first line `0` is read as a column name (pandas writes it for an unnamed \
             column), since the file has one row more than {reference}\n"
        ));
    }
}

fn pick_named(names: &[String], role: Role) -> Option<&str> {
    role.names()
        .iter()
        .find_map(|want| names.iter().find(|n| n.as_str() == *want))
        .map(String::as_str)
}

/// Which of `available` columns to read for `role`, given an optional `#` selection.
fn select_columns(path: &Path, available: &[String], role: Role, select: Option<&str>) -> Result<Vec<usize>> {
    let index_of = |name: &str| -> Result<usize> {
        available.iter().position(|n| n == name).ok_or_else(|| {
            anyhow!(
                "{}: no column `{name}` (columns: {})",
                path.display(),
                available.join(", ")
            )
        })
    };
    if let Some(sel) = select {
        let cols = sel.split(',').map(|s| index_of(s.trim())).collect::<Result<Vec<_>>>()?;
        if !role.is_matrix() && cols.len() != 1 {
            bail!("{}: select one column for {role}, not {}", path.display(), cols.len());
        }
        return Ok(cols);
    }
    if available.len() == 1 || role.is_matrix() && pick_named(available, role).is_none() {
        return Ok((0..available.len()).collect());
    }
    match pick_named(available, role) {
        Some(name) => Ok(vec![index_of(name)?]),
        None => bail!(
            "{}: {} columns ({}); name the one holding {role} with `{}#COLUMN`",
            path.display(),
            available.len(),
            available.join(", "),
            path.display()
        ),
    }
}

/// What pandas writes for an unnamed index column: an empty header field, or `Unnamed: 0` after
/// a round trip through `read_csv`.
fn is_pandas_index(name: &str) -> bool {
    name.is_empty() || name == "Unnamed: 0"
}

/// A CSV or TSV table. A first line with a non-numeric field is a header; so is a first line of
/// the integers `0,1,…,k−1` (k ≥ 2), the column names pandas gives an unnamed array. A pandas
/// index column (an empty or `Unnamed: 0` header) is left out unless selected. A single-column
/// file whose first line is `0` is pandas' header when no value after it is written as an integer;
/// with integer values it stays data and [`Array::header_candidate`] says so (decision E6).
fn csv_table(path: &Path, role: Role, select: Option<&str>) -> Result<Array> {
    let delimiter = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) {
        b'\t'
    } else {
        b','
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The line an editor shows for a byte offset: blank lines and quoted line breaks count,
    // which the CSV reader's own line numbers leave out.
    let line_at = |pos: Option<&csv::Position>, fallback: usize| {
        pos.map_or(fallback, |p| {
            // A record's position is where the reader stood, before the blank lines it skips.
            let mut start = usize::try_from(p.byte()).unwrap_or(usize::MAX).min(bytes.len());
            while start < bytes.len() && matches!(bytes[start], b'\n' | b'\r') {
                start += 1;
            }
            1 + bytes[..start].iter().filter(|&&b| b == b'\n').count()
        })
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let mut records = reader.records();
    let first = match records.next() {
        None => bail!("{}: empty file (no rows)", path.display()),
        Some(r) => r.map_err(|e| anyhow!("{}: line 1: {e}", path.display()))?,
    };
    let counting = first.iter().enumerate().all(|(i, f)| f == i.to_string());
    let has_header = first.iter().any(|f| f.parse::<f64>().is_err()) || (counting && first.len() >= 2);
    let maybe_header = counting && first.len() == 1;
    let names: Vec<String> = if has_header {
        first.iter().map(str::to_string).collect()
    } else {
        (0..first.len()).map(|i| format!("column{i}")).collect()
    };
    if !has_header && select.is_some() {
        bail!(
            "{}: `#` selects a column by name, but the file has no header line",
            path.display()
        );
    }
    // The pandas index is not data: it is left out of what is read unless selected by name.
    let index = (has_header && names.len() > 1 && is_pandas_index(&names[0])).then_some(0);
    let cols = if select.is_some() || index.is_none() {
        select_columns(path, &names, role, select)?
    } else {
        let rest: Vec<String> = names[1..].to_vec();
        select_columns(path, &rest, role, None)?
            .into_iter()
            .map(|c| c + 1)
            .collect()
    };
    let mut data = Vec::new();
    // Of the values after the first line: whether every one / none is written as an integer.
    let (mut all_integers, mut no_integers) = (true, true);
    let first_data = if has_header { None } else { Some(Ok(first)) };
    for (row, rec) in first_data.into_iter().chain(records).enumerate() {
        let rec = rec.map_err(|e| {
            let line = line_at(e.position(), row + 1 + usize::from(has_header));
            let what = match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                    format!("has {len} fields, expected {expected_len}")
                }
                csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_string(),
                _ => e.to_string(),
            };
            anyhow!("{}: line {line} (row {row}) {what}", path.display())
        })?;
        // Counted only for a message: counting lines on every row would be quadratic.
        let line = || line_at(rec.position(), row + 1);
        if rec.len() != names.len() {
            bail!(
                "{}: line {} (row {row}) has {} fields, expected {}",
                path.display(),
                line(),
                rec.len(),
                names.len()
            );
        }
        for &c in &cols {
            let field = &rec[c];
            let v: f64 = field.parse().map_err(|_| {
                anyhow!(
                    "{}: line {} (row {row}), column `{}`: cannot read `{}` as a number",
                    path.display(),
                    line(),
                    names[c],
                    shorten(field)
                )
            })?;
            if row > 0 {
                let integer = field.parse::<i64>().is_ok();
                all_integers &= integer;
                no_integers &= !integer;
            }
            data.push(v);
        }
    }
    let mut rows = data.len() / cols.len().max(1);
    // `0` over values all written as floats: pandas' name for an unnamed column, not a value.
    let dropped_header = maybe_header && rows > 1 && no_integers;
    if dropped_header {
        data.remove(0);
        rows -= 1;
    }
    ensure!(rows > 0, "{}: no data rows", path.display());
    Ok(Array {
        rows,
        cols: cols.len(),
        one_dimensional: cols.len() == 1,
        data,
        header_candidate: maybe_header && all_integers && rows > 1,
    })
}

/// A user's field echoed in a message, cut to a readable length.
fn shorten(field: &str) -> String {
    const MAX: usize = 60;
    if field.chars().count() <= MAX {
        field.to_string()
    } else {
        format!("{}…", field.chars().take(MAX).collect::<String>())
    }
}

/// A Parquet table; a corrupt file is an error, whatever the reader does with it (decision D11).
fn parquet_table(path: &Path, role: Role, select: Option<&str>) -> Result<Array> {
    ueb_data::untrusted::catch_panic(|| parquet_rows(path, role, select))
        .unwrap_or_else(|reason| Err(anyhow!("{}: not a valid Parquet file: {reason}", path.display())))
}

fn parquet_rows(path: &Path, role: Role, select: Option<&str>) -> Result<Array> {
    use parquet::file::reader::FileReader;
    use parquet::record::Field;

    std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader = ueb_data::untrusted::open_parquet(path)
        .map_err(|reason| anyhow!("{}: not a valid Parquet file: {reason}", path.display()))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let cols = select_columns(path, &names, role, select)?;
    let mut data = Vec::new();
    let mut width: Option<usize> = None;
    let mut saw_list = false;
    let mut rows = 0;
    let bad = |row: usize, col: &str, what: &str| anyhow!("{}: row {row}, column `{col}`: {what}", path.display());
    let scalar = |f: &Field| -> Option<f64> {
        Some(match f {
            Field::Bool(b) => f64::from(u8::from(*b)),
            Field::Byte(v) => f64::from(*v),
            Field::Short(v) => f64::from(*v),
            Field::Int(v) => f64::from(*v),
            Field::Long(v) => *v as f64,
            Field::UByte(v) => f64::from(*v),
            Field::UShort(v) => f64::from(*v),
            Field::UInt(v) => f64::from(*v),
            Field::ULong(v) => *v as f64,
            Field::Float16(v) => f64::from(*v),
            Field::Float(v) => f64::from(*v),
            Field::Double(v) => *v,
            _ => return None,
        })
    };
    let iter = reader
        .get_row_iter(None)
        .with_context(|| format!("{}: cannot read rows", path.display()))?;
    for (row, r) in iter.enumerate() {
        let r = r.with_context(|| format!("{}: row {row}", path.display()))?;
        let fields: Vec<&Field> = r.get_column_iter().map(|(_, f)| f).collect();
        let mut row_width = 0;
        for &c in &cols {
            match fields[c] {
                Field::ListInternal(list) if role.is_matrix() && cols.len() == 1 => {
                    for (j, el) in list.elements().iter().enumerate() {
                        let v = scalar(el)
                            .ok_or_else(|| bad(row, &names[c], &format!("list element {j} is not a number")))?;
                        data.push(v);
                    }
                    row_width += list.len();
                    saw_list = true;
                }
                Field::Null => return Err(bad(row, &names[c], "missing value (null)")),
                f => {
                    let v = scalar(f).ok_or_else(|| bad(row, &names[c], "not a number"))?;
                    data.push(v);
                    row_width += 1;
                }
            }
        }
        match width {
            None => width = Some(row_width),
            Some(w) if w != row_width => {
                return Err(bad(
                    row,
                    &names[cols[0]],
                    &format!("{row_width} values, but earlier rows have {w}"),
                ));
            }
            Some(_) => {}
        }
        rows += 1;
    }
    let cols_n = width.unwrap_or(cols.len());
    ensure!(rows > 0, "{}: no rows", path.display());
    Ok(Array {
        rows,
        cols: cols_n,
        one_dimensional: cols.len() == 1 && !saw_list,
        data,
        header_candidate: false,
    })
}

fn safetensors_array(path: &Path, role: Role, select: Option<&str>) -> Result<Array> {
    use safetensors::{Dtype, SafeTensors};

    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let name = match select {
        Some(s) => s.to_string(),
        None => match pick_named(&names, role) {
            Some(n) => n.to_string(),
            None if names.len() == 1 => names[0].clone(),
            None => bail!(
                "{}: no tensor `{}` (tensors: {}); name one with `{}#TENSOR`",
                path.display(),
                role.names()[0],
                names.join(", "),
                path.display()
            ),
        },
    };
    let t = st
        .tensor(&name)
        .map_err(|_| anyhow!("{}: no tensor `{name}` (tensors: {})", path.display(), names.join(", ")))?;
    let raw = t.data();
    macro_rules! widen {
        ($ty:ty, $n:expr, $conv:expr) => {
            raw.chunks_exact($n)
                .map(|b| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(b);
                    $conv(<$ty>::from_le_bytes(a))
                })
                .collect::<Vec<f64>>()
        };
    }
    let data = match t.dtype() {
        Dtype::F64 => widen!(f64, 8, |v| v),
        Dtype::F32 => widen!(f32, 4, f64::from),
        Dtype::F16 => widen!(half::f16, 2, f64::from),
        Dtype::BF16 => widen!(half::bf16, 2, f64::from),
        Dtype::I64 => widen!(i64, 8, |v| v as f64),
        Dtype::I32 => widen!(i32, 4, f64::from),
        Dtype::I16 => widen!(i16, 2, f64::from),
        Dtype::I8 => widen!(i8, 1, f64::from),
        Dtype::U64 => widen!(u64, 8, |v| v as f64),
        Dtype::U32 => widen!(u32, 4, f64::from),
        Dtype::U16 => widen!(u16, 2, f64::from),
        Dtype::U8 => widen!(u8, 1, f64::from),
        Dtype::BOOL => raw.iter().map(|&b| f64::from(u8::from(b != 0))).collect(),
        other => bail!("{}: tensor `{name}` has unsupported dtype {other:?}", path.display()),
    };
    shaped(path, &format!("tensor `{name}`"), t.shape(), data)
}

/// Checks a 1-D or 2-D shape against the data and builds the array.
fn shaped(path: &Path, what: &str, shape: &[usize], data: Vec<f64>) -> Result<Array> {
    match *shape {
        [n] => {
            ensure!(data.len() == n, "{}: {what} is truncated", path.display());
            Ok(Array::vector(data))
        }
        [rows, cols] => {
            ensure!(
                rows.checked_mul(cols) == Some(data.len()),
                "{}: {what} has shape {shape:?} but {} values",
                path.display(),
                data.len()
            );
            Ok(Array {
                rows,
                cols,
                one_dimensional: false,
                header_candidate: false,
                data,
            })
        }
        _ => bail!("{}: {what} has shape {shape:?}; expected [N] or [N, C]", path.display()),
    }
}

/// The `.npy` format (NumPy NEP 1): versions 1–3, little- or big-endian, C or Fortran order.
mod npy {
    use anyhow::{Result, anyhow, bail, ensure};

    const MAGIC: &[u8] = b"\x93NUMPY";

    /// Parses a whole `.npy` file into an [`super::Array`] widened to f64.
    pub(crate) fn parse(bytes: &[u8]) -> Result<super::Array> {
        ensure!(
            bytes.len() >= 10 && &bytes[..6] == MAGIC,
            "missing the \\x93NUMPY magic string"
        );
        let major = bytes[6];
        let (header_len, start) = match major {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10usize),
            2 | 3 => {
                ensure!(bytes.len() >= 12, "truncated header");
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            v => bail!("unsupported format version {v}"),
        };
        let header = start
            .checked_add(header_len)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| {
                anyhow!(
                    "truncated header: it claims {header_len} bytes, the file has {}",
                    bytes.len()
                )
            })?;
        let header = std::str::from_utf8(header).map_err(|_| anyhow!("header is not text"))?;
        let descr = dict_value(header, "descr")?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let fortran = dict_value(header, "fortran_order")?.starts_with("True");
        let shape = parse_shape(&dict_value(header, "shape")?)?;
        let body = &bytes[start + header_len..];

        let (order, kind, size) = parse_descr(descr)?;
        // The header's shape is untrusted: its size is checked against the file before
        // anything is allocated.
        let bytes_needed = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|count| count.checked_mul(size).map(|b| (count, b)));
        let Some((count, bytes_needed)) = bytes_needed else {
            bail!("the shape {shape:?} describes more data than any file can hold");
        };
        ensure!(
            body.len() >= bytes_needed,
            "data is truncated: {} bytes for the {count} values of {size} bytes that shape {shape:?} needs",
            body.len()
        );
        let raw = &body[..bytes_needed];
        let data = match (kind, size) {
            ('f', 2) => widen::<2>(raw, order, |b| f64::from(half::f16::from_le_bytes(b))),
            ('f', 4) => widen::<4>(raw, order, |b| f64::from(f32::from_le_bytes(b))),
            ('f', 8) => widen::<8>(raw, order, f64::from_le_bytes),
            ('i', 1) => widen::<1>(raw, order, |b| f64::from(i8::from_le_bytes(b))),
            ('i', 2) => widen::<2>(raw, order, |b| f64::from(i16::from_le_bytes(b))),
            ('i', 4) => widen::<4>(raw, order, |b| f64::from(i32::from_le_bytes(b))),
            ('i', 8) => widen::<8>(raw, order, |b| i64::from_le_bytes(b) as f64),
            ('u', 1) => widen::<1>(raw, order, |b| f64::from(b[0])),
            ('u', 2) => widen::<2>(raw, order, |b| f64::from(u16::from_le_bytes(b))),
            ('u', 4) => widen::<4>(raw, order, |b| f64::from(u32::from_le_bytes(b))),
            ('u', 8) => widen::<8>(raw, order, |b| u64::from_le_bytes(b) as f64),
            ('b', 1) => widen::<1>(raw, order, |b| f64::from(u8::from(b[0] != 0))),
            _ => bail!("unsupported dtype `{descr}`"),
        };
        let array = match shape.as_slice() {
            [_] => super::Array::vector(data),
            [rows, cols] => {
                let data = if fortran && *rows > 1 && *cols > 1 {
                    transpose(&data, *cols, *rows)
                } else {
                    data
                };
                super::Array {
                    rows: *rows,
                    cols: *cols,
                    one_dimensional: false,
                    header_candidate: false,
                    data,
                }
            }
            s => bail!("array has shape {s:?}; expected [N] or [N, C]"),
        };
        Ok(array)
    }

    /// Converts `N`-byte elements in byte order `order` ('<' or '>') with `f` (little-endian).
    fn widen<const N: usize>(raw: &[u8], order: char, f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                if order == '>' {
                    b.reverse();
                }
                f(b)
            })
            .collect()
    }

    /// Column-major data of a `[rows, cols]` array (Fortran order) to row-major.
    fn transpose(src: &[f64], cols: usize, rows: usize) -> Vec<f64> {
        let mut out = vec![0.0; src.len()];
        for c in 0..cols {
            for r in 0..rows {
                out[r * cols + c] = src[c * rows + r];
            }
        }
        out
    }

    fn parse_descr(descr: &str) -> Result<(char, char, usize)> {
        let mut chars = descr.chars();
        let order = chars.next().ok_or_else(|| anyhow!("empty dtype"))?;
        let (order, rest) = if matches!(order, '<' | '>' | '|' | '=') {
            (order, chars.as_str())
        } else {
            ('=', descr)
        };
        let mut rest = rest.chars();
        let kind = rest.next().ok_or_else(|| anyhow!("dtype `{descr}` has no kind"))?;
        let size: usize = rest
            .as_str()
            .parse()
            .map_err(|_| anyhow!("unsupported dtype `{descr}`"))?;
        let ok = matches!((kind, size), ('f', 2 | 4 | 8) | ('i' | 'u', 1 | 2 | 4 | 8) | ('b', 1));
        ensure!(
            ok,
            "unsupported dtype `{descr}` (expected a float, integer or bool dtype)"
        );
        // '=' is native order; every platform we build for is little-endian.
        let order = if order == '=' { '<' } else { order };
        Ok((order, kind, size))
    }

    fn dict_value(header: &str, key: &str) -> Result<String> {
        let pat_a = format!("'{key}':");
        let pat_b = format!("\"{key}\":");
        let pos = header
            .find(&pat_a)
            .map(|p| p + pat_a.len())
            .or_else(|| header.find(&pat_b).map(|p| p + pat_b.len()))
            .ok_or_else(|| anyhow!("header has no `{key}`"))?;
        let rest = header[pos..].trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')').map(|e| e + 1)
        } else {
            rest.find([',', '}'])
        }
        .ok_or_else(|| anyhow!("header value of `{key}` is not terminated"))?;
        Ok(rest[..end].trim().to_string())
    }

    fn parse_shape(s: &str) -> Result<Vec<usize>> {
        let inner = s.trim().trim_start_matches('(').trim_end_matches(')');
        inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.trim_end_matches('L')
                    .parse::<usize>()
                    .map_err(|_| anyhow!("bad shape `{s}`"))
            })
            .collect()
    }
}
