//! Heads that need no training loop: the built-in scores, temperature scaling and vector
//! scaling (spec §5A), all in f64.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use ueb_metrics::{BuiltinScore, log_softmax_parts, softmax_row};

use crate::error::HeadError;
use crate::head::{Head, check_classes, parse_json, write_json};
use ueb_cache::SplitData;

/// `sr`, `entropy` or `margin` of the model's own probabilities: nothing to fit.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinHead {
    score: BuiltinScore,
}

impl BuiltinHead {
    /// The head for one built-in score.
    pub fn new(score: BuiltinScore) -> Self {
        Self { score }
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            head: String,
        }
        let saved: Saved = parse_json(dir, text)?;
        let score = BuiltinScore::ALL
            .into_iter()
            .find(|s| s.name() == saved.head)
            .ok_or_else(|| HeadError::Meta {
                path: dir.join("head.json"),
                reason: format!("`{}` is not a built-in score", saved.head),
            })?;
        Ok(Self { score })
    }
}

/// The score of each row of row-major probabilities.
pub(crate) fn score_rows(score: BuiltinScore, probs: &[f64], c: usize) -> Vec<f64> {
    probs.chunks_exact(c).map(|p| score.of_row(p)).collect()
}

/// Values (rows × classes) from which the per-row softmax work is split between the rayon
/// pool's threads: its libm `exp` calls are most of it (128 rows × 20 classes are ~5 000 calls;
/// measured: `docs/performance-log.md`).
const PARALLEL_VALUES: usize = 1 << 11;

/// `f` on runs of whole rows of the row-major `z` `[n, c]`, the outputs concatenated in order; a
/// row's numbers do not depend on the run it falls in. Each run first clears the upper vector
/// state, which a faer product may have left dirty on its thread (decision H12).
fn by_rows(z: &[f64], c: usize, f: impl Fn(&[f64]) -> Vec<f64> + Sync) -> Vec<f64> {
    use rayon::prelude::*;
    let run = |z: &[f64]| {
        ueb_kernels::clear_upper_state();
        f(z)
    };
    let threads = ueb_kernels::threads();
    if z.len() < PARALLEL_VALUES || threads == 1 {
        return run(z);
    }
    let rows = (z.len() / c.max(1)).div_ceil(threads);
    z.par_chunks(rows * c.max(1)).map(run).collect::<Vec<_>>().concat()
}

impl Head for BuiltinHead {
    fn name(&self) -> &'static str {
        self.score.name()
    }

    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        // `SplitData::probs` and the score, a run of rows at a time (see `by_rows`).
        let c = split.num_classes();
        Ok(by_rows(&split.logits_f64(), c, |z| {
            let mut p = vec![0.0; z.len()];
            ueb_metrics::softmax_rows(z, c, &mut p);
            score_rows(self.score, &p, c)
        }))
    }

    fn summary(&self) -> serde_json::Value {
        json!({})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(dir, &json!({"head": self.score.name()}))
    }
}

/// Softmax of `z/T` (or of any per-class affine map) into `out`, row by row.
fn scaled_softmax(z: &[f64], c: usize, map: impl Fn(usize, f64) -> f64, out: &mut Vec<f64>) {
    out.clear();
    out.resize(z.len(), 0.0);
    let mut row = vec![0.0; c];
    for (zi, oi) in z.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        for (k, r) in row.iter_mut().enumerate() {
            *r = map(k, zi[k]);
        }
        softmax_row(&row, oi);
    }
}

/// Settings of temperature scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemperatureConfig {
    /// Search interval of T (log-uniform).
    pub min_temperature: f64,
    /// Upper end of the search interval.
    pub max_temperature: f64,
    /// Stop when the bracket on log T is narrower than this.
    pub tolerance: f64,
}

