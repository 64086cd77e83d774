//! The whole §11 report: every calibration metric of the model's probabilities, and every
//! error-detection metric of each score (the built-in ones and any supplied), optionally with
//! bootstrap intervals.

use crate::bootstrap::{BootstrapConfig, Interval, bootstrap_map, percentile_interval};
use crate::calibration::{DEFAULT_BINS, accuracy, ace, brier, check_bins, classwise_ece, ece_em, nll, top_label_bins};
use crate::error::{MetricsError, Outcome, Undefined};
use crate::predictions::{Predictions, check_scores};
use crate::ranking::{ERROR_DETECTION_METRICS, ErrorDetection};
use crate::scores::BuiltinScore;

/// The §11 names of the calibration metrics, in report order.
pub const CALIBRATION_METRICS: [&str; 9] = [
    "accuracy",
    "nll",
    "brier",
    "ece",
    "ece_em",
    "mce",
    "rmsce",
    "classwise_ece",
    "ace",
];

/// Whether a larger value of the metric `name` is better (for ranking heads and bolding the
/// best). Unknown names are treated as "lower is better", like the error metrics.
pub fn higher_is_better(name: &str) -> bool {
    matches!(name, "accuracy" | "roc_auc" | "aupr_error" | "aupr_success" | "prr")
}

/// Every calibration metric, in [`CALIBRATION_METRICS`] order.
pub fn calibration_values(pred: &Predictions, bins: usize) -> [f64; 9] {
    let top = top_label_bins(pred, bins);
    let n = pred.len();
    [
        accuracy(pred),
        nll(pred),
        brier(pred),
        top.l1(n),
        ece_em(pred, bins),
        top.max_gap(),
        top.rms(n),
        classwise_ece(pred, bins),
        ace(pred, bins),
    ]
}

/// One metric value with its optional bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// The §11 name.
    pub name: &'static str,
    /// The value on the full sample, or why it is undefined.
    pub value: Outcome,
    /// The percentile interval when a bootstrap was asked for.
    pub interval: Option<Result<Interval, Undefined>>,
}

/// The error-detection entries of one score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// The score's name (`sr`, `entropy`, `margin`, or a supplied name).
    pub name: String,
    /// One entry per [`ERROR_DETECTION_METRICS`] name.
    pub entries: Vec<Entry>,
}

/// A supplied uncertainty score: a name and one value per sample (higher = more uncertain).
#[derive(Debug, Clone, Copy)]
pub struct NamedScore<'a> {
    /// Name used in the report.
    pub name: &'a str,
    /// Values, one per sample.
    pub values: &'a [f64],
}

/// The full metric report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Number of samples.
    pub n: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Bins used by every binned metric.
    pub bins: usize,
    /// Bootstrap settings, when intervals were computed.
    pub bootstrap: Option<BootstrapConfig>,
    /// Calibration entries in [`CALIBRATION_METRICS`] order.
    pub calibration: Vec<Entry>,
    /// Error-detection entries: `sr`, `entropy`, `margin`, then the supplied scores in order.
    pub error_detection: Vec<ScoreReport>,
}

/// Report settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportConfig {
    /// Bins of every binned metric (default 15).
    pub bins: usize,
    /// Bootstrap intervals, if wanted.
    pub bootstrap: Option<BootstrapConfig>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            bins: DEFAULT_BINS,
            bootstrap: None,
        }
    }
}

/// Sample count from which [`Report::compute`] spreads its tasks over threads.
const PARALLEL_SAMPLES: usize = 1 << 14;

/// Independent pieces of the report, so that they can run on several cores.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// `accuracy`, `nll`, `brier`, `ece`, `ece_em`, `mce`, `rmsce`.
    Calibration,
    /// `classwise_ece`.
    Classwise,
    /// `ace`.
    Ace,
    /// Error detection of score `k` (built-in scores first).
    Score(usize),
}

/// The tasks of a report with `n_scores` scores, the longest first.
fn tasks(n_scores: usize) -> Vec<Piece> {
    [Piece::Ace, Piece::Classwise, Piece::Calibration]
        .into_iter()
        .chain((0..n_scores).map(Piece::Score))
        .collect()
}

/// Where a supplied score's values come from (the full sample, or a resample).
type ScoreSource<'a> = &'a (dyn Fn(usize, &mut Vec<f64>) + Sync);

/// Runs one task; returns `(position in report order, value)` pairs.
fn run_task(
    task: Piece,
    pred: &Predictions,
    errors: &[bool],
    custom: ScoreSource<'_>,
    bins: usize,
    buf: &mut Vec<f64>,
) -> Result<Vec<(usize, Outcome)>, MetricsError> {
    Ok(match task {
        Piece::Calibration => {
            let top = top_label_bins(pred, bins);
            let n = pred.len();
            let values = [
                accuracy(pred),
                nll(pred),
                brier(pred),
                top.l1(n),
                ece_em(pred, bins),
                top.max_gap(),
                top.rms(n),
            ];
            values.into_iter().enumerate().map(|(k, v)| (k, Ok(v))).collect()
        }
        Piece::Classwise => vec![(7, Ok(classwise_ece(pred, bins)))],
        Piece::Ace => vec![(8, Ok(ace(pred, bins)))],
        Piece::Score(k) => {
            match BuiltinScore::ALL.get(k) {
                Some(b) => b.compute_into(pred, buf),
                None => custom(k - BuiltinScore::ALL.len(), buf),
            }
            let ed = ErrorDetection::compute(errors, buf, bins)?;
            let base = CALIBRATION_METRICS.len() + k * ERROR_DETECTION_METRICS.len();
            ed.entries()
                .into_iter()
                .enumerate()
                .map(|(m, (_, v))| (base + m, v))
                .collect()
        }
    })
}

