//! `dirichlet`: Dirichlet calibration with off-diagonal and intercept regularisation (ODIR;
//! Kull et al. 2019), as the authors' `dirichletcal` package fits it
//! (`FullDirichletCalibrator(reg_lambda=λ, reg_mu=μ)`), with λ and μ chosen by stratified k-fold
//! cross-validation on the fit split.
//!
//! p̂ = softmax(W·ln p + b) over the softmax probabilities p (clipped below at the smallest
//! normal f64 before the log). As in dirichletcal, the last row of [W | b] is held at zero (the
//! model is unchanged by subtracting one row from all; the identity start becomes
//! W_j = e_j − e_C), and (W, b) minimise the mean NLL of the fit rows plus
//! λ·Σ_{j≠l} W_jl² + μ·Σ_j b_j² on that representation, from that identity start, by L-BFGS
//! finished by Newton steps.
//!
//! With more than one candidate (λ, μ), each is scored by the mean over folds of the held-out
//! mean NLL, folds made as scikit-learn's `StratifiedKFold(n_splits, shuffle=False)` makes them
//! (`GridSearchCV(scoring="neg_log_loss")`); the first best in grid order (λ outer, μ inner)
//! wins, and the model is refitted on every fit row with it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use ueb_cache::SplitData;
use ueb_metrics::{BuiltinScore, log_softmax_parts, softmax_row};

use crate::classical::{lbfgs, score_rows};
use crate::error::HeadError;
use crate::head::{Head, check_classes, parse_json, write_json};

const NAME: &str = "dirichlet";

/// Settings of Dirichlet calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirichletConfig {
    /// Candidate weights λ of the off-diagonal penalty Σ W_jl² (j ≠ l).
    pub lambdas: Vec<f64>,
    /// Candidate weights μ of the intercept penalty Σ b_j².
    pub mus: Vec<f64>,
    /// Folds of the cross-validation that chooses (λ, μ) when there is more than one pair.
    pub folds: usize,
    /// Stop L-BFGS when the gradient's max-norm falls below this.
    pub gradient_tolerance: f64,
    /// Iteration limit of L-BFGS.
    pub max_iterations: usize,
}

impl Default for DirichletConfig {
    fn default() -> Self {
        let grid = vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        Self {
            lambdas: grid.clone(),
            mus: grid,
            folds: 5,
            gradient_tolerance: 1e-10,
            max_iterations: 10_000,
        }
    }
}

impl DirichletConfig {
    /// Checks non-empty grids of finite, non-negative weights, at least two folds, and a positive
    /// tolerance and iteration limit.
    ///
    /// # Errors
    /// [`HeadError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), HeadError> {
        for (key, grid) in [("lambdas", &self.lambdas), ("mus", &self.mus)] {
            if grid.is_empty() || grid.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(HeadError::config(
                    NAME,
                    format!("{key} must be a non-empty list of finite weights ≥ 0, not {grid:?}"),
                ));
            }
        }
        if self.folds < 2 {
            return Err(HeadError::config(
                NAME,
                format!("folds must be at least 2, not {}", self.folds),
            ));
        }
        if self.gradient_tolerance.is_nan() || self.gradient_tolerance <= 0.0 || self.max_iterations == 0 {
            return Err(HeadError::config(
                NAME,
                format!(
                    "gradient_tolerance ({}) and max_iterations ({}) must be positive",
                    self.gradient_tolerance, self.max_iterations
                ),
            ));
        }
        Ok(())
    }
}

/// The rows a fit (or a held-out score) reads: ln p of every row (`[n, C]`), the labels, and
/// which rows.
#[derive(Clone, Copy)]
struct Rows<'a> {
    x: &'a [f64],
    labels: &'a [i64],
    rows: &'a [usize],
    c: usize,
}

/// ln p, clipped below at the smallest normal f64 (dirichletcal's `clip_for_log`).
fn log_probs(split: &SplitData) -> Vec<f64> {
    split
        .probs()
        .into_iter()
        .map(|p| p.max(f64::MIN_POSITIVE).ln())
        .collect()
}