impl TemperatureConfig {
    /// Checks `0 < min_temperature < max_temperature < ∞` and a positive tolerance.
    ///
    /// # Errors
    /// [`HeadError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), HeadError> {
        self.check("temperature")
    }

    /// [`TemperatureConfig::validate`] for the head `head` that searches with these settings.
    pub(crate) fn check(&self, head: &str) -> Result<(), HeadError> {
        let (lo, hi) = (self.min_temperature, self.max_temperature);
        if !(lo > 0.0 && hi > lo && hi.is_finite()) {
            return Err(HeadError::config(
                head,
                format!("need 0 < min_temperature < max_temperature < ∞, got {lo} and {hi}"),
            ));
        }
        if self.tolerance.is_nan() || self.tolerance <= 0.0 {
            return Err(HeadError::config(
                head,
                format!("tolerance must be positive, got {}", self.tolerance),
            ));
        }
        Ok(())
    }
}

impl Default for TemperatureConfig {
    fn default() -> Self {
        Self {
            min_temperature: 1e-2,
            max_temperature: 1e2,
            tolerance: 1e-6,
        }
    }
}

/// Mean NLL of softmax(z/T) against `labels`.
fn nll_at(z: &[f64], labels: &[i64], c: usize, t: f64) -> f64 {
    let mut row = vec![0.0; c];
    let mut total = 0.0;
    for (zi, &y) in z.chunks_exact(c).zip(labels) {
        for (r, &v) in row.iter_mut().zip(zi) {
            *r = v / t;
        }
        let (max, log_sum) = log_softmax_parts(&row);
        total += (max - row[y as usize]) + log_sum;
    }
    total / labels.len() as f64
}

/// Golden-section search of `f` over log T in the configured interval. Cross-entropy against fixed
/// targets (the NLL, or a KL to reference probabilities) is convex in 1/T, hence unimodal in log T: the search finds the minimum.
pub(crate) fn minimise_log_t(cfg: &TemperatureConfig, f: impl Fn(f64) -> f64) -> f64 {
    let (mut a, mut b) = (cfg.min_temperature.ln(), cfg.max_temperature.ln());
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut x1, mut x2) = (b - inv_phi * (b - a), a + inv_phi * (b - a));
    let (mut f1, mut f2) = (f(x1), f(x2));
    while b - a > cfg.tolerance {
        if f1 <= f2 {
            b = x2;
            (x2, f2) = (x1, f1);
            x1 = b - inv_phi * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            (x1, f1) = (x2, f2);
            x2 = a + inv_phi * (b - a);
            f2 = f(x2);
        }
    }
    0.5 * (a + b)
}

/// Temperature scaling (Guo et al. 2017): one T minimising the NLL of softmax(z/T) on the fit
/// split; `u = 1 − max softmax(z/T)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureHead {
    /// The fitted temperature.
    pub temperature: f64,
    /// NLL on the fit split at T = 1 and at the fitted T.
    nll: (f64, f64),
    /// Whether the optimum sits on the search interval's edge.
    at_bound: bool,
    num_classes: usize,
}

impl TemperatureHead {
    /// Fits T on `split` by golden-section search over log T. The NLL is convex in 1/T, hence
    /// unimodal in log T, so the search finds the global minimum in the interval.
    ///
    /// # Errors
    /// An invalid interval or tolerance, or an empty split.
    pub fn fit(cfg: &TemperatureConfig, split: &SplitData) -> Result<Self, HeadError> {
        cfg.validate()?;
        if split.n() == 0 {
            return Err(HeadError::fit("temperature", "the fit split is empty"));
        }
        let (c, z) = (split.num_classes(), split.logits_f64());
        let f = |log_t: f64| nll_at(&z, &split.labels, c, log_t.exp());
        let log_t = minimise_log_t(cfg, f);
        let at_bound = log_t - cfg.min_temperature.ln() < 2.0 * cfg.tolerance
            || cfg.max_temperature.ln() - log_t < 2.0 * cfg.tolerance;
        Ok(Self {
            temperature: log_t.exp(),
            nll: (f(0.0), f(log_t)),
            at_bound,
            num_classes: c,
        })
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            temperature: f64,
            num_classes: usize,
        }
        let s: Saved = parse_json(dir, text)?;
        Ok(Self {
            temperature: s.temperature,
            nll: (f64::NAN, f64::NAN),
            at_bound: false,
            num_classes: s.num_classes,
        })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes("temperature", split, self.num_classes)?;
        let (c, t) = (self.num_classes, self.temperature);
        Ok(by_rows(&split.logits_f64(), c, |z| {
            let mut p = Vec::new();
            scaled_softmax(z, c, |_, v| v / t, &mut p);
            p
        }))
    }
}

