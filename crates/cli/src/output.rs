//! Writing one value per row (scores) as `.npy`, `.csv` or `.parquet`.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `values` as a one-column file named `column` (CSV header, Parquet column), chosen by
/// the extension; via a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_column(path: &Path, column: &str, values: &[f64]) -> Result<()> {
    check_path(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("npy") => npy_f64(values),
        Some("csv") => {
            let mut s = format!("{column}\n");
            for v in values {
                s.push_str(&format!("{v}\n")); // shortest round-trip representation
            }
            s.into_bytes()
        }
        Some("parquet") => parquet_f64(column, values)?,
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

/// A version-1 `.npy` file holding a little-endian f64 vector.
fn npy_f64(values: &[f64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
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

/// A Parquet file with one required DOUBLE column.
fn parquet_f64(column: &str, values: &[f64]) -> Result<Vec<u8>> {
    use std::sync::Arc;

    use parquet::data_type::DoubleType;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let schema = Arc::new(parse_message_type(&format!(
        "message scores {{ REQUIRED DOUBLE {column}; }}"
    ))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props)?;
        let mut group = writer.next_row_group()?;
        if let Some(mut col) = group.next_column()? {
            col.typed::<DoubleType>().write_batch(values, None, None)?;
            col.close()?;
        }
        group.close()?;
        writer.close()?;
    }
    Ok(buf)
}
