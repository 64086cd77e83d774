//! Validated classifier outputs: probabilities (given, or from logits), labels and the
//! per-sample quantities every metric reads.

use std::borrow::Cow;

use crate::error::MetricsError;

/// Tolerance on `|Σ_k p_ik − 1|` for probability rows (spec §11).
pub const ROW_SUM_TOLERANCE: f64 = 1e-4;

/// Probabilities below this are clipped before the logarithm of the NLL (spec §11).
pub const NLL_CLIP: f64 = 1e-12;

/// Validated predictions of a `C`-class classifier on `N` samples.
///
/// Holds the row-major `[N, C]` probabilities in f64, the labels, and per-sample columns
/// derived once: the prediction `ŷ = argmax p` (lowest index on ties), the confidence
/// `max p`, and the NLL term `−log p[i, y_i]` (from log-softmax when built from logits,
/// from probabilities clipped at [`NLL_CLIP`] otherwise).
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    num_classes: usize,
    probs: Vec<f64>,
    labels: Vec<u32>,
    predicted: Vec<u32>,
    confidence: Vec<f64>,
    nll: Vec<f64>,
}

impl Predictions {
    /// Validates probabilities (`[N, C]` row-major, a `Vec` or a slice, each row summing to 1 within
    /// [`ROW_SUM_TOLERANCE`], no negative entry) and labels in `0..C`.
    ///
    /// # Errors
    /// Empty input, fewer than 2 classes, a ragged buffer, a label count that is not `N`,
    /// NaN/Inf, a negative probability, a bad row sum, a label out of range.
    pub fn from_probs<'a>(
        probs: impl Into<Cow<'a, [f64]>>,
        num_classes: usize,
        labels: &[i64],
    ) -> Result<Self, MetricsError> {
        let probs: Vec<f64> = probs.into().into_owned(); // a Vec is moved, a slice copied
        let n = check_shape("probs", probs.len(), num_classes, labels.len())?;
        let labels = check_labels(labels, num_classes)?;
        let mut out = Self {
            num_classes,
            labels,
            ..Self::default()
        };
        out.predicted = vec![0; n];
        out.confidence = vec![0.0; n];
        out.nll = vec![0.0; n];
        // One pass validates each row and derives its prediction, confidence and NLL term, in
        // parallel chunks of rows when there are many.
        let threads = if n >= PARALLEL_ROWS {
            std::thread::available_parallelism().map_or(1, |t| t.get())
        } else {
            1
        };
        let rows = n.div_ceil(threads);
        let chunks = probs
            .chunks(rows * num_classes)
            .zip(out.labels.chunks(rows))
            .zip(out.predicted.chunks_mut(rows))
            .zip(out.confidence.chunks_mut(rows))
            .zip(out.nll.chunks_mut(rows))
            .enumerate();
        let first_error = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .map(|(c, ((((p, y), pred), conf), nll))| {
                    scope.spawn(move || derive_rows(p, num_classes, y, pred, conf, nll, c * rows))
                })
                .collect();
            // Chunks are in row order, so the first error found is the first in the file.
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .find_map(Result::err)
        });
        if let Some(err) = first_error {
            return Err(err);
        }
        out.probs = probs;
        Ok(out)
    }

    /// Validates logits (`[N, C]` row-major, finite) and labels, and turns the logits into
    /// probabilities with a max-subtracted softmax; the NLL uses the log-softmax directly.
    ///
    /// # Errors
    /// As [`Predictions::from_probs`], without the row-sum and sign checks.
    pub fn from_logits(logits: &[f64], num_classes: usize, labels: &[i64]) -> Result<Self, MetricsError> {
        let n = check_shape("logits", logits.len(), num_classes, labels.len())?;
        check_finite_matrix("logits", logits, num_classes)?;
        let labels = check_labels(labels, num_classes)?;
        let mut probs = vec![0.0; logits.len()];
        let mut nll = Vec::with_capacity(n);
        for ((z, p), &y) in logits
            .chunks_exact(num_classes)
            .zip(probs.chunks_exact_mut(num_classes))
            .zip(&labels)
        {
            softmax_row(z, p);
            let (max, log_sum) = log_softmax_parts(z);
            nll.push((max - z[y as usize]) + log_sum);
        }
        let mut out = Self {
            num_classes,
            probs,
            labels,
            nll,
            ..Self::default()
        };
        out.derive_top();
        Ok(out)
    }

    fn derive_top(&mut self) {
        let c = self.num_classes;
        self.predicted.clear();
        self.confidence.clear();
        self.predicted.reserve_exact(self.labels.len());
        self.confidence.reserve_exact(self.labels.len());
        for p in self.probs.chunks_exact(c) {
            let (k, conf) = argmax(p);
            self.predicted.push(k as u32);
            self.confidence.push(conf);
        }
    }

    /// Fills `out` with the rows `indices` of `self` (a bootstrap resample), reusing `out`'s
    /// buffers so that repeated resampling allocates nothing once warmed up.
    pub fn resample_into(&self, indices: &[usize], out: &mut Predictions) {
        let c = self.num_classes;
        out.num_classes = c;
        out.probs.clear();
        out.labels.clear();
        out.predicted.clear();
        out.confidence.clear();
        out.nll.clear();
        for &i in indices {
            out.probs.extend_from_slice(&self.probs[i * c..(i + 1) * c]);
            out.labels.push(self.labels[i]);
            out.predicted.push(self.predicted[i]);
            out.confidence.push(self.confidence[i]);
            out.nll.push(self.nll[i]);
        }
    }

    /// Number of samples `N`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: validation rejects empty input.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Row-major `[N, C]` probabilities.
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }

    /// Labels `y`, in `0..C`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Predictions `ŷ = argmax p` (lowest index on ties).
    pub fn predicted(&self) -> &[u32] {
        &self.predicted
    }

    /// Confidences `max p`.
    pub fn confidence(&self) -> &[f64] {
        &self.confidence
    }

    /// Per-sample NLL terms `−log p[i, y_i]`.
    pub fn nll_terms(&self) -> &[f64] {
        &self.nll
    }

    /// Iterator over the error indicators `e_i = 1[ŷ_i ≠ y_i]`.
    pub fn errors(&self) -> impl ExactSizeIterator<Item = bool> + '_ {
        self.predicted.iter().zip(&self.labels).map(|(p, y)| p != y)
    }

    /// Error indicators collected into a vector.
    pub fn error_vec(&self) -> Vec<bool> {
        self.errors().collect()
    }
}