/// The logits of one row: rows j < C − 1 of [W | b] (θ: W's rows, then b), the last 0.
fn row_logits(theta: &[f64], c: usize, x: &[f64], out: &mut [f64]) {
    let (w, b) = theta.split_at((c - 1) * c);
    for j in 0..c - 1 {
        out[j] = b[j] + w[j * c..(j + 1) * c].iter().zip(x).map(|(a, v)| a * v).sum::<f64>();
    }
    out[c - 1] = 0.0;
}

/// Mean NLL plus the ODIR penalty, and its gradient, at θ.
fn objective(d: Rows<'_>, (lambda, mu): (f64, f64), theta: &[f64], grad: &mut [f64]) -> f64 {
    let Rows { x, labels, rows, c } = d;
    grad.fill(0.0);
    let n = rows.len() as f64;
    let mut s = vec![0.0; c];
    let mut total = 0.0;
    let wlen = (c - 1) * c;
    for &i in rows {
        let xi = &x[i * c..(i + 1) * c];
        let y = labels[i] as usize;
        row_logits(theta, c, xi, &mut s);
        let (max, log_sum) = log_softmax_parts(&s);
        total += (max - s[y]) + log_sum;
        for j in 0..c - 1 {
            let r = (((s[j] - max) - log_sum).exp() - f64::from(u8::from(j == y))) / n;
            for (g, v) in grad[j * c..(j + 1) * c].iter_mut().zip(xi) {
                *g += r * v;
            }
            grad[wlen + j] += r;
        }
    }
    let mut penalty = 0.0;
    for j in 0..c - 1 {
        for l in 0..c {
            if l != j {
                let w = theta[j * c + l];
                penalty += lambda * w * w;
                grad[j * c + l] += 2.0 * lambda * w;
            }
        }
        let b = theta[wlen + j];
        penalty += mu * b * b;
        grad[wlen + j] += 2.0 * mu * b;
    }
    total / n + penalty
}

/// Largest |gradient| at θ.
fn gradient_norm(d: Rows<'_>, penalty: (f64, f64), theta: &[f64]) -> f64 {
    let mut g = vec![0.0; theta.len()];
    objective(d, penalty, theta, &mut g);
    g.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Newton steps from L-BFGS's end point, each kept only if it shrinks the gradient: L-BFGS
/// stops when the loss no longer changes in f64, with a gradient near 1e-9, and Newton's
/// quadratic convergence takes it to rounding. Up to `NEWTON_MAX_PARAMS` parameters (C ≤ 24),
/// where the Hessian is cheap.
fn newton_polish(d: Rows<'_>, (lambda, mu): (f64, f64), mut theta: Vec<f64>) -> Vec<f64> {
    let Rows { x, rows, c, .. } = d;
    const NEWTON_MAX_PARAMS: usize = 600;
    let p = theta.len();
    if p > NEWTON_MAX_PARAMS {
        return theta;
    }
    let width = c + 1; // inputs per row: ln p and 1
    let n = rows.len() as f64;
    let mut current = gradient_norm(d, (lambda, mu), &theta);
    let mut s = vec![0.0; c];
    let mut q = vec![0.0; c];
    let mut xi = vec![0.0; width];
    for _ in 0..8 {
        let mut g = vec![0.0; p];
        objective(d, (lambda, mu), &theta, &mut g);
        // Parameter (j, l) sits at j·C + l for l < C (W) and at (C − 1)·C + j for the bias.
        let at = |j: usize, l: usize| if l < c { j * c + l } else { (c - 1) * c + j };
        let mut h = vec![0.0; p * p];
        for &i in rows {
            xi[..c].copy_from_slice(&x[i * c..(i + 1) * c]);
            xi[c] = 1.0;
            row_logits(&theta, c, &xi[..c], &mut s);
            softmax_row(&s, &mut q);
            for j in 0..c - 1 {
                for jj in 0..c - 1 {
                    let w = q[j] * (f64::from(u8::from(j == jj)) - q[jj]) / n;
                    if w == 0.0 {
                        continue;
                    }
                    for l in 0..width {
                        let row = at(j, l) * p;
                        for ll in 0..width {
                            h[row + at(jj, ll)] += w * xi[l] * xi[ll];
                        }
                    }
                }
            }
        }
        for j in 0..c - 1 {
            for l in 0..c {
                if l != j {
                    h[at(j, l) * p + at(j, l)] += 2.0 * lambda;
                }
            }
            h[at(j, c) * p + at(j, c)] += 2.0 * mu;
        }
        let Some(step) = crate::logistic::solve(&h, &g, p) else {
            break;
        };
        let next: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t - s).collect();
        let norm = gradient_norm(d, (lambda, mu), &next);
        if norm.partial_cmp(&current) != Some(std::cmp::Ordering::Less) {
            break;
        }
        (theta, current) = (next, norm);
    }
    theta
}

