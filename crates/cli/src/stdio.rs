//! Standard output and standard error as a well-behaved Unix tool uses them: a closed pipe
//! (`ueb eval … | head`) ends the program quietly, a full or failing stdout is one error line,
//! and nothing panics because a stream went away (decision E5).

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writing to standard output failed.
#[derive(Debug)]
pub(crate) struct StdoutFailed(pub(crate) std::io::Error);

impl fmt::Display for StdoutFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl StdoutFailed {
    /// Whether the reader went away (a pipe closed early), which is not worth a message.
    pub(crate) fn is_closed_pipe(&self) -> bool {
        self.0.kind() == ErrorKind::BrokenPipe
    }
}

/// Writes `text` to standard output and flushes it.
///
/// # Errors
/// [`StdoutFailed`], which `main` turns into a quiet exit (closed pipe) or one line.
pub(crate) fn write_out(text: &str) -> Result<(), StdoutFailed> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(StdoutFailed)
}

/// Writes `text` to standard error, ignoring failure: with stderr gone there is nowhere left to
/// report it, and the exit status still tells.
pub(crate) fn write_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

/// `println!` that returns a [`StdoutFailed`] error instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdio::write_out(&format!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` that returns a [`StdoutFailed`] error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdio::write_out(&format!($($arg)*))?
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdio::write_err(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};
