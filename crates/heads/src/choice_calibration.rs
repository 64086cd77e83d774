//! Calibrating an aligned LM on multiple-choice tasks (He et al., arXiv 2310.11732; spec §4):
//! one temperature per task from k held-out examples (default 5).
//!
//! - `kl` (the paper's method): T = argmin Σᵢ KL(q_pre(·|xᵢ) ‖ softmax(zᵢ/T)) over the options,
//!   where q_pre is the pre-trained counterpart's distribution on the same questions, read from
//!   its cache (`reference`). No labels are used.
//! - `nll`: ordinary temperature scaling on the same k examples (labels needed).
//! - `constant`: T = 2.5 (Kadavath et al. 2022), nothing fitted.
//!
//! The score is `u = 1 − max softmax(z/T)`; the calibrated probabilities are reported too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use ueb_metrics::{BuiltinScore, log_softmax_parts, softmax_row};
use ueb_rng::{Rng64, Xoshiro256};

use crate::classical::{TemperatureConfig, TemperatureHead, minimise_log_t};
use crate::error::HeadError;
use crate::head::{FitContext, Head, check_classes, parse_json, write_json};
use ueb_cache::{FeatureCache, SplitData};

const NAME: &str = "choice_temperature";

/// How T is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChoiceObjective {
    /// KL from the pre-trained model's option distribution (needs `reference`).
    Kl,
    /// NLL of the gold answers (temperature scaling on k examples).
    Nll,
    /// A fixed `constant_temperature`.
    Constant,
}

/// Settings of `choice_temperature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChoiceTemperatureConfig {
    /// The pre-trained counterpart's cache (the same questions in the same order); required
    /// for `kl`.
    pub reference: Option<PathBuf>,
    /// Held-out examples the temperature is fitted on (drawn from the fit split with the
    /// seed).
    pub k: usize,
    /// `kl`, `nll` or `constant`.
    pub objective: ChoiceObjective,
    /// T of the `constant` objective.
    pub constant_temperature: f64,
    /// Search interval and tolerance of T (as temperature scaling's).
    pub search: TemperatureConfig,
}

impl ChoiceTemperatureConfig {
    /// Checks the settings the objective uses: `reference` for `kl`, `k ≥ 1` and a valid search
    /// for `kl` and `nll`, a finite positive `constant_temperature` for `constant`.
    ///
    /// # Errors
    /// [`HeadError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), HeadError> {
        match self.objective {
            ChoiceObjective::Constant => {
                let t = self.constant_temperature;
                if !(t.is_finite() && t > 0.0) {
                    return Err(HeadError::config(
                        NAME,
                        format!("constant_temperature = {t} must be positive"),
                    ));
                }
            }
            ChoiceObjective::Kl | ChoiceObjective::Nll => {
                if self.objective == ChoiceObjective::Kl && self.reference.is_none() {
                    return Err(HeadError::config(
                        NAME,
                        "objective kl needs `reference`: the cache of the pre-trained counterpart on the same questions",
                    ));
                }
                if self.k == 0 {
                    return Err(HeadError::config(NAME, "k must be at least 1"));
                }
                self.search.check(NAME)?;
            }
        }
        Ok(())
    }
}

impl Default for ChoiceTemperatureConfig {
    fn default() -> Self {
        Self {
            reference: None,
            k: 5,
            objective: ChoiceObjective::Kl,
            constant_temperature: 2.5,
            search: TemperatureConfig::default(),
        }
    }
}

/// A fitted per-task temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceTemperatureHead {
    /// The temperature.
    pub temperature: f64,
    /// How it was chosen.
    pub objective: ChoiceObjective,
    /// The rows of the fit split it was fitted on.
    pub rows: Vec<usize>,
    /// The objective at T = 1 and at T (NaN for `constant`).
    objective_values: (f64, f64),
    num_classes: usize,
}

/// `k` distinct rows of `0..n`, drawn with `seed`, in increasing order.
fn pick_rows(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    // A stream of its own, so that other heads' draws on the same seed are not correlated.
    Xoshiro256::new(seed, 0x6d63_6b6c).shuffle(&mut all);
    let mut rows: Vec<usize> = all.into_iter().take(k).collect();
    rows.sort_unstable();
    rows
}

fn subset(split: &SplitData, rows: &[usize]) -> SplitData {
    let (c, d) = (split.num_classes, split.dim);
    let mut out = SplitData {
        features: Vec::with_capacity(rows.len() * d),
        logits: Vec::with_capacity(rows.len() * c),
        labels: Vec::with_capacity(rows.len()),
        group: None,
        dim: d,
        num_classes: c,
    };
    for &r in rows {
        out.features.extend_from_slice(&split.features[r * d..(r + 1) * d]);
        out.logits.extend_from_slice(&split.logits[r * c..(r + 1) * c]);
        out.labels.push(split.labels[r]);
    }
    out
}