/// θ fitted on `d` from the identity start (finished by Newton with `polish`).
fn fit_rows(cfg: &DirichletConfig, d: Rows<'_>, penalty: (f64, f64), polish: bool) -> Vec<f64> {
    let c = d.c;
    let mut theta0 = vec![0.0; (c - 1) * (c + 1)];
    for j in 0..c - 1 {
        theta0[j * c + j] = 1.0;
        theta0[j * c + c - 1] = -1.0;
    }
    let theta = lbfgs(
        theta0,
        |t, g| objective(d, penalty, t, g),
        cfg.gradient_tolerance,
        cfg.max_iterations,
    )
    .0;
    if polish {
        newton_polish(d, penalty, theta)
    } else {
        theta
    }
}

/// scikit-learn's `StratifiedKFold(n_splits, shuffle=False)` test fold of every row: classes
/// numbered by first appearance, each class's rows dealt to the folds in blocks whose sizes come
/// from dealing the sorted class numbers round robin.
fn stratified_folds(labels: &[i64], folds: usize) -> Vec<usize> {
    let mut order: Vec<i64> = Vec::new();
    for &y in labels {
        if !order.contains(&y) {
            order.push(y);
        }
    }
    let encoded: Vec<usize> = labels
        .iter()
        .map(|y| order.iter().position(|o| o == y).unwrap_or(0))
        .collect();
    let k = order.len();
    let mut sorted = encoded.clone();
    sorted.sort_unstable();
    // allocation[f][class]: how many of the class's rows fold f tests.
    let mut allocation = vec![vec![0usize; k]; folds];
    for (i, &cls) in sorted.iter().enumerate() {
        allocation[i % folds][cls] += 1;
    }
    let mut next = vec![(0usize, 0usize); k]; // (fold, rows given to it) per class
    encoded
        .iter()
        .map(|&cls| {
            let (f, used) = &mut next[cls];
            while allocation[*f][cls] == *used {
                *f += 1;
                *used = 0;
            }
            *used += 1;
            *f
        })
        .collect()
}

/// A fitted Dirichlet calibrator.
#[derive(Debug, Clone, PartialEq)]
pub struct DirichletHead {
    /// [W | b] rows j < C − 1 (θ layout: W row-major, then b); the last row is zero.
    theta: Vec<f64>,
    num_classes: usize,
    lambda: f64,
    mu: f64,
    /// The cross-validated mean NLL of every (λ, μ), in grid order (empty without a search).
    cv: Vec<(f64, f64, f64)>,
}

