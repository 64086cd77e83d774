//! Uncertainty-estimation heads fitted on cached features and logits: the built-in scores,
//! temperature, vector and matrix scaling, per-class histogram binning, isotonic regression, Platt, beta and Dirichlet calibration, Mahalanobis and relative Mahalanobis distances, and the
//! trainable AdUE and ALIEN heads of arXiv 2505.15443, the multiple-choice temperature of
//! arXiv 2310.11732. The cache they read is `ueb-cache`'s.
//!
//! A head is configured by a [`HeadSpec`], fitted with [`HeadSpec::fit`] on a [`ueb_cache::FeatureCache`]
//! (one split fits, another selects hyperparameters), and then scores any split: `u`, higher =
//! more uncertain, one value per row in order. Fitted heads save to a directory and [`load`]
//! back with identical scores.

/// The `score` (1 − max p̂: `sr` of the calibrated probabilities) and `probabilities` (p̂) of a
/// calibrator, a head whose output is `self.calibrated(split)`; the arguments name its number of
/// classes as a path on `self` (`num_classes`, `bias.len()`).
macro_rules! calibrated_outputs {
    ($($classes:tt)+) => {
        fn score(&self, split: &ueb_cache::SplitData) -> Result<Vec<f64>, crate::error::HeadError> {
            Ok(crate::classical::score_rows(
                ueb_metrics::BuiltinScore::Sr,
                &self.calibrated(split)?,
                self.$($classes)+,
            ))
        }

        fn probabilities(&self, split: &ueb_cache::SplitData) -> Option<Result<Vec<f64>, crate::error::HeadError>> {
            Some(self.calibrated(split))
        }
    };
}

pub mod beta;
pub mod binning;
pub mod choice_calibration;
pub mod classical;
pub mod dirichlet;
mod error;
pub mod head;
mod logistic;
pub mod mahalanobis;
pub mod platt;
pub mod trainable;

pub use error::HeadError;
pub use head::{FitContext, HEAD_NAMES, Head, HeadSpec, load};
