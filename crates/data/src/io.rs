//! File access shared by the readers: finding a dataset's files under the data root, reading
//! (optionally gzip-compressed) text, and line-based and CSV tables.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Location, Result};

/// Reads a whole file, decompressing it when its name ends in `.gz`.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if gz {
        MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
    } else {
        let mut file = file;
        file.read_to_end(&mut bytes).map_err(|e| DataError::io(path, e))?;
    }
    Ok(bytes)
}

fn strip_bom(mut text: String) -> String {
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    text
}

/// Bytes as UTF-8 text without a leading byte-order mark; invalid UTF-8 is an error naming the
/// line.
pub(crate) fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(strip_bom(text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..valid].iter().filter(|&&b| b == b'\n').count() as u64;
            Err(DataError::Utf8 {
                path: path.to_path_buf(),
                line,
            })
        }
    }
}

/// Bytes as UTF-8 text (without a byte-order mark), or as Latin-1 when they are not UTF-8.
pub(crate) fn utf8_or_latin1(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => strip_bom(text),
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    }
}

/// Reads a UTF-8 text file (see [`read_bytes`] and [`utf8`]).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    utf8(path, read_bytes(path)?)
}

/// Finds a dataset's files under the data root and remembers every path it tried, so that a
/// missing file becomes an error that says where ueb looked.
pub(crate) struct Locator<'a> {
    dataset: &'a str,
    root: &'a Path,
    how_to_get: &'a str,
    needs: String,
    looked: Vec<PathBuf>,
}

impl<'a> Locator<'a> {
    /// `needs` lists the dataset's files relative to the root, for the error message.
    pub(crate) fn new(dataset: &'a str, root: &'a Path, how_to_get: &'a str, needs: String) -> Self {
        Self {
            dataset,
            root,
            how_to_get,
            needs,
            looked: Vec::new(),
        }
    }

    /// The first of `candidates` (paths relative to the root) that is a file.
    pub(crate) fn find(&mut self, candidates: &[&str]) -> Option<PathBuf> {
        for candidate in candidates {
            let path = self.root.join(candidate);
            if path.is_file() {
                return Some(path);
            }
            self.looked.push(path);
        }
        None
    }

    /// Like [`Locator::find`], but a miss is a [`DataError::NotFound`].
    pub(crate) fn require(&mut self, candidates: &[&str]) -> Result<PathBuf> {
        match self.find(candidates) {
            Some(path) => Ok(path),
            None => Err(DataError::NotFound {
                dataset: self.dataset.to_owned(),
                root: self.root.to_path_buf(),
                looked: self.looked.clone(),
                needs: self.needs.clone(),
                how_to_get: self.how_to_get.to_owned(),
            }),
        }
    }

    /// `path` relative to the root, for messages and split origins.
    pub(crate) fn show(&self, path: &Path) -> String {
        path.strip_prefix(self.root).unwrap_or(path).display().to_string()
    }
}

/// A table read from a text file: an optional header and rows of fields, each with the
/// 1-based line where its record starts.
pub(crate) struct Table {
    pub(crate) path: PathBuf,
    pub(crate) header: Option<Vec<String>>,
    pub(crate) rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    /// A tab-separated file without quoting: every line is split on `\t` only. Every row must
    /// have as many fields as the first row (or the header); empty lines are errors.
    pub(crate) fn tsv(path: &Path, has_header: bool) -> Result<Self> {
        let text = read_text(path)?;
        let mut header = None;
        let mut rows = Vec::new();
        let mut width = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i as u64 + 1;
            if line.is_empty() {
                return Err(DataError::malformed(path, Location::Line(line_no), "empty line"));
            }
            let fields: Vec<String> = line.split('\t').map(str::to_owned).collect();
            match width {
                None => width = Some(fields.len()),
                Some(w) if w != fields.len() => {
                    return Err(DataError::malformed(
                        path,
                        Location::Line(line_no),
                        format!("expected {w} tab-separated fields, found {}", fields.len()),
                    ));
                }
                Some(_) => {}
            }
            if has_header && header.is_none() {
                header = Some(fields);
            } else {
                rows.push((line_no, fields));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// An RFC 4180 CSV file (quoted fields may contain commas and newlines). Every record must
    /// have as many fields as the first one.
    pub(crate) fn csv(path: &Path, has_header: bool) -> Result<Self> {
        let text = read_text(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(has_header)
            .flexible(false)
            .from_reader(text.as_bytes());
        let csv_err = |source| DataError::Csv {
            path: path.to_path_buf(),
            source,
        };
        let header = if has_header {
            Some(reader.headers().map_err(csv_err)?.iter().map(str::to_owned).collect())
        } else {
            None
        };
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            let line = record.position().map_or(0, csv::Position::line);
            rows.push((line, record.iter().map(str::to_owned).collect()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The index of a header column.
    pub(crate) fn column(&self, name: &str) -> Result<usize> {
        let header = self.header.as_deref().unwrap_or(&[]);
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::UnknownColumn {
                path: self.path.clone(),
                column: name.to_owned(),
                available: header.join(", "),
            })
    }

    /// Checks that a header-less file has at least `n` fields per row.
    pub(crate) fn require_width(&self, n: usize) -> Result<()> {
        match self.rows.first() {
            Some((line, fields)) if fields.len() < n => Err(DataError::malformed(
                &self.path,
                Location::Line(*line),
                format!("expected {n} fields, found {}", fields.len()),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn error(&self, line: u64, reason: impl Into<String>) -> DataError {
        DataError::malformed(&self.path, Location::Line(line), reason)
    }
}