impl DirichletHead {
    /// Chooses (λ, μ) by cross-validation on `split` (when the grid has more than one pair) and
    /// fits on all of it.
    ///
    /// # Errors
    /// An invalid configuration, an empty split, or a class with fewer rows than folds when
    /// cross-validating.
    pub fn fit(cfg: &DirichletConfig, split: &SplitData) -> Result<Self, HeadError> {
        cfg.validate()?;
        if split.n() == 0 {
            return Err(HeadError::fit(NAME, "the fit split is empty"));
        }
        let c = split.num_classes();
        let x = log_probs(split);
        let labels = &split.labels;
        let all: Vec<usize> = (0..split.n()).collect();
        let grid: Vec<(f64, f64)> = cfg
            .lambdas
            .iter()
            .flat_map(|&l| cfg.mus.iter().map(move |&m| (l, m)))
            .collect();
        let mut cv = Vec::new();
        let (lambda, mu) = if grid.len() == 1 {
            grid[0]
        } else {
            let test_fold = stratified_folds(labels, cfg.folds);
            let mut counts = std::collections::BTreeMap::new();
            for &y in labels {
                *counts.entry(y).or_insert(0usize) += 1;
            }
            if counts.values().all(|&n| n < cfg.folds) {
                return Err(HeadError::fit(
                    NAME,
                    format!("{} folds need at least that many fit rows of some class", cfg.folds),
                ));
            }
            let mut best = (f64::INFINITY, grid[0]);
            for &(l, m) in &grid {
                let mut sum = 0.0;
                for f in 0..cfg.folds {
                    let (test, train): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| test_fold[i] == f);
                    if test.is_empty() || train.is_empty() {
                        return Err(HeadError::fit(NAME, format!("fold {f} of {} is empty", cfg.folds)));
                    }
                    let rows = |r| Rows {
                        x: &x,
                        labels,
                        rows: r,
                        c,
                    };
                    // The folds' fits only rank the pairs: L-BFGS's end point scores them to
                    // about 1e-18, and the Newton polish is kept for the final fit.
                    let theta = fit_rows(cfg, rows(&train), (l, m), false);
                    let mut g = vec![0.0; theta.len()];
                    sum += objective(rows(&test), (0.0, 0.0), &theta, &mut g);
                }
                let score = sum / cfg.folds as f64;
                cv.push((l, m, score));
                if score < best.0 {
                    best = (score, (l, m));
                }
            }
            best.1
        };
        let theta = fit_rows(
            cfg,
            Rows {
                x: &x,
                labels,
                rows: &all,
                c,
            },
            (lambda, mu),
            true,
        );
        Ok(Self {
            theta,
            num_classes: c,
            lambda,
            mu,
            cv,
        })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let c = self.num_classes;
        check_classes(NAME, split, c)?;
        let x = log_probs(split);
        let mut out = vec![0.0; split.n() * c];
        let mut s = vec![0.0; c];
        for (xi, oi) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            row_logits(&self.theta, c, xi, &mut s);
            softmax_row(&s, oi);
        }
        Ok(out)
    }

    /// W (C × C, row-major, last row zero) and b (C, last zero).
    fn weights(&self) -> (Vec<f64>, Vec<f64>) {
        let c = self.num_classes;
        let (w, b) = self.theta.split_at((c - 1) * c);
        let mut weight = w.to_vec();
        weight.extend(std::iter::repeat_n(0.0, c));
        let mut bias = b.to_vec();
        bias.push(0.0);
        (weight, bias)
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            weight: Vec<f64>,
            bias: Vec<f64>,
            lambda: f64,
            mu: f64,
        }
        let s: Saved = parse_json(dir, text)?;
        let c = s.bias.len();
        let bad = |reason: &str| HeadError::Meta {
            path: dir.join("head.json"),
            reason: reason.into(),
        };
        if c < 2 || s.weight.len() != c * c {
            return Err(bad("weight must be C × C and bias have C entries, C ≥ 2"));
        }
        if s.weight[(c - 1) * c..].iter().any(|&v| v != 0.0) || s.bias[c - 1] != 0.0 {
            return Err(bad("the last row of weight and the last bias must be 0"));
        }
        let mut theta = s.weight[..(c - 1) * c].to_vec();
        theta.extend_from_slice(&s.bias[..c - 1]);
        Ok(Self {
            theta,
            num_classes: c,
            lambda: s.lambda,
            mu: s.mu,
            cv: Vec::new(),
        })
    }
}

impl Head for DirichletHead {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        Ok(score_rows(BuiltinScore::Sr, &self.calibrated(split)?, self.num_classes))
    }

    fn probabilities(&self, split: &SplitData) -> Option<Result<Vec<f64>, HeadError>> {
        Some(self.calibrated(split))
    }

    fn summary(&self) -> serde_json::Value {
        let (weight, bias) = self.weights();
        let cv: Vec<serde_json::Value> = self
            .cv
            .iter()
            .map(|(l, m, s)| json!({"lambda": l, "mu": m, "cv_nll": s}))
            .collect();
        json!({"lambda": self.lambda, "mu": self.mu, "weight": weight, "bias": bias, "cv": cv})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let (weight, bias) = self.weights();
        write_json(
            dir,
            &json!({"head": NAME, "lambda": self.lambda, "mu": self.mu, "weight": weight, "bias": bias}),
        )
    }
}
