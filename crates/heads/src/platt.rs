//! `platt`: Platt scaling of the logits, as scikit-learn's sigmoid calibration fits it.
//!
//! The decision value is F = z₁ − z₀ for two classes (p̂₁ = σ(−(aF + b)), p̂₀ = 1 − p̂₁), and
//! F_k = z_k − logsumexp of the other logits for more, one-vs-rest, rows renormalised. (a, b)
//! minimise the cross-entropy against Platt's smoothed targets (N₊ + 1)/(N₊ + 2) and
//! 1/(N₋ + 2), from a = 0, b = ln((N₋ + 1)/(N₊ + 1)), solved to rounding (`logistic`), where
//! scikit-learn's L-BFGS stops at its tolerance.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;
use ueb_cache::SplitData;

use crate::binning::renormalise_rows;
use crate::error::HeadError;
use crate::head::{Head, check_classes, parse_json, write_json};
use crate::logistic::{self, sigmoid};

const NAME: &str = "platt";

/// Platt's (a, b) for decision values `f` and binary targets `positive`.
fn fit_ab(f: &[f64], positive: &[bool]) -> (f64, f64) {
    let n1 = positive.iter().filter(|&&p| p).count() as f64;
    let n0 = f.len() as f64 - n1;
    let t: Vec<f64> = positive
        .iter()
        .map(|&p| if p { (n1 + 1.0) / (n1 + 2.0) } else { 1.0 / (n0 + 2.0) })
        .collect();
    // Large decision values are scaled, as scikit-learn does; the optimum does not change.
    let scale = f.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(30.0) / 30.0;
    let f: Vec<f64> = f.iter().map(|v| v / scale).collect();
    // Platt's P(positive) = σ(−(aF + b)) is the logistic model's σ(wF + c) with (a, b) = −(w, c),
    // started where Platt starts: a = 0, b = ln((N₋ + 1)/(N₊ + 1)).
    let m = logistic::fit(&f, 1, &t, 0.0, -((n0 + 1.0) / (n1 + 1.0)).ln());
    (-m.w[0] / scale, -m.c)
}

/// The one-vs-rest decision values of each row: z_k − logsumexp of the others.
fn ovr(z: &[f64], c: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(z.len());
    let mut others = Vec::with_capacity(c);
    for row in z.chunks_exact(c) {
        for k in 0..c {
            others.clear();
            others.extend(row.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &v)| v));
            let (max, log_sum) = ueb_metrics::log_softmax_parts(&others);
            out.push((row[k] - max) - log_sum);
        }
    }
    out
}

/// A fitted Platt calibrator: one (a, b) for two classes, one per class for more.
#[derive(Debug, Clone, PartialEq)]
pub struct PlattHead {
    ab: Vec<(f64, f64)>,
    num_classes: usize,
}

impl PlattHead {
    /// Fits on `split`'s logits and labels.
    ///
    /// # Errors
    /// An empty split.
    pub fn fit(split: &SplitData) -> Result<Self, HeadError> {
        if split.n() == 0 {
            return Err(HeadError::fit(NAME, "the fit split is empty"));
        }
        let c = split.num_classes();
        let z = split.logits_f64();
        let ab = if c == 2 {
            let f: Vec<f64> = z.chunks_exact(2).map(|r| r[1] - r[0]).collect();
            let positive: Vec<bool> = split.labels.iter().map(|&y| y == 1).collect();
            vec![fit_ab(&f, &positive)]
        } else {
            let f = ovr(&z, c);
            (0..c)
                .map(|k| {
                    let fk: Vec<f64> = f.chunks_exact(c).map(|r| r[k]).collect();
                    let positive: Vec<bool> = split.labels.iter().map(|&y| y as usize == k).collect();
                    fit_ab(&fk, &positive)
                })
                .collect()
        };
        Ok(Self { ab, num_classes: c })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes(NAME, split, self.num_classes)?;
        let c = self.num_classes;
        let z = split.logits_f64();
        if c == 2 {
            let (a, b) = self.ab[0];
            return Ok(z
                .chunks_exact(2)
                .flat_map(|r| {
                    let p1 = sigmoid(-(a * (r[1] - r[0]) + b));
                    [1.0 - p1, p1]
                })
                .collect());
        }
        let mut out = ovr(&z, c);
        for row in out.chunks_exact_mut(c) {
            for (k, v) in row.iter_mut().enumerate() {
                let (a, b) = self.ab[k];
                *v = sigmoid(-(a * *v + b));
            }
        }
        renormalise_rows(&mut out, c);
        Ok(out)
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            num_classes: usize,
            a: Vec<f64>,
            b: Vec<f64>,
        }
        let s: Saved = parse_json(dir, text)?;
        let want = if s.num_classes == 2 { 1 } else { s.num_classes };
        if s.num_classes < 2 || s.a.len() != want || s.b.len() != want {
            return Err(HeadError::Meta {
                path: dir.join("head.json"),
                reason: format!("{} classes need {want} values of a and b", s.num_classes),
            });
        }
        Ok(Self {
            ab: s.a.into_iter().zip(s.b).collect(),
            num_classes: s.num_classes,
        })
    }
}

impl Head for PlattHead {
    fn name(&self) -> &'static str {
        NAME
    }

    calibrated_outputs!(num_classes);

    fn summary(&self) -> serde_json::Value {
        json!({"a": self.ab.iter().map(|p| p.0).collect::<Vec<_>>(), "b": self.ab.iter().map(|p| p.1).collect::<Vec<_>>()})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(
            dir,
            &json!({"head": NAME, "num_classes": self.num_classes, "a": self.ab.iter().map(|p| p.0).collect::<Vec<_>>(), "b": self.ab.iter().map(|p| p.1).collect::<Vec<_>>()}),
        )
    }
}
