//! The built-in uncertainty scores computed from probabilities (spec §11).

use crate::predictions::Predictions;

/// Names of the built-in scores, in report order.
pub const BUILTIN_SCORES: [&str; 3] = ["sr", "entropy", "margin"];

/// A built-in score of the model's own probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinScore {
    /// `sr` = 1 − max p (softmax response).
    Sr,
    /// `entropy` = −Σ p ln p / ln C, with 0 ln 0 = 0.
    Entropy,
    /// `margin` = 1 − (p₍₁₎ − p₍₂₎), the gap between the two largest probabilities.
    Margin,
}

impl BuiltinScore {
    /// All built-in scores, in report order.
    pub const ALL: [BuiltinScore; 3] = [BuiltinScore::Sr, BuiltinScore::Entropy, BuiltinScore::Margin];

    /// The §11 name.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinScore::Sr => "sr",
            BuiltinScore::Entropy => "entropy",
            BuiltinScore::Margin => "margin",
        }
    }

    /// The score of one probability row.
    #[inline]
    pub fn of_row(self, p: &[f64]) -> f64 {
        match self {
            BuiltinScore::Sr => 1.0 - p.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            BuiltinScore::Entropy => {
                let h: f64 = p.iter().filter(|&&v| v > 0.0).map(|&v| -v * v.ln()).sum();
                h / (p.len() as f64).ln()
            }
            BuiltinScore::Margin => {
                // Branch-free top two: the new second is the larger of the old second and the
                // smaller of (old first, v).
                let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                for &v in p {
                    second = second.max(first.min(v));
                    first = first.max(v);
                }
                1.0 - (first - second)
            }
        }
    }

    /// The score of every sample, into `out` (cleared first).
    pub fn compute_into(self, pred: &Predictions, out: &mut Vec<f64>) {
        out.clear();
        out.extend(pred.probs().chunks_exact(pred.num_classes()).map(|p| self.of_row(p)));
    }

    /// The score of every sample.
    pub fn compute(self, pred: &Predictions) -> Vec<f64> {
        let mut out = Vec::with_capacity(pred.len());
        self.compute_into(pred, &mut out);
        out
    }
}
