//! Error detection with an uncertainty score `u` (spec §11, `error_detection` group).
//!
//! Errors are the positives and a higher `u` means more uncertain. One sort of `u` serves every
//! ranking metric. Tied scores form groups; each metric takes its expected value under
//! uniformly random tie-breaking inside a group, so no result depends on input order:
//! - ROC-AUC gives a tied (error, correct) pair half credit;
//! - AURC uses E[errors among the first t of a group of g holding m errors] = t·m/g, exact by
//!   linearity of expectation;
//! - PRR is a function of AURC (see [`ErrorDetection::compute`]) and inherits its tie rule;
//! - average precision treats a tie group as one threshold, as scikit-learn does.

use crate::calibration::{BinAccumulator, DEFAULT_BINS, check_bins, unit};
use crate::error::{MetricsError, Outcome, Undefined};
use crate::order::{for_each_run, key_value, radix_sort_by, sort_pairs, sortable_key, sorted_with_index};
use crate::predictions::check_scores;

/// Sorted `(score, error)` data of one score: the scores' keys in ascending order with the error
/// flag of each sample, ready for one sequential scan over tie groups.
///
/// When no score is negative (the usual case: SR, entropy, margin, distances), the raw f64
/// bits already sort as unsigned integers and their top (sign) bit is free, so the error flag
/// rides in the lowest bit of one `u64` and the radix sort moves 8 bytes per sample instead
/// of 16. Otherwise `(key, error)` pairs are sorted.
enum Sorted {
    Packed(Vec<u64>),
    Pairs(Vec<(u64, u32)>),
}

impl Sorted {
    fn new(errors: &[bool], u: &[f64], non_negative: bool) -> Self {
        if non_negative {
            let mut packed: Vec<u64> = u
                .iter()
                .zip(errors)
                .map(|(&v, &e)| ((v + 0.0).to_bits() << 1) | u64::from(e))
                .collect();
            radix_sort_by(&mut packed, |&k| k);
            Sorted::Packed(packed)
        } else {
            let mut pairs: Vec<(u64, u32)> = u
                .iter()
                .zip(errors)
                .map(|(&v, &e)| (sortable_key(v), u32::from(e)))
                .collect();
            sort_pairs(&mut pairs);
            Sorted::Pairs(pairs)
        }
    }

    /// Calls `f(size, errors)` for each tie group in ascending score order.
    fn for_each_group(&self, mut f: impl FnMut(usize, usize)) {
        fn scan<T>(items: &[T], key: impl Fn(&T) -> u64, err: impl Fn(&T) -> bool, f: &mut impl FnMut(usize, usize)) {
            let mut start = 0;
            while start < items.len() {
                let k = key(&items[start]);
                let mut end = start;
                let mut errs = 0;
                while end < items.len() && key(&items[end]) == k {
                    errs += usize::from(err(&items[end]));
                    end += 1;
                }
                f(end - start, errs);
                start = end;
            }
        }
        match self {
            Sorted::Packed(v) => scan(v, |&k| k >> 1, |&k| k & 1 == 1, &mut f),
            Sorted::Pairs(v) => scan(v, |p| p.0, |p| p.1 == 1, &mut f),
        }
    }
}

/// Every §11 error-detection metric of one score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorDetection {
    /// `roc_auc`: P(u_err > u_ok) + ½ P(u_err = u_ok).
    pub roc_auc: Outcome,
    /// `aupr_error`: average precision, errors positive, score u.
    pub aupr_error: Outcome,
    /// `aupr_success`: average precision, correct positive, score −u.
    pub aupr_success: Outcome,
    /// `aurc`: mean over k of the risk of the k least uncertain.
    pub aurc: Outcome,
    /// `e_aurc`: aurc − aurc of the oracle order.
    pub e_aurc: Outcome,
    /// `prr`: prediction–rejection ratio, 1 = oracle, 0 = random.
    pub prr: Outcome,
    /// `ece_score`: binary ECE of 1 − u against correctness (u must lie in [0, 1]).
    pub ece_score: Outcome,
}

/// The §11 names of the error-detection metrics, in report order.
pub const ERROR_DETECTION_METRICS: [&str; 7] = [
    "roc_auc",
    "aupr_error",
    "aupr_success",
    "aurc",
    "e_aurc",
    "prr",
    "ece_score",
];