/// Mean KL(q ‖ softmax(z/T)) over the rows (`q` row-major probabilities).
fn kl_at(z: &[f64], q: &[f64], c: usize, t: f64) -> f64 {
    let mut row = vec![0.0; c];
    let mut total = 0.0;
    let n = z.len() / c;
    for (zi, qi) in z.chunks_exact(c).zip(q.chunks_exact(c)) {
        for (r, &v) in row.iter_mut().zip(zi) {
            *r = v / t;
        }
        let (max, log_sum) = log_softmax_parts(&row);
        for (&p, &r) in qi.iter().zip(&row) {
            if p > 0.0 {
                total += p * (p.ln() - ((r - max) - log_sum));
            }
        }
    }
    total / n as f64
}

impl ChoiceTemperatureHead {
    /// Fits T on k rows of the fit split (for `kl`, against the same rows of the reference
    /// cache's fit split).
    ///
    /// # Errors
    /// A bad configuration, fewer than k rows, a missing or mismatched reference cache.
    pub fn fit(cfg: &ChoiceTemperatureConfig, ctx: &FitContext<'_>) -> Result<Self, HeadError> {
        let reference = match (&cfg.objective, &cfg.reference) {
            (ChoiceObjective::Kl, Some(dir)) => Some(FeatureCache::load(dir)?.0),
            (ChoiceObjective::Kl, None) => {
                return Err(HeadError::config(
                    NAME,
                    "objective kl needs `reference`: the cache of the pre-trained counterpart on the same questions",
                ));
            }
            _ => None,
        };
        Self::fit_with(
            cfg,
            ctx.split(ctx.fit),
            reference.as_ref().map(|r| r.split(ctx.fit)),
            ctx.seed,
        )
    }

    /// [`ChoiceTemperatureHead::fit`] on explicit splits: `split` of the aligned model and, for
    /// `kl`, `reference` of the pre-trained one (same rows, same order).
    ///
    /// # Errors
    /// As [`ChoiceTemperatureHead::fit`].
    pub fn fit_with(
        cfg: &ChoiceTemperatureConfig,
        split: &SplitData,
        reference: Option<&SplitData>,
        seed: u64,
    ) -> Result<Self, HeadError> {
        let c = split.num_classes();
        if cfg.objective == ChoiceObjective::Constant {
            let t = cfg.constant_temperature;
            if !(t.is_finite() && t > 0.0) {
                return Err(HeadError::config(
                    NAME,
                    format!("constant_temperature = {t} must be positive"),
                ));
            }
            return Ok(Self {
                temperature: t,
                objective: cfg.objective,
                rows: Vec::new(),
                objective_values: (f64::NAN, f64::NAN),
                num_classes: c,
            });
        }
        if cfg.k == 0 {
            return Err(HeadError::config(NAME, "k must be at least 1"));
        }
        if split.n() < cfg.k {
            return Err(HeadError::fit(
                NAME,
                format!("the fit split has {} rows, fewer than k = {}", split.n(), cfg.k),
            ));
        }
        let rows = pick_rows(split.n(), cfg.k, seed);
        let mine = subset(split, &rows);
        let search = cfg.search;
        if cfg.objective == ChoiceObjective::Nll {
            let head = TemperatureHead::fit(&search, &mine)?;
            let summary = head.summary();
            let at = |key: &str| summary.get(key).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
            return Ok(Self {
                temperature: head.temperature,
                objective: cfg.objective,
                objective_values: (at("fit_nll_at_t1"), at("fit_nll")),
                rows,
                num_classes: c,
            });
        }
        let reference = reference.ok_or_else(|| HeadError::config(NAME, "objective kl needs a reference split"))?;
        if reference.num_classes() != c || reference.n() != split.n() {
            return Err(HeadError::fit(
                NAME,
                format!(
                    "the reference cache's split has {} rows and {} options, the aligned model's {} and {c}: not the same questions",
                    reference.n(),
                    reference.num_classes(),
                    split.n()
                ),
            ));
        }
        if reference.labels != split.labels {
            return Err(HeadError::fit(
                NAME,
                "the reference cache's answers differ from the aligned model's: not the same questions in the same order",
            ));
        }
        let q = subset(reference, &rows).probs();
        let z = mine.logits_f64();
        let log_t = minimise_log_t(&search, |lt| kl_at(&z, &q, c, lt.exp()));
        let t = log_t.exp();
        Ok(Self {
            temperature: t,
            objective: cfg.objective,
            objective_values: (kl_at(&z, &q, c, 1.0), kl_at(&z, &q, c, t)),
            rows,
            num_classes: c,
        })
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            temperature: f64,
            objective: ChoiceObjective,
            rows: Vec<usize>,
            num_classes: usize,
        }
        let s: Saved = parse_json(dir, text)?;
        Ok(Self {
            temperature: s.temperature,
            objective: s.objective,
            rows: s.rows,
            objective_values: (f64::NAN, f64::NAN),
            num_classes: s.num_classes,
        })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes(NAME, split, self.num_classes)?;
        let c = self.num_classes;
        let mut out = Vec::with_capacity(split.n() * c);
        let mut row = vec![0.0; c];
        for zi in split.logits.chunks_exact(c) {
            for (r, &v) in row.iter_mut().zip(zi) {
                *r = f64::from(v) / self.temperature;
            }
            let start = out.len();
            out.resize(start + c, 0.0);
            softmax_row(&row, &mut out[start..]);
        }
        Ok(out)
    }
}

