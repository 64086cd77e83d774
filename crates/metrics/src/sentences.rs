//! Sentence-level error detection for token tasks: a sentence is an error when any of its words
//! is wrong, and its uncertainty is the largest (`sentence_max_*`) or the sum
//! (`sentence_sum_*`) of its words' `u`; every error-detection metric is then computed over the
//! sentences (`sentence_max_roc_auc`, `sentence_sum_prr`, …).

use crate::Outcome;
use crate::error::MetricsError;
use crate::ranking::{ERROR_DETECTION_METRICS, ErrorDetection};

/// How a sentence's uncertainty is formed from its words'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentenceAggregate {
    /// The largest word `u`.
    Max,
    /// The sum of the words' `u`, in row order.
    Sum,
}

impl SentenceAggregate {
    /// Both, in report order.
    pub const ALL: [SentenceAggregate; 2] = [SentenceAggregate::Max, SentenceAggregate::Sum];

    /// The metric-name prefix: `sentence_max_` or `sentence_sum_`.
    pub fn prefix(self) -> &'static str {
        match self {
            SentenceAggregate::Max => "sentence_max_",
            SentenceAggregate::Sum => "sentence_sum_",
        }
    }
}

/// The sentences of word rows: `group[i]` names row i's sentence (rows of one sentence need not
/// be adjacent); sentences come in order of their first row. Returns each sentence's error (any
/// word wrong) and aggregated `u`.
///
/// # Errors
/// Inputs of different lengths, no rows, or a NaN/Inf word `u` (naming its row).
pub fn sentence_rows(
    group: &[i64],
    errors: &[bool],
    u: &[f64],
    aggregate: SentenceAggregate,
) -> Result<(Vec<bool>, Vec<f64>), MetricsError> {
    if group.is_empty() {
        return Err(MetricsError::Empty { what: "group" });
    }
    for (what, n) in [("errors", errors.len()), ("scores", u.len())] {
        if n != group.len() {
            return Err(MetricsError::LengthMismatch {
                what,
                expected: group.len(),
                found: n,
            });
        }
    }
    // A NaN would vanish in a maximum: every word's u is checked first.
    if let Some((row, &value)) = u.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricsError::NonFinite {
            what: "scores",
            row,
            col: None,
            value,
        });
    }
    let mut index: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let (mut err, mut score): (Vec<bool>, Vec<f64>) = (Vec::new(), Vec::new());
    for ((&g, &e), &v) in group.iter().zip(errors).zip(u) {
        let k = *index.entry(g).or_insert_with(|| {
            err.push(false);
            score.push(match aggregate {
                SentenceAggregate::Max => f64::NEG_INFINITY,
                SentenceAggregate::Sum => 0.0,
            });
            err.len() - 1
        });
        err[k] |= e;
        score[k] = match aggregate {
            SentenceAggregate::Max => score[k].max(v),
            SentenceAggregate::Sum => score[k] + v,
        };
    }
    Ok((err, score))
}

/// Every error-detection metric over the sentences, for both aggregates: names
/// `sentence_max_roc_auc`, …, `sentence_sum_ece_score` (the aggregate's prefix on each
/// [`ERROR_DETECTION_METRICS`] name), in that order. `bins` is `ece_score`'s.
///
/// # Errors
/// The errors of [`sentence_rows`].
pub fn sentence_error_detection(
    group: &[i64],
    errors: &[bool],
    u: &[f64],
    bins: usize,
) -> Result<Vec<(String, Outcome)>, MetricsError> {
    let mut out = Vec::with_capacity(2 * ERROR_DETECTION_METRICS.len());
    for aggregate in SentenceAggregate::ALL {
        let (e, s) = sentence_rows(group, errors, u, aggregate)?;
        let d = ErrorDetection::compute(&e, &s, bins)?;
        out.extend(
            d.entries()
                .into_iter()
                .map(|(name, value)| (format!("{}{name}", aggregate.prefix()), value)),
        );
    }
    Ok(out)
}
