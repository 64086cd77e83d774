//! Writing the runner's small Parquet tables (scores, metrics) with typed columns; `ueb-report`
//! reads them back.

use std::sync::Arc;

use crate::error::{Result, bail};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// One column: a name and its values.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
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

/// A Parquet file (one row group, snappy) with `columns`, all of one length.
pub fn to_bytes(columns: &[Column<'_>]) -> Result<Vec<u8>> {
    let n = columns.first().map_or(0, Column::len);
    if columns.iter().any(|c| c.len() != n) {
        bail!("internal: columns of different lengths");
    }
    let schema = format!(
        "message table {{ {} }}",
        columns.iter().map(Column::schema).collect::<Vec<_>>().join(" ")
    );
    let schema = Arc::new(parse_message_type(&schema)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props)?;
        let mut group = writer.next_row_group()?;
        for col in columns {
            let Some(mut w) = group.next_column()? else {
                bail!("internal: schema has fewer columns")
            };
            match col {
                Column::I64(_, v) => {
                    w.typed::<Int64Type>().write_batch(v, None, None)?;
                }
                Column::F64(_, v) => {
                    w.typed::<DoubleType>().write_batch(v, None, None)?;
                }
                Column::OptF64(_, v) => {
                    let values: Vec<f64> = v.iter().flatten().copied().collect();
                    let def: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                    w.typed::<DoubleType>().write_batch(&values, Some(&def), None)?;
                }
                Column::Bool(_, v) => {
                    w.typed::<BoolType>().write_batch(v, None, None)?;
                }
                Column::Str(_, v) => {
                    let values: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                    w.typed::<ByteArrayType>().write_batch(&values, None, None)?;
                }
            }
            w.close()?;
        }
        group.close()?;
        writer.close()?;
    }
    Ok(buf)
}
