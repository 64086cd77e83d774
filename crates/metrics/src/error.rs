//! Errors for bad input, and the "undefined" outcome of a metric on valid input.

use std::fmt;

/// Invalid input to a metric. Every variant names the offending input and, where there is one,
/// the row (0-based) so that the caller can point the user at the exact place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A value is NaN or infinite.
    #[error("{what}: row {row}{col} is {value} (values must be finite)", col = col_suffix(*.col))]
    NonFinite {
        /// Which input ("probs", "logits", "scores", ...).
        what: &'static str,
        /// 0-based row.
        row: usize,
        /// 0-based column, for matrices.
        col: Option<usize>,
        /// The value found.
        value: f64,
    },
    /// Two inputs that must have one entry per sample have different lengths.
    #[error("{what}: expected {expected} rows (one per sample), found {found}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected number of rows.
        expected: usize,
        /// Number of rows found.
        found: usize,
    },
    /// A flat matrix buffer whose length is not a multiple of the number of classes.
    #[error("{what}: {len} values do not form rows of {num_classes} classes")]
    Ragged {
        /// Which input.
        what: &'static str,
        /// Buffer length.
        len: usize,
        /// Number of classes.
        num_classes: usize,
    },
    /// A label outside `0..num_classes`.
    #[error("labels: row {row} has label {label}, outside 0..{num_classes}")]
    LabelOutOfRange {
        /// 0-based row.
        row: usize,
        /// The label found.
        label: i64,
        /// Number of classes.
        num_classes: usize,
    },
    /// No samples at all.
    #[error("{what}: empty input (at least one sample is needed)")]
    Empty {
        /// Which input.
        what: &'static str,
    },
    /// Fewer than two classes.
    #[error("{what}: {num_classes} class(es); at least 2 are needed")]
    TooFewClasses {
        /// Which input.
        what: &'static str,
        /// Number of classes found.
        num_classes: usize,
    },
    /// A probability row that does not sum to 1 within [`crate::ROW_SUM_TOLERANCE`].
    #[error(
        "probs: row {row} sums to {sum} (rows must sum to 1 within {tol}); pass logits with --logits if these are not probabilities",
        tol = crate::ROW_SUM_TOLERANCE
    )]
    RowSum {
        /// 0-based row.
        row: usize,
        /// The row's sum.
        sum: f64,
    },
    /// A negative probability.
    #[error("probs: row {row}, column {col} is {value} (probabilities must be >= 0)")]
    NegativeProbability {
        /// 0-based row.
        row: usize,
        /// 0-based column.
        col: usize,
        /// The value found.
        value: f64,
    },
    /// An error in one named score vector.
    #[error("score `{name}`: {inner}")]
    InScore {
        /// The score's name.
        name: String,
        /// What is wrong with it.
        inner: Box<MetricsError>,
    },
    /// A sentence whose predicted tags are not one per gold tag.
    #[error("sentence {sentence}: {found} predicted tags for {expected} words")]
    SentenceLength {
        /// 0-based sentence.
        sentence: usize,
        /// Its number of words (gold tags).
        expected: usize,
        /// Its number of predicted tags.
        found: usize,
    },
    /// A parameter outside its domain (number of bins, resamples, confidence level, ...).
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value, rendered.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}

fn col_suffix(col: Option<usize>) -> String {
    col.map(|c| format!(", column {c}")).unwrap_or_default()
}

/// Why a metric has no value on otherwise valid input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undefined {
    /// Error detection needs at least one error (e.g. ROC-AUC, AUPR-error).
    NoErrors,
    /// Error detection needs at least one correct prediction (e.g. ROC-AUC, AUPR-success).
    NoCorrect,
    /// A normalising denominator is zero (PRR when the oracle is no better than random).
    ZeroDenominator,
    /// `ece_score` reads a score as 1 − confidence and needs every score in [0, 1].
    ScoreOutOfRange,
    /// No bootstrap resample had a defined value.
    NoDefinedResample,
}

impl Undefined {
    /// A short human-readable reason, as written into reports (`"<name>_reason"`).
    pub fn reason(self) -> &'static str {
        match self {
            Undefined::NoErrors => "no errors: every prediction is correct",
            Undefined::NoCorrect => "no correct predictions: every prediction is an error",
            Undefined::ZeroDenominator => "zero denominator: the oracle is no better than random",
            Undefined::ScoreOutOfRange => "the score has values outside [0, 1]",
            Undefined::NoDefinedResample => "undefined on every bootstrap resample",
        }
    }
}

impl fmt::Display for Undefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A metric value, or the reason it is undefined on this input.
pub type Outcome = Result<f64, Undefined>;