impl ErrorDetection {
    /// Computes every metric with one sort of `u`; `bins` is used by `ece_score`.
    ///
    /// PRR: with s_j the mean quality of the N − j least uncertain, PR(u) = (1/N)Σ_j s_j =
    /// 1 − AURC(u), PR(oracle) = 1 − AURC*, PR(random) = 1 − r (r = error rate), hence
    /// PRR = (r − AURC)/(r − AURC*), undefined when r = AURC* (no errors, or no correct).
    ///
    /// # Errors
    /// Empty input, a length mismatch, NaN/Inf in `u` (naming the row), zero bins.
    pub fn compute(errors: &[bool], u: &[f64], bins: usize) -> Result<Self, MetricsError> {
        if errors.is_empty() {
            return Err(MetricsError::Empty { what: "scores" });
        }
        check_scores("scores", u, errors.len())?;
        check_bins(bins)?;
        let (non_negative, in_unit) = u
            .iter()
            .fold((true, true), |(nn, unit), &v| (nn && v >= 0.0, unit && v <= 1.0));
        let n = errors.len();
        let n_err = errors.iter().filter(|&&e| e).count();
        let n_ok = n - n_err;

        // One ascending scan over tie groups. Inside a group starting after `before` samples with
        // `errs_before` errors, the expected risk at position before + t is
        // (errs_before + t·m/g)/(before + t). Average precision with errors positive runs over
        // thresholds from the top, where a group's precision is that of everything at or above
        // it: (n_err − errs_before)/(n − before).
        let (mut before, mut errs_before) = (0usize, 0usize);
        let (mut aurc_sum, mut auc_sum, mut ap_err, mut ap_ok) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        Sorted::new(errors, u, non_negative).for_each_group(|g, m| {
            let ok = g - m;
            let ok_before = before - errs_before;
            auc_sum += m as f64 * (ok_before as f64 + 0.5 * ok as f64);
            if m > 0 {
                ap_err += (m as f64 / n_err as f64) * ((n_err - errs_before) as f64 / (n - before) as f64);
            }
            if ok > 0 {
                ap_ok += (ok as f64 / n_ok as f64) * ((ok_before + ok) as f64 / (before + g) as f64);
            }
            let per = m as f64 / g as f64;
            if m > 0 || errs_before > 0 {
                for t in 1..=g {
                    aurc_sum += (errs_before as f64 + t as f64 * per) / (before + t) as f64;
                }
            }
            before += g;
            errs_before += m;
        });

        let aurc = aurc_sum / n as f64;
        let aurc_star = oracle_aurc(n_ok, n_err);
        let rate = n_err as f64 / n as f64;
        let denom = rate - aurc_star;
        let prr = if denom > 0.0 {
            Ok(((rate - aurc) / denom).min(1.0))
        } else {
            Err(Undefined::ZeroDenominator)
        };
        let roc_auc = if n_err == 0 {
            Err(Undefined::NoErrors)
        } else if n_ok == 0 {
            Err(Undefined::NoCorrect)
        } else {
            Ok(unit(auc_sum / (n_err as f64 * n_ok as f64)))
        };
        Ok(Self {
            roc_auc,
            aupr_error: if n_err == 0 {
                Err(Undefined::NoErrors)
            } else {
                Ok(unit(ap_err))
            },
            aupr_success: if n_ok == 0 {
                Err(Undefined::NoCorrect)
            } else {
                Ok(unit(ap_ok))
            },
            aurc: Ok(unit(aurc)),
            e_aurc: Ok(unit(aurc - aurc_star)),
            prr,
            ece_score: if non_negative && in_unit {
                Ok(ece_score(errors, u, bins))
            } else {
                Err(Undefined::ScoreOutOfRange)
            },
        })
    }

    /// Computes with the default 15 bins for `ece_score`.
    ///
    /// # Errors
    /// As [`ErrorDetection::compute`].
    pub fn with_default_bins(errors: &[bool], u: &[f64]) -> Result<Self, MetricsError> {
        Self::compute(errors, u, DEFAULT_BINS)
    }

