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

use crate::calibration::{BinAccumulator, DEFAULT_BINS, check_bins};
use crate::error::{MetricsError, Outcome, Undefined};
use crate::order::{for_each_run, key_value, sort_pairs, sortable_key, sorted_with_index};
use crate::predictions::check_scores;

/// Counts of one group of tied scores.
#[derive(Debug, Clone, Copy)]
struct Group {
    size: usize,
    errors: usize,
}

/// Groups of tied scores in ascending score order, with their error counts: one sort of
/// `(score key, error)` pairs, then a sequential scan.
fn tie_groups(errors: &[bool], u: &[f64]) -> Vec<Group> {
    let mut pairs: Vec<(u64, u32)> = u
        .iter()
        .zip(errors)
        .map(|(&v, &e)| (sortable_key(v), u32::from(e)))
        .collect();
    sort_pairs(&mut pairs);
    let mut groups = Vec::new();
    for_each_run(&pairs, |s, e| {
        let errs = pairs[s..e].iter().map(|p| p.1 as usize).sum();
        groups.push(Group {
            size: e - s,
            errors: errs,
        });
    });
    groups
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
        let groups = tie_groups(errors, u);
        let n = errors.len();
        let n_err = groups.iter().map(|g| g.errors).sum::<usize>();
        let n_ok = n - n_err;

        let aurc = aurc_from_groups(&groups, n);
        let aurc_star = oracle_aurc(n_ok, n_err);
        let rate = n_err as f64 / n as f64;
        let denom = rate - aurc_star;
        let prr = if denom > 0.0 {
            Ok((rate - aurc) / denom)
        } else {
            Err(Undefined::ZeroDenominator)
        };

        let roc_auc = if n_err == 0 {
            Err(Undefined::NoErrors)
        } else if n_ok == 0 {
            Err(Undefined::NoCorrect)
        } else {
            Ok(roc_auc_from_groups(&groups, n_err, n_ok))
        };
        let aupr_error = if n_err == 0 {
            Err(Undefined::NoErrors)
        } else {
            Ok(average_precision(
                groups.iter().rev().map(|g| (g.errors, g.size)),
                n_err,
            ))
        };
        let aupr_success = if n_ok == 0 {
            Err(Undefined::NoCorrect)
        } else {
            Ok(average_precision(
                groups.iter().map(|g| (g.size - g.errors, g.size)),
                n_ok,
            ))
        };
        Ok(Self {
            roc_auc,
            aupr_error,
            aupr_success,
            aurc: Ok(aurc),
            e_aurc: Ok(aurc - aurc_star),
            prr,
            ece_score: ece_score(errors, u, bins),
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

/// Mann–Whitney U / (n₁n₀) over tie groups in ascending score order.
fn roc_auc_from_groups(groups: &[Group], n_err: usize, n_ok: usize) -> f64 {
    let mut ok_below = 0.0f64;
    let mut u_stat = 0.0f64;
    for g in groups {
        let (e, o) = (g.errors as f64, (g.size - g.errors) as f64);
        u_stat += e * (ok_below + 0.5 * o);
        ok_below += o;
    }
    u_stat / (n_err as f64 * n_ok as f64)
}

/// Average precision Σ_k (R_k − R_{k−1})·P_k over thresholds given as `(positives, size)` per
/// tie group, from the most to the least likely positive.
fn average_precision(groups: impl Iterator<Item = (usize, usize)>, n_pos: usize) -> f64 {
    let (mut tp, mut seen) = (0usize, 0usize);
    let mut ap = 0.0;
    for (pos, size) in groups {
        tp += pos;
        seen += size;
        if pos > 0 {
            ap += (pos as f64 / n_pos as f64) * (tp as f64 / seen as f64);
        }
    }
    ap
}

/// AURC = (1/N) Σ_k E[risk(k)], groups in ascending score order.
///
/// Inside a group starting after `s` samples with `E` errors before it, the expected risk at
/// position `s + t` is `(E + t·m/g)/(s + t)`.
fn aurc_from_groups(groups: &[Group], n: usize) -> f64 {
    let mut before = 0usize;
    let mut errs_before = 0.0f64;
    let mut total = 0.0f64;
    for g in groups {
        let per = g.errors as f64 / g.size as f64;
        if g.errors == 0 {
            if errs_before > 0.0 {
                for t in 1..=g.size {
                    total += errs_before / (before + t) as f64;
                }
            }
        } else {
            for t in 1..=g.size {
                total += (errs_before + t as f64 * per) / (before + t) as f64;
            }
        }
        before += g.size;
        errs_before += g.errors as f64;
    }
    total / n as f64
}

/// AURC of the oracle order (all correct first): (1/N) Σ_{k>n₀} (k − n₀)/k.
fn oracle_aurc(n_ok: usize, n_err: usize) -> f64 {
    let n = n_ok + n_err;
    let total: f64 = (n_ok + 1..=n).map(|k| (k - n_ok) as f64 / k as f64).sum();
    total / n as f64
}

/// `ece_score`: binary ECE of confidence 1 − u against correctness; undefined unless every
/// u lies in [0, 1].
fn ece_score(errors: &[bool], u: &[f64], bins: usize) -> Outcome {
    if u.iter().any(|&v| !(0.0..=1.0).contains(&v)) {
        return Err(Undefined::ScoreOutOfRange);
    }
    let mut acc = BinAccumulator::new(bins);
    for (&e, &v) in errors.iter().zip(u) {
        acc.add_equal_width(1.0 - v, f64::from(u8::from(!e)));
    }
    Ok(acc.l1(errors.len()))
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