/// Row count above which [`Predictions::from_probs`] splits its pass over threads.
const PARALLEL_ROWS: usize = 1 << 15;

/// Validates probability rows (the first being row `first_row`) and fills their prediction,
/// confidence and NLL term.
fn derive_rows(
    probs: &[f64],
    num_classes: usize,
    labels: &[u32],
    predicted: &mut [u32],
    confidence: &mut [f64],
    nll: &mut [f64],
    first_row: usize,
) -> Result<(), MetricsError> {
    let rows = probs
        .chunks_exact(num_classes)
        .zip(labels)
        .zip(predicted.iter_mut().zip(confidence).zip(nll));
    for (i, ((p, &y), ((pred, conf), nll))) in rows.enumerate() {
        let mut sum = 0.0;
        let mut valid = true;
        for &v in p {
            sum += v;
            valid &= v >= 0.0 && v.is_finite(); // false for NaN
        }
        if !valid {
            return Err(row_error(first_row + i, p));
        }
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
            return Err(MetricsError::RowSum {
                row: first_row + i,
                sum,
            });
        }
        let (k, c) = argmax(p);
        *pred = k as u32;
        *conf = c;
        *nll = -p[y as usize].max(NLL_CLIP).ln();
    }
    Ok(())
}

/// The first invalid entry of a probability row: non-finite, or else negative.
fn row_error(row: usize, p: &[f64]) -> MetricsError {
    match p.iter().position(|v| !v.is_finite()) {
        Some(col) => MetricsError::NonFinite {
            what: "probs",
            row,
            col: Some(col),
            value: p[col],
        },
        None => {
            let col = p.iter().position(|&v| v < 0.0).unwrap_or(0);
            MetricsError::NegativeProbability {
                row,
                col,
                value: p[col],
            }
        }
    }
}