    /// `(name, value)` pairs in [`ERROR_DETECTION_METRICS`] order.
    pub fn entries(&self) -> [(&'static str, Outcome); 7] {
        [
            ("roc_auc", self.roc_auc),
            ("aupr_error", self.aupr_error),
            ("aupr_success", self.aupr_success),
            ("aurc", self.aurc),
            ("e_aurc", self.e_aurc),
            ("prr", self.prr),
            ("ece_score", self.ece_score),
        ]
    }
}

/// AURC of the oracle order (all correct first): (1/N) Σ_{k>n₀} (k − n₀)/k.
fn oracle_aurc(n_ok: usize, n_err: usize) -> f64 {
    let n = n_ok + n_err;
    let total: f64 = (n_ok + 1..=n).map(|k| (k - n_ok) as f64 / k as f64).sum();
    total / n as f64
}

/// `ece_score`: binary ECE of confidence 1 − u against correctness (u in [0, 1], checked by
/// the caller).
fn ece_score(errors: &[bool], u: &[f64], bins: usize) -> f64 {
    let mut acc = BinAccumulator::new(bins);
    for (&e, &v) in errors.iter().zip(u) {
        acc.add_equal_width(1.0 - v, f64::from(u8::from(!e)));
    }
    unit(acc.l1(errors.len()))
}

/// One point of a risk–coverage curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Fraction of samples kept, k/N.
    pub coverage: f64,
    /// Error rate among the kept samples.
    pub risk: f64,
    /// The largest score kept (the threshold `u ≤ threshold`).
    pub threshold: f64,
}

/// Risk–coverage curve: one point at the end of each tie group of `u` (ascending), where the
/// risk does not depend on tie-breaking. Within a group the expected number of errors grows
/// linearly, so straight segments between these points are what a plot should draw.
///
/// # Errors
/// Empty input, a length mismatch, NaN/Inf in `u`.
pub fn risk_coverage_curve(errors: &[bool], u: &[f64]) -> Result<Vec<CurvePoint>, MetricsError> {
    if errors.is_empty() {
        return Err(MetricsError::Empty { what: "scores" });
    }
    check_scores("scores", u, errors.len())?;
    let sorted = sorted_with_index(u);
    let n = errors.len() as f64;
    let mut points = Vec::new();
    let (mut kept, mut errs) = (0usize, 0usize);
    for_each_run(&sorted, |s, e| {
        kept += e - s;
        errs += sorted[s..e].iter().filter(|p| errors[p.1 as usize]).count();
        points.push(CurvePoint {
            coverage: kept as f64 / n,
            risk: errs as f64 / kept as f64,
            threshold: key_value(sorted[s].0),
        });
    });
    Ok(points)
}

/// One point of a prediction–rejection curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RejectionPoint {
    /// Fraction of samples rejected (the most uncertain first).
    pub rejection: f64,
    /// Mean quality (1 − e) of the samples kept.
    pub quality: f64,
}

/// Prediction–rejection curve of `u`: the risk–coverage points read as rejection = 1 − coverage
/// and quality = 1 − risk, by increasing rejection. The random reference is the constant mean
/// quality; the oracle is [`oracle_rejection_curve`].
///
/// # Errors
/// As [`risk_coverage_curve`].
pub fn prediction_rejection_curve(errors: &[bool], u: &[f64]) -> Result<Vec<RejectionPoint>, MetricsError> {
    let mut points: Vec<RejectionPoint> = risk_coverage_curve(errors, u)?
        .into_iter()
        .rev()
        .map(|p| RejectionPoint {
            rejection: 1.0 - p.coverage,
            quality: 1.0 - p.risk,
        })
        .collect();
    points.dedup_by(|a, b| a.rejection == b.rejection);
    Ok(points)
}

/// The oracle's prediction–rejection curve (errors rejected first) at every rejection step
/// `j/N`, `j = 0..N−1`; `max_points` thins it evenly for plotting (0 = every step).
pub fn oracle_rejection_curve(errors: &[bool], max_points: usize) -> Vec<RejectionPoint> {
    let n = errors.len();
    let n_err = errors.iter().filter(|&&e| e).count();
    let step = if max_points == 0 || n <= max_points {
        1
    } else {
        n.div_ceil(max_points)
    };
    (0..n)
        .step_by(step)
        .map(|j| {
            let kept = n - j;
            let errs_kept = n_err.saturating_sub(j);
            RejectionPoint {
                rejection: j as f64 / n as f64,
                quality: 1.0 - errs_kept as f64 / kept as f64,
            }
        })
        .collect()
}
