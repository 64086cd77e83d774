//! Writing per-row outputs (scores, probabilities) as `.npy`, `.csv` or `.parquet`.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `values` as a one-column file named `column` (CSV header, Parquet column; a 1-D
/// `.npy`), chosen by the extension; via a temporary file and a rename, so a crash never
/// leaves half a file.
pub(crate) fn write_column(path: &Path, column: &str, values: &[f64]) -> Result<()> {
    write_table(path, &[column.to_string()], values, true)
}

/// Writes row-major `values` with `columns.len()` values per row: a CSV with those names as
/// header, a Parquet file with one DOUBLE column each, or a 2-D `.npy` `[N, C]`.
pub(crate) fn write_matrix(path: &Path, columns: &[String], values: &[f64]) -> Result<()> {
    write_table(path, columns, values, false)
}

fn write_table(path: &Path, columns: &[String], values: &[f64], vector: bool) -> Result<()> {
    check_path(path)?;
    let c = columns.len().max(1);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("npy") => npy_f64(values, (!vector).then_some(c)),
        Some("csv") => {
            let mut s = columns.join(",");
            s.push('\n');
            for row in values.chunks(c) {
                // Shortest round-trip representation.
                let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
                s.push_str(&cells.join(","));
                s.push('\n');
            }
            s.into_bytes()
        }
        Some("parquet") => parquet_f64(columns, values)?,
        _ => bail!(
            "{}: unsupported output type (expected .npy, .csv or .parquet)",
            path.display()
        ),
    };
    // A hidden temporary file, removed whatever fails.
    ueb_cache::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Checks an output path before any work: a known extension, not a directory, and a parent
/// directory that exists.
///
/// # Errors
/// What is wrong with the path, naming it.
pub(crate) fn check_path(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("npy" | "csv" | "parquet")) {
        bail!(
            "{}: unsupported output type (expected .npy, .csv or .parquet)",
            path.display()
        );
    }
    if path.is_dir() {
        bail!("{}: is a directory; give a file name", path.display());
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => {
            bail!("{}: the directory {} does not exist", path.display(), p.display())
        }
        _ => Ok(()),
    }
}

/// A version-1 `.npy` file of little-endian f64: a vector, or `[N, cols]` row-major.
fn npy_f64(values: &[f64], cols: Option<usize>) -> Vec<u8> {
    let shape = match cols {
        None => format!("({},)", values.len()),
        Some(c) => format!("({}, {c})", values.len() / c.max(1)),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A Parquet file with one required DOUBLE column per name, from row-major `values`.
fn parquet_f64(columns: &[String], values: &[f64]) -> Result<Vec<u8>> {
    use std::sync::Arc;

    use parquet::data_type::DoubleType;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let fields: String = columns.iter().map(|c| format!("REQUIRED DOUBLE {c}; ")).collect();
    let schema = Arc::new(parse_message_type(&format!("message table {{ {fields}}}"))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props)?;
        let mut group = writer.next_row_group()?;
        let c = columns.len().max(1);
        for k in 0..c {
            let Some(mut col) = group.next_column()? else { break };
            let column: Vec<f64> = values.chunks(c).map(|row| row[k]).collect();
            col.typed::<DoubleType>().write_batch(&column, None, None)?;
            col.close()?;
        }
        group.close()?;
        writer.close()?;
    }
    Ok(buf)
}
