//! Exact, named metrics for the uncertainty of classifiers: calibration of probabilities and
//! error detection with uncertainty scores, as defined in the project's method spec (§11).
//!
//! Conventions every number here depends on:
//! - a score `u` is "higher = more uncertain"; error detection treats **errors as positives**;
//! - ranking metrics give tied scores the expected value under uniformly random tie-breaking,
//!   so results never depend on input order;
//! - equal-width bins are `((m−1)/M, m/M]` with 0 in the first and 1.0 in the last bin; empty
//!   bins are skipped;
//! - all arithmetic is in f64; invalid input is a [`MetricsError`] naming the input and row;
//!   a metric that is undefined on valid input (e.g. ROC-AUC with no errors) is an
//!   [`Undefined`] with its reason, never a made-up number.
//!
//! ```
//! use ueb_metrics::{Predictions, Report, ReportConfig};
//! let probs = [0.9, 0.1, 0.4, 0.6, 0.7, 0.3];
//! let pred = Predictions::from_probs(&probs, 2, &[0, 0, 1])?;
//! let report = Report::compute(&pred, &[], &ReportConfig::default())?;
//! assert_eq!(report.calibration[0].value, Ok(1.0 / 3.0)); // accuracy
//! # Ok::<(), ueb_metrics::MetricsError>(())
//! ```

pub mod bootstrap;
pub mod calibration;
pub mod entities;
mod error;
pub mod order;
mod predictions;
pub mod ranking;
mod report;
pub mod scores;
pub mod sentences;

pub use bootstrap::{
    BootstrapConfig, Interval, MAX_RESAMPLES, PairedTest, bootstrap_ci, check_resamples, paired_bootstrap,
};
pub use calibration::{Binning, DEFAULT_BINS, MAX_BINS, ReliabilityBin, check_bins, reliability_bins};
pub use entities::{ENTITY_METRICS, Entity, EntityScores, entities, entity_scores};
pub use error::{MetricsError, Outcome, Undefined};
pub use predictions::{
    NLL_CLIP, Predictions, ROW_SUM_TOLERANCE, check_scores, log_softmax_parts, softmax_row, softmax_rows,
};
pub use ranking::{
    CurvePoint, ERROR_DETECTION_METRICS, ErrorDetection, RejectionPoint, oracle_rejection_curve,
    prediction_rejection_curve, risk_coverage_curve,
};
pub use report::{
    CALIBRATION_METRICS, Entry, NamedScore, Report, ReportConfig, ScoreReport, calibration_values, higher_is_better,
};
pub use scores::{BUILTIN_SCORES, BuiltinScore};
pub use sentences::{SentenceAggregate, sentence_error_detection, sentence_rows};
