//! `beta`: beta calibration (Kull, Silva Filho and Flach 2017) of the softmax probabilities, as
//! the authors' `betacal` package fits it (`BetaCalibration(parameters="abm")`).
//!
//! For a probability s (clipped to [ε, 1 − ε], ε = 2⁻⁵²), p̂ = σ(a·ln s − b·ln(1 − s) + c): a
//! logistic regression of the label on the two features ln s and −ln(1 − s) (scikit-learn's
//! penalty with C = 99999999999, as betacal sets it). a, b ≥ 0 as betacal enforces them: when
//! the fit gives a < 0 it is refitted on −ln(1 − s) alone (a = 0); else when b < 0, on ln s alone
//! (b = 0). Two classes: s = p₁, p̂₀ = 1 − p̂₁. More: one-vs-rest on each p_k, rows
//! renormalised. Fitted by `logistic` to rounding, where betacal's L-BFGS stops at its
//! tolerance.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;
use ueb_cache::SplitData;

use crate::binning::renormalise_rows;
use crate::error::HeadError;
use crate::head::{Head, check_classes, parse_json, write_json};
use crate::logistic::{self, sigmoid};

const NAME: &str = "beta";
/// betacal's `LogisticRegression(C=99999999999)`.
const LAMBDA: f64 = 1.0 / 99_999_999_999.0;

/// One class's map: p̂ = σ(a·ln s − b·ln(1 − s) + c).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BetaMap {
    a: f64,
    b: f64,
    c: f64,
}

/// ln s and −ln(1 − s) of s clipped to [ε, 1 − ε].
fn features(s: f64) -> [f64; 2] {
    let s = s.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    [s.ln(), -(1.0 - s).ln()]
}

impl BetaMap {
    fn fit(s: &[f64], positive: &[bool]) -> Self {
        let x: Vec<f64> = s.iter().flat_map(|&v| features(v)).collect();
        let t: Vec<f64> = positive.iter().map(|&p| f64::from(u8::from(p))).collect();
        let both = logistic::fit(&x, 2, &t, LAMBDA, 0.0);
        let only = |j: usize| {
            let xj: Vec<f64> = x.chunks_exact(2).map(|r| r[j]).collect();
            logistic::fit(&xj, 1, &t, LAMBDA, 0.0)
        };
        if both.w[0] < 0.0 {
            let m = only(1);
            Self {
                a: 0.0,
                b: m.w[0],
                c: m.c,
            }
        } else if both.w[1] < 0.0 {
            let m = only(0);
            Self {
                a: m.w[0],
                b: 0.0,
                c: m.c,
            }
        } else {
            Self {
                a: both.w[0],
                b: both.w[1],
                c: both.c,
            }
        }
    }

    fn apply(&self, s: f64) -> f64 {
        let [ls, l1s] = features(s);
        sigmoid(self.a * ls + self.b * l1s + self.c)
    }
}

/// A fitted beta calibrator: one map for two classes, one per class for more.
#[derive(Debug, Clone, PartialEq)]
pub struct BetaHead {
    maps: Vec<BetaMap>,
    num_classes: usize,
}

impl BetaHead {
    /// Fits on `split`'s softmax probabilities and labels.
    ///
    /// # Errors
    /// An empty split.
    pub fn fit(split: &SplitData) -> Result<Self, HeadError> {
        if split.n() == 0 {
            return Err(HeadError::fit(NAME, "the fit split is empty"));
        }
        let c = split.num_classes();
        let p = split.probs();
        let class = |k: usize| {
            let s: Vec<f64> = p.chunks_exact(c).map(|r| r[k]).collect();
            let positive: Vec<bool> = split.labels.iter().map(|&y| y as usize == k).collect();
            BetaMap::fit(&s, &positive)
        };
        let maps = if c == 2 {
            vec![class(1)]
        } else {
            (0..c).map(class).collect()
        };
        Ok(Self { maps, num_classes: c })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes(NAME, split, self.num_classes)?;
        let c = self.num_classes;
        let mut p = split.probs();
        if c == 2 {
            for row in p.chunks_exact_mut(2) {
                let p1 = self.maps[0].apply(row[1]);
                row.copy_from_slice(&[1.0 - p1, p1]);
            }
            return Ok(p);
        }
        for row in p.chunks_exact_mut(c) {
            for (k, v) in row.iter_mut().enumerate() {
                *v = self.maps[k].apply(*v);
            }
        }
        renormalise_rows(&mut p, c);
        Ok(p)
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "a": self.maps.iter().map(|m| m.a).collect::<Vec<_>>(),
            "b": self.maps.iter().map(|m| m.b).collect::<Vec<_>>(),
            "c": self.maps.iter().map(|m| m.c).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            num_classes: usize,
            a: Vec<f64>,
            b: Vec<f64>,
            c: Vec<f64>,
        }
        let s: Saved = parse_json(dir, text)?;
        let want = if s.num_classes == 2 { 1 } else { s.num_classes };
        if s.num_classes < 2 || s.a.len() != want || s.b.len() != want || s.c.len() != want {
            return Err(HeadError::Meta {
                path: dir.join("head.json"),
                reason: format!("{} classes need {want} values of a, b and c", s.num_classes),
            });
        }
        let maps = (0..want)
            .map(|k| BetaMap {
                a: s.a[k],
                b: s.b[k],
                c: s.c[k],
            })
            .collect();
        Ok(Self {
            maps,
            num_classes: s.num_classes,
        })
    }
}

impl Head for BetaHead {
    fn name(&self) -> &'static str {
        NAME
    }

    calibrated_outputs!(num_classes);

    fn summary(&self) -> serde_json::Value {
        self.params()
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let mut v = self.params();
        v["head"] = json!(NAME);
        v["num_classes"] = json!(self.num_classes);
        write_json(dir, &v)
    }
}