impl Head for TemperatureHead {
    fn name(&self) -> &'static str {
        "temperature"
    }

    calibrated_outputs!(num_classes);

    fn summary(&self) -> serde_json::Value {
        json!({"temperature": self.temperature, "fit_nll_at_t1": self.nll.0, "fit_nll": self.nll.1, "at_search_bound": self.at_bound})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(
            dir,
            &json!({"head": "temperature", "temperature": self.temperature, "num_classes": self.num_classes}),
        )
    }
}

/// Settings of vector scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorScalingConfig {
    /// Stop when the gradient's max-norm falls below this.
    pub gradient_tolerance: f64,
    /// Iteration limit of L-BFGS.
    pub max_iterations: usize,
}

impl VectorScalingConfig {
    /// Checks a positive tolerance and iteration limit.
    ///
    /// # Errors
    /// [`HeadError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), HeadError> {
        self.check("vector_scaling")
    }

    /// [`VectorScalingConfig::validate`] for the head `head` that fits with these settings.
    pub(crate) fn check(&self, head: &str) -> Result<(), HeadError> {
        if self.gradient_tolerance.is_nan() || self.gradient_tolerance <= 0.0 || self.max_iterations == 0 {
            return Err(HeadError::config(
                head,
                format!(
                    "gradient_tolerance ({}) and max_iterations ({}) must be positive",
                    self.gradient_tolerance, self.max_iterations
                ),
            ));
        }
        Ok(())
    }
}

impl Default for VectorScalingConfig {
    fn default() -> Self {
        Self {
            gradient_tolerance: 1e-9,
            max_iterations: 1000,
        }
    }
}

/// Vector scaling: softmax(v ⊙ z + b) with per-class v, b minimising the NLL on the fit split
/// (L-BFGS from v = 1, b = 0); `u = 1 − max` of the calibrated probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorScalingHead {
    /// Per-class scale v.
    pub scale: Vec<f64>,
    /// Per-class bias b.
    pub bias: Vec<f64>,
    iterations: usize,
    nll: f64,
}

/// NLL and gradient of vector scaling at θ = (v, b).
fn vs_objective(z: &[f64], labels: &[i64], c: usize, theta: &[f64], grad: &mut [f64]) -> f64 {
    grad.fill(0.0);
    let (v, b) = theta.split_at(c);
    let n = labels.len() as f64;
    let mut row = vec![0.0; c];
    let mut total = 0.0;
    for (zi, &y) in z.chunks_exact(c).zip(labels) {
        for k in 0..c {
            row[k] = v[k] * zi[k] + b[k];
        }
        let (max, log_sum) = log_softmax_parts(&row);
        total += (max - row[y as usize]) + log_sum;
        for k in 0..c {
            let r = ((row[k] - max) - log_sum).exp() - f64::from(u8::from(k == y as usize));
            grad[k] += r * zi[k] / n;
            grad[c + k] += r / n;
        }
    }
    total / n
}