impl Head for ChoiceTemperatureHead {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let p = self.calibrated(split)?;
        Ok(p.chunks_exact(self.num_classes)
            .map(|r| BuiltinScore::Sr.of_row(r))
            .collect())
    }

    fn probabilities(&self, split: &SplitData) -> Option<Result<Vec<f64>, HeadError>> {
        Some(self.calibrated(split))
    }

    fn summary(&self) -> serde_json::Value {
        json!({"temperature": self.temperature, "objective": self.objective, "rows": self.rows,
               "objective_at_t1": self.objective_values.0, "objective_at_t": self.objective_values.1})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(
            dir,
            &json!({"head": NAME, "temperature": self.temperature, "objective": self.objective,
                    "rows": self.rows, "num_classes": self.num_classes}),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split(logits: Vec<f32>, labels: Vec<i64>, c: usize) -> SplitData {
        let n = labels.len();
        SplitData {
            features: vec![0.0; n],
            logits,
            labels,
            group: None,
            dim: 1,
            num_classes: c,
        }
    }

    #[test]
    fn kl_recovers_the_temperature_that_made_the_aligned_logits() {
        // The aligned model's logits are the pre-trained ones times 3: T = 3 undoes it exactly.
        let pre: Vec<f32> = vec![
            0.3, -0.2, 1.1, 0.0, 2.0, 0.5, -1.0, 0.1, -0.4, 0.9, 0.2, 0.0, 1.5, -0.5, 0.3, 0.7,
        ];
        let aligned: Vec<f32> = pre.iter().map(|z| 3.0 * z).collect();
        let labels = vec![2, 0, 3, 0];
        let cfg = ChoiceTemperatureConfig {
            k: 4,
            ..Default::default()
        };
        let head = ChoiceTemperatureHead::fit_with(
            &cfg,
            &split(aligned.clone(), labels.clone(), 4),
            Some(&split(pre, labels.clone(), 4)),
            0,
        )
        .unwrap();
        assert!((head.temperature - 3.0).abs() < 1e-4, "{}", head.temperature);
        assert!(head.objective_values.1 < 1e-9);
        // Calibrated probabilities are the pre-trained ones; u is 1 − max of them.
        let u = head.score(&split(aligned, labels, 4)).unwrap();
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn nll_and_constant_baselines() {
        let z: Vec<f32> = vec![4.0, 0.0, 0.0, 4.0, 4.0, 0.0, 0.0, 4.0, 4.0, 0.0, 0.0, 4.0];
        let labels = vec![0, 1, 1, 0, 0, 1];
        let s = split(z, labels, 2);
        let nll = ChoiceTemperatureConfig {
            objective: ChoiceObjective::Nll,
            k: 6,
            ..Default::default()
        };
        let head = ChoiceTemperatureHead::fit_with(&nll, &s, None, 1).unwrap();
        // Two of six wrong at logit gap 4: the NLL optimum is a temperature above 1.
        assert!(head.temperature > 1.0 && head.objective_values.1 <= head.objective_values.0);
        let constant = ChoiceTemperatureConfig {
            objective: ChoiceObjective::Constant,
            ..Default::default()
        };
        assert_eq!(
            ChoiceTemperatureHead::fit_with(&constant, &s, None, 1)
                .unwrap()
                .temperature,
            2.5
        );
        let kl = ChoiceTemperatureConfig::default();
        assert!(ChoiceTemperatureHead::fit_with(&kl, &s, None, 1).is_err());
    }

    #[test]
    fn rows_are_seeded_and_distinct() {
        let a = pick_rows(100, 5, 7);
        assert_eq!(a, pick_rows(100, 5, 7));
        assert_ne!(a, pick_rows(100, 5, 8));
        let mut d = a.clone();
        d.dedup();
        assert_eq!(d.len(), 5);
    }
}
