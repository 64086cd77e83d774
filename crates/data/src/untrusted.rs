//! Reading Parquet files that may be corrupt: the `parquet` crate panics on some malformed
//! metadata (a negative or out-of-file column offset), so a file is checked before it is read
//! and whatever still panics inside the reader becomes an error (decision D11).

use std::cell::Cell;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};

thread_local! {
    /// Set while [`catch_panic`] runs: a panic there is an error, not worth a panic message.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Opens a Parquet file and checks its metadata against its length: every column chunk starts
/// and ends inside the file. The reader's own checks come first.
///
/// # Errors
/// A message saying what is wrong (the caller adds the path).
pub fn open_parquet(path: &Path) -> Result<SerializedFileReader<File>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let reader = catch_panic(|| SerializedFileReader::new(file))?.map_err(|e| e.to_string())?;
    for (g, rg) in reader.metadata().row_groups().iter().enumerate() {
        for col in rg.columns() {
            let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
            let size = col.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(size).ok())
                .and_then(|(s, n)| s.checked_add(n))
                .is_some_and(|end| end <= len);
            if !inside {
                return Err(format!(
                    "row group {g}, column {}: the metadata puts its {size} bytes at offset {start}, outside the file's {len} bytes",
                    col.column_path()
                ));
            }
        }
    }
    Ok(reader)
}

/// Runs `read`; a panic inside it (the `parquet` crate's, on a malformed file) becomes
/// `Err` with the panic's message.
///
/// # Errors
/// The panic's message.
pub fn catch_panic<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let out = catch_unwind(AssertUnwindSafe(read));
    CATCHING.with(|c| c.set(was));
    out.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the reader failed".to_string())
    })
}

/// Installs a panic hook that says nothing about the panics [`catch_panic`] turns into errors
/// and leaves every other panic to the previous hook. A binary calls it once at start.
pub fn install_quiet_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CATCHING.with(Cell::get) {
            previous(info);
        }
    }));
}
