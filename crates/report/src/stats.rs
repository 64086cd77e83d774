//! The paired bootstrap test behind the tables' significance marker.
//!
//! For one metric and one column (backbone × dataset), the best head and the runner-up (by
//! mean over seeds) are compared on the seeds where both ran. The statistic is the mean over
//! seeds of metric(best) − metric(runner-up). Each resample draws one set of test-row indices
//! and applies it to every seed: the test split does not depend on the seed in the runner's
//! protocol, so row i is the same example in every seed, and resampling the examples is the
//! variation the test is about. Seeds with test sets of different sizes cannot share
//! indices; then no test is run (no marker).

use ueb_metrics::calibration::{accuracy, ace, brier, classwise_ece, ece, ece_em, mce, nll, rmsce};
use ueb_metrics::{BootstrapConfig, ErrorDetection, Outcome, PairedTest, Predictions, Undefined, paired_bootstrap};

use crate::results::HeadData;

/// One head's test data, ready for resampling.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The head's predictions.
    pub pred: Predictions,
    /// `pred`'s errors.
    pub errors: Vec<bool>,
    /// The head's score.
    pub score: Vec<f64>,
}

impl Prepared {
    /// Validates `data` into predictions.
    ///
    /// # Errors
    /// Invalid probabilities or labels.
    pub fn new(data: &HeadData) -> Result<Self, ueb_metrics::MetricsError> {
        let pred = data.predictions()?;
        let errors = pred.error_vec();
        Ok(Self {
            pred,
            errors,
            score: data.score.clone(),
        })
    }
}

/// Per-thread scratch buffers.
#[derive(Default)]
struct Scratch {
    pred: Predictions,
    errors: Vec<bool>,
    score: Vec<f64>,
}

/// The value of `metric` (a §11 name) of `p` on the rows `idx`.
fn metric_on(metric: &str, p: &Prepared, idx: &[usize], bins: usize, s: &mut Scratch) -> Outcome {
    let calibration: Option<fn(&Predictions, usize) -> f64> = match metric {
        "accuracy" => Some(|p, _| accuracy(p)),
        "nll" => Some(|p, _| nll(p)),
        "brier" => Some(|p, _| brier(p)),
        "ece" => Some(ece),
        "ece_em" => Some(ece_em),
        "mce" => Some(mce),
        "rmsce" => Some(rmsce),
        "classwise_ece" => Some(classwise_ece),
        "ace" => Some(ace),
        _ => None,
    };
    if let Some(f) = calibration {
        p.pred.resample_into(idx, &mut s.pred);
        return Ok(f(&s.pred, bins));
    }
    s.errors.clear();
    s.errors.extend(idx.iter().map(|&i| p.errors[i]));
    s.score.clear();
    s.score.extend(idx.iter().map(|&i| p.score[i]));
    // The inputs were validated on the full sample; a resample of them cannot be invalid.
    let Ok(ed) = ErrorDetection::compute(&s.errors, &s.score, bins) else {
        return Err(Undefined::NoDefinedResample);
    };
    ed.entries()
        .iter()
        .find(|(name, _)| *name == metric)
        .map_or(Err(Undefined::NoDefinedResample), |(_, v)| *v)
}

/// Paired bootstrap test of `metric`: mean over seeds of `a[k]` − `b[k]` (seed k's data of the
/// two heads), with `resamples` resamples seeded by `seed`.
///
/// Returns `None` when there is nothing to test: no seeds, test sets of different sizes, or a
/// statistic undefined on the full sample or on every resample.
pub fn paired_test(
    metric: &str,
    a: &[&Prepared],
    b: &[&Prepared],
    bins: usize,
    resamples: usize,
    seed: u64,
) -> Option<PairedTest> {
    let n = a.first()?.pred.len();
    if a.len() != b.len() || a.iter().chain(b).any(|p| p.pred.len() != n) || resamples == 0 {
        return None;
    }
    let cfg = BootstrapConfig {
        resamples,
        seed,
        confidence: 0.95,
    };
    let k = a.len() as f64;
    let result = paired_bootstrap(n, &cfg, Scratch::default, |s, idx| {
        let mut mean = |side: &[&Prepared]| -> Outcome {
            let mut sum = 0.0;
            for p in side {
                sum += metric_on(metric, p, idx, bins, s)?;
            }
            Ok(sum / k)
        };
        (mean(a), mean(b))
    });
    match result {
        Ok(Ok(t)) => Some(t),
        _ => None,
    }
}