/// `(max, ln Σ_k exp(z_k − max))` of a row of logits, so that
/// `log p_k = (z_k − max) − ln Σ` (decision M11).
///
/// The difference `z_k − max` is taken before the small `ln Σ` is added: folding both into one
/// normaliser `max + ln Σ` loses `ln Σ` entirely once |max| passes about 1e16.
pub fn log_softmax_parts(z: &[f64]) -> (f64, f64) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
    (max, sum.ln())
}

/// One row's softmax into `p` (same length): `p_k = exp(z_k − max) / Σ_j exp(z_j − max)`, the
/// form of `torch.softmax` and `scipy.special.softmax`; a row sums to 1 within rounding for any
/// finite logits (decision M11).
pub fn softmax_row(z: &[f64], p: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (pk, &zk) in p.iter_mut().zip(z) {
        *pk = (zk - max).exp();
        sum += *pk;
    }
    for pk in p.iter_mut() {
        *pk /= sum;
    }
}

/// [`softmax_row`] of each `C`-sized row of `logits` into `out` (same length).
pub fn softmax_rows(logits: &[f64], num_classes: usize, out: &mut [f64]) {
    for (z, p) in logits.chunks_exact(num_classes).zip(out.chunks_exact_mut(num_classes)) {
        softmax_row(z, p);
    }
}

/// Index and value of the maximum; the lowest index wins ties.
pub(crate) fn argmax(p: &[f64]) -> (usize, f64) {
    let mut best = (0, p[0]);
    for (k, &v) in p.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (k, v);
        }
    }
    best
}

fn check_shape(what: &'static str, len: usize, num_classes: usize, n_labels: usize) -> Result<usize, MetricsError> {
    if num_classes < 2 {
        return Err(MetricsError::TooFewClasses { what, num_classes });
    }
    if len == 0 {
        return Err(MetricsError::Empty { what });
    }
    if !len.is_multiple_of(num_classes) {
        return Err(MetricsError::Ragged { what, len, num_classes });
    }
    let n = len / num_classes;
    if n_labels != n {
        return Err(MetricsError::LengthMismatch {
            what: "labels",
            expected: n,
            found: n_labels,
        });
    }
    Ok(n)
}

fn check_finite_matrix(what: &'static str, values: &[f64], num_classes: usize) -> Result<(), MetricsError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(MetricsError::NonFinite {
            what,
            row: i / num_classes,
            col: Some(i % num_classes),
            value: values[i],
        }),
    }
}

/// Checks that a per-sample vector (scores) has `n` finite entries.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] or [`MetricsError::NonFinite`] naming `what` and the row.
pub fn check_scores(what: &'static str, scores: &[f64], n: usize) -> Result<(), MetricsError> {
    if scores.len() != n {
        return Err(MetricsError::LengthMismatch {
            what,
            expected: n,
            found: scores.len(),
        });
    }
    match scores.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(row) => Err(MetricsError::NonFinite {
            what,
            row,
            col: None,
            value: scores[row],
        }),
    }
}

fn check_labels(labels: &[i64], num_classes: usize) -> Result<Vec<u32>, MetricsError> {
    labels
        .iter()
        .enumerate()
        .map(|(row, &label)| {
            if (0..num_classes as i64).contains(&label) {
                Ok(label as u32)
            } else {
                Err(MetricsError::LabelOutOfRange {
                    row,
                    label,
                    num_classes,
                })
            }
        })
        .collect()
}