/// Limited-memory BFGS with a backtracking (Armijo) line search; returns (θ, iterations, f).
pub(crate) fn lbfgs(
    mut theta: Vec<f64>,
    f: impl Fn(&[f64], &mut [f64]) -> f64,
    tol: f64,
    max_iter: usize,
) -> (Vec<f64>, usize, f64) {
    const MEMORY: usize = 10;
    let m = theta.len();
    let mut g = vec![0.0; m];
    let mut fx = f(&theta, &mut g);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new(); // (s, y, 1/(yᵀs))
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut iter = 0;
    while iter < max_iter && g.iter().fold(0.0f64, |a, v| a.max(v.abs())) > tol {
        iter += 1;
        // Two-loop recursion: d = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.last() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|qi| *qi *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature information went stale): steepest descent.
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
            history.clear();
        }
        let mut step = 1.0;
        let mut g_new = vec![0.0; m];
        let (theta_new, f_new) = loop {
            let cand: Vec<f64> = theta.iter().zip(&d).map(|(t, di)| t + step * di).collect();
            let f_cand = f(&cand, &mut g_new);
            if f_cand <= fx + 1e-4 * step * slope || step < 1e-20 {
                break (cand, f_cand);
            }
            step *= 0.5;
        };
        let s: Vec<f64> = theta_new.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let ys = dot(&y, &s);
        if ys > 1e-300 {
            if history.len() == MEMORY {
                history.remove(0);
            }
            history.push((s, y, 1.0 / ys));
        }
        let converged = (fx - f_new).abs() <= 1e-16 * fx.abs().max(1.0);
        theta = theta_new;
        fx = f_new;
        g = g_new;
        if converged {
            break;
        }
    }
    (theta, iter, fx)
}

impl VectorScalingHead {
    /// Fits v and b on `split`.
    ///
    /// # Errors
    /// An empty split or an invalid configuration.
    pub fn fit(cfg: &VectorScalingConfig, split: &SplitData) -> Result<Self, HeadError> {
        if split.n() == 0 {
            return Err(HeadError::fit("vector_scaling", "the fit split is empty"));
        }
        cfg.validate()?;
        let (c, z) = (split.num_classes(), split.logits_f64());
        let theta0: Vec<f64> = std::iter::repeat_n(1.0, c).chain(std::iter::repeat_n(0.0, c)).collect();
        let (theta, iterations, nll) = lbfgs(
            theta0,
            |t, g| vs_objective(&z, &split.labels, c, t, g),
            cfg.gradient_tolerance,
            cfg.max_iterations,
        );
        Ok(Self {
            scale: theta[..c].to_vec(),
            bias: theta[c..].to_vec(),
            iterations,
            nll,
        })
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            scale: Vec<f64>,
            bias: Vec<f64>,
        }
        let s: Saved = parse_json(dir, text)?;
        if s.scale.len() != s.bias.len() || s.scale.len() < 2 {
            return Err(HeadError::Meta {
                path: dir.join("head.json"),
                reason: "scale and bias must have one entry per class".into(),
            });
        }
        Ok(Self {
            scale: s.scale,
            bias: s.bias,
            iterations: 0,
            nll: f64::NAN,
        })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes("vector_scaling", split, self.scale.len())?;
        let c = self.scale.len();
        Ok(by_rows(&split.logits_f64(), c, |z| {
            let mut p = Vec::new();
            scaled_softmax(z, c, |k, v| self.scale[k] * v + self.bias[k], &mut p);
            p
        }))
    }
}

impl Head for VectorScalingHead {
    fn name(&self) -> &'static str {
        "vector_scaling"
    }

    calibrated_outputs!(scale.len());

    fn summary(&self) -> serde_json::Value {
        json!({"scale": self.scale, "bias": self.bias, "iterations": self.iterations, "fit_nll": self.nll})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(
            dir,
            &json!({"head": "vector_scaling", "scale": self.scale, "bias": self.bias}),
        )
    }
}

