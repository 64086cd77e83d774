//! The experiment runner behind `ueb run`: an experiment file resolved into a validated
//! [`Plan`], its cells run as resumable stages (backbone → feature cache, head → scores), and
//! the run's metrics once every cell is done (`docs/runner.md`).
//!
//! A stage is keyed by a hash of its resolved inputs, skipped when its output is there, and
//! written into a temporary directory renamed into place when complete, so a killed run
//! resumes and shards (`--shard i/n`) can run anywhere. The binary adds the command line,
//! progress bars, `--jobs` processes and printing.

pub mod device;
pub mod error;
pub mod plan;
pub mod results;
pub mod run;
pub mod stages;

pub use device::{DeviceName, Precision};
pub use error::{Context, Result, RunnerError};
pub use plan::{Overrides, Plan};
pub use run::{BuildInfo, Observer, Work, run_cells};

/// Writes `bytes` to `path` atomically (`ueb_cache::write_atomic`: a hidden temporary file
/// that [`stages::clean_stale`] removes after a kill, then a rename).
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    Ok(ueb_cache::write_atomic(path, bytes)?)
}