/// Every metric of `pred` and the scores, in report order; `threads > 1` spreads the tasks
/// over that many threads (the bootstrap runs one thread per resample batch instead).
fn report_values(
    pred: &Predictions,
    custom: ScoreSource<'_>,
    n_scores: usize,
    bins: usize,
    threads: usize,
    out: &mut [Outcome],
) -> Result<(), MetricsError> {
    let errors = pred.error_vec();
    let tasks = tasks(n_scores);
    let work = |next: &std::sync::atomic::AtomicUsize| -> Result<Vec<(usize, Outcome)>, MetricsError> {
        let mut buf = Vec::new();
        let mut done = Vec::new();
        loop {
            let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&task) = tasks.get(t) else { break };
            done.extend(run_task(task, pred, &errors, custom, bins, &mut buf)?);
        }
        Ok(done)
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, Outcome)>, MetricsError>> = if threads <= 1 {
        vec![work(&next)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.min(tasks.len()))
                .map(|_| scope.spawn(|| work(&next)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    };
    for r in results {
        for (pos, v) in r? {
            out[pos] = v;
        }
    }
    Ok(())
}

impl Report {
    /// Computes the report of `pred` with the built-in scores and `scores`.
    ///
    /// # Errors
    /// A score with the wrong length or a NaN/Inf (naming the score's row), a duplicate or
    /// reserved score name, zero bins, an invalid bootstrap configuration.
    pub fn compute(pred: &Predictions, scores: &[NamedScore<'_>], cfg: &ReportConfig) -> Result<Self, MetricsError> {
        check_bins(cfg.bins)?;
        if let Some(b) = &cfg.bootstrap {
            b.validate()?;
        }
        let n = pred.len();
        for (i, s) in scores.iter().enumerate() {
            check_scores("scores", s.values, n).map_err(|e| MetricsError::InScore {
                name: s.name.to_string(),
                inner: Box::new(e),
            })?;
            let clash =
                BuiltinScore::ALL.iter().any(|b| b.name() == s.name) || scores[..i].iter().any(|t| t.name == s.name);
            if clash {
                return Err(MetricsError::InvalidParameter {
                    name: "score name",
                    value: s.name.to_string(),
                    reason: "used twice (the built-in scores are sr, entropy and margin)",
                });
            }
        }
        let names: Vec<&str> = BuiltinScore::ALL
            .iter()
            .map(|b| b.name())
            .chain(scores.iter().map(|s| s.name))
            .collect();
        let width = CALIBRATION_METRICS.len() + names.len() * ERROR_DETECTION_METRICS.len();

        let mut values = vec![Ok(0.0); width];
        let copy_full = |k: usize, out: &mut Vec<f64>| {
            out.clear();
            out.extend_from_slice(scores[k].values);
        };
        // Below PARALLEL_SAMPLES, starting threads costs more than it saves.
        let threads = if n >= PARALLEL_SAMPLES {
            std::thread::available_parallelism().map_or(1, |t| t.get())
        } else {
            1
        };
        report_values(pred, &copy_full, names.len(), cfg.bins, threads, &mut values)?;

        let intervals: Option<Vec<Result<Interval, Undefined>>> = match &cfg.bootstrap {
            None => None,
            Some(b) => {
                let draws = bootstrap_map(n, b, width, Predictions::default, |resampled, idx, out| {
                    pred.resample_into(idx, resampled);
                    let gather = |k: usize, v: &mut Vec<f64>| {
                        v.clear();
                        v.extend(idx.iter().map(|&i| scores[k].values[i]));
                    };
                    // Inputs were validated on the full sample, so a resample cannot fail.
                    if report_values(resampled, &gather, names.len(), cfg.bins, 1, out).is_err() {
                        out.fill(Err(Undefined::NoDefinedResample));
                    }
                })?;
                Some(draws.iter().map(|d| percentile_interval(d, b.confidence)).collect())
            }
        };
        let entry = |k: usize, name: &'static str| Entry {
            name,
            value: values[k],
            interval: intervals.as_ref().map(|iv| iv[k]),
        };
        let calibration = CALIBRATION_METRICS
            .iter()
            .enumerate()
            .map(|(k, &m)| entry(k, m))
            .collect();
        let error_detection = names
            .iter()
            .enumerate()
            .map(|(j, name)| ScoreReport {
                name: (*name).to_string(),
                entries: ERROR_DETECTION_METRICS
                    .iter()
                    .enumerate()
                    .map(|(m, &metric)| {
                        entry(
                            CALIBRATION_METRICS.len() + j * ERROR_DETECTION_METRICS.len() + m,
                            metric,
                        )
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            n,
            num_classes: pred.num_classes(),
            bins: cfg.bins,
            bootstrap: cfg.bootstrap,
            calibration,
            error_detection,
        })
    }
}
