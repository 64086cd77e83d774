//! The runner's error: a typed source wherever one exists, and the same context chain the
//! binary prints (`error: <context>: <cause>: …`).

use std::fmt::Display;

/// What went wrong while resolving an experiment or running its stages.
///
/// A failure deep in a stage carries the context of every layer above it (the cell, the file,
/// the setting) as [`RunnerError::Context`] wrappers; `{:#}` through `anyhow` (or walking
/// [`std::error::Error::source`]) prints them outermost first.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A problem the runner found itself: an invalid setting, a missing file, a bad shard.
    #[error("{0}")]
    Message(String),
    /// `context` about the failure in `source`.
    #[error("{context}")]
    Context {
        /// What was being done, or which file, key or cell.
        context: String,
        /// The failure.
        #[source]
        source: Box<RunnerError>,
    },
    /// An I/O error (wrapped in a context naming the file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Reading a dataset.
    #[error(transparent)]
    Data(#[from] ueb_data::DataError),
    /// Reading or writing a feature cache.
    #[error(transparent)]
    Cache(#[from] ueb_cache::CacheError),
    /// Fitting, scoring, saving or loading a head.
    #[error(transparent)]
    Head(#[from] ueb_heads::HeadError),
    /// Loading, fine-tuning or exporting a backbone.
    #[error(transparent)]
    Backbone(#[from] ueb_backbones::BackboneError),
    /// Computing a head stage's metrics.
    #[error(transparent)]
    Metrics(#[from] ueb_metrics::MetricsError),
    /// Reading results or drawing the report.
    #[error(transparent)]
    Report(#[from] ueb_report::ReportError),
    /// YAML (the plan).
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// JSON (stage records, `env.json`).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// safetensors (a stage's features and probabilities).
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// The runner's results.
pub type Result<T, E = RunnerError> = std::result::Result<T, E>;

/// Adds context to a failure, as the binary prints it: `context: cause`.
pub trait Context<T> {
    /// Wraps the error (or a `None`) in `context`.
    ///
    /// # Errors
    /// The wrapped error.
    fn context<C: Display>(self, context: C) -> Result<T>;

    /// [`Context::context`], the context computed only on failure.
    ///
    /// # Errors
    /// The wrapped error.
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<RunnerError>> Context<T> for std::result::Result<T, E> {
    fn context<C: Display>(self, context: C) -> Result<T> {
        self.map_err(|e| RunnerError::Context {
            context: context.to_string(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| RunnerError::Context {
            context: f().to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: Display>(self, context: C) -> Result<T> {
        self.ok_or_else(|| RunnerError::Message(context.to_string()))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| RunnerError::Message(f().to_string()))
    }
}

/// A [`RunnerError::Message`] from a format string.
macro_rules! message {
    ($($arg:tt)*) => {
        $crate::error::RunnerError::Message(format!($($arg)*))
    };
}

/// Returns a [`RunnerError::Message`] from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::message!($($arg)*))
    };
}

pub(crate) use {bail, message};

/// `{:#}` of an error chain, as anyhow prints it in the binary.
#[cfg(test)]
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_print_outermost_first_like_anyhow() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Err::<(), _>(io)
            .context("cannot read a.yaml")
            .context("experiment")
            .unwrap_err();
        assert_eq!(chain(&e), "experiment: cannot read a.yaml: gone");
        let none: Option<u8> = None;
        assert_eq!(
            none.context("caches: x has no name").unwrap_err().to_string(),
            "caches: x has no name"
        );
        let m: Result<()> = (|| bail!("seeds: {} appears twice", 3))();
        assert_eq!(m.unwrap_err().to_string(), "seeds: 3 appears twice");
    }
}