/// Matrix scaling: `softmax(W z + b)` with a full `C × C` matrix `W` and bias `b` minimising
/// the NLL of the fit split (L-BFGS from `W = I`, `b = 0`), the unpenalised multinomial
/// logistic regression on the logits. Settings as vector scaling's.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixScalingHead {
    /// `W`, row-major `[C, C]`: row k maps the logits to class k's new logit.
    pub weight: Vec<f64>,
    /// `b`.
    pub bias: Vec<f64>,
    iterations: usize,
    nll: f64,
}

/// NLL and gradient of matrix scaling at θ = (W row-major, b).
fn ms_objective(z: &[f64], labels: &[i64], c: usize, theta: &[f64], grad: &mut [f64]) -> f64 {
    grad.fill(0.0);
    let (w, b) = theta.split_at(c * c);
    let n = labels.len() as f64;
    let mut row = vec![0.0; c];
    let mut total = 0.0;
    for (zi, &y) in z.chunks_exact(c).zip(labels) {
        for k in 0..c {
            row[k] = b[k] + w[k * c..(k + 1) * c].iter().zip(zi).map(|(a, x)| a * x).sum::<f64>();
        }
        let (max, log_sum) = log_softmax_parts(&row);
        total += (max - row[y as usize]) + log_sum;
        for k in 0..c {
            let r = ((row[k] - max) - log_sum).exp() - f64::from(u8::from(k == y as usize));
            for j in 0..c {
                grad[k * c + j] += r * zi[j] / n;
            }
            grad[c * c + k] += r / n;
        }
    }
    total / n
}

impl MatrixScalingHead {
    /// Fits W and b on `split`.
    ///
    /// # Errors
    /// An empty split or an invalid configuration.
    pub fn fit(cfg: &VectorScalingConfig, split: &SplitData) -> Result<Self, HeadError> {
        if split.n() == 0 {
            return Err(HeadError::fit("matrix_scaling", "the fit split is empty"));
        }
        cfg.check("matrix_scaling")?;
        let (c, z) = (split.num_classes(), split.logits_f64());
        let mut theta0 = vec![0.0; c * c + c];
        for k in 0..c {
            theta0[k * c + k] = 1.0;
        }
        let (theta, iterations, nll) = lbfgs(
            theta0,
            |t, g| ms_objective(&z, &split.labels, c, t, g),
            cfg.gradient_tolerance,
            cfg.max_iterations,
        );
        Ok(Self {
            weight: theta[..c * c].to_vec(),
            bias: theta[c * c..].to_vec(),
            iterations,
            nll,
        })
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            weight: Vec<f64>,
            bias: Vec<f64>,
        }
        let s: Saved = parse_json(dir, text)?;
        let c = s.bias.len();
        if c < 2 || s.weight.len() != c * c {
            return Err(HeadError::Meta {
                path: dir.join("head.json"),
                reason: "weight must be C × C and bias have C entries, C ≥ 2".into(),
            });
        }
        Ok(Self {
            weight: s.weight,
            bias: s.bias,
            iterations: 0,
            nll: f64::NAN,
        })
    }

    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let c = self.bias.len();
        check_classes("matrix_scaling", split, c)?;
        let mut out = vec![0.0; split.n() * c];
        let mut row = vec![0.0; c];
        for (zi, oi) in split.logits_f64().chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            for ((r, b), w) in row.iter_mut().zip(&self.bias).zip(self.weight.chunks_exact(c)) {
                *r = b + w.iter().zip(zi).map(|(a, x)| a * x).sum::<f64>();
            }
            softmax_row(&row, oi);
        }
        Ok(out)
    }
}

impl Head for MatrixScalingHead {
    fn name(&self) -> &'static str {
        "matrix_scaling"
    }

    calibrated_outputs!(bias.len());

    fn summary(&self) -> serde_json::Value {
        json!({"weight": self.weight, "bias": self.bias, "iterations": self.iterations, "fit_nll": self.nll})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(
            dir,
            &json!({"head": "matrix_scaling", "weight": self.weight, "bias": self.bias}),
        )
    }
}
