//! `dirichlet`: Dirichlet calibration with off-diagonal and intercept regularisation (ODIR;
//! Kull et al. 2019), as the authors' `dirichletcal` package fits it
//! (`FullDirichletCalibrator(reg_lambda=λ, reg_mu=μ)`), with λ and μ chosen by stratified k-fold
//! cross-validation on the fit split.
//!
//! p̂ = softmax(W·ln p + b) over the softmax probabilities p (clipped below at the smallest
//! normal f64 before the log). As in dirichletcal, the last row of [W | b] is held at zero (the
//! model is unchanged by subtracting one row from all; the identity start becomes
//! W_j = e_j − e_C), and (W, b) minimise the mean NLL of the fit rows plus
//! λ·Σ_{j≠l} W_jl² + μ·Σ_j b_j² on that representation, from that identity start, by Newton's
//! method (L-BFGS beyond 36 classes, as dirichletcal switches).
//!
//! With more than one candidate (λ, μ), each is scored by the mean over folds of the held-out
//! mean NLL, folds made as scikit-learn's `StratifiedKFold(n_splits, shuffle=False)` makes them
//! (`GridSearchCV(scoring="neg_log_loss")`); the first best in grid order (λ outer, μ inner)
//! wins, and the model is refitted on every fit row with it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use ueb_cache::SplitData;
use ueb_metrics::{log_softmax_parts, softmax_row};

use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ueb_kernels::gemm::{Operand, matmul};

use crate::classical::lbfgs;
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
    /// Stop when the gradient's max-norm falls below this.
    pub gradient_tolerance: f64,
    /// Iteration limit (Newton's; L-BFGS's beyond 36 classes).
    pub max_iterations: usize,
}

impl Default for DirichletConfig {
    fn default() -> Self {
        let grid = vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        Self {
            lambdas: grid.clone(),
            mus: grid,
            folds: 5,
            gradient_tolerance: 1e-12,
            max_iterations: 200,
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

/// The logits of one row: rows j < C − 1 of [W | b] (θ row j at j·(C + 1): W_j, then b_j),
/// the last 0.
fn row_logits(theta: &[f64], c: usize, x: &[f64], out: &mut [f64]) {
    for (j, o) in out.iter_mut().enumerate().take(c - 1) {
        let r = &theta[j * (c + 1)..(j + 1) * (c + 1)];
        *o = r[c] + r[..c].iter().zip(x).map(|(a, v)| a * v).sum::<f64>();
    }
    out[c - 1] = 0.0;
}

/// Whether θ's entry (j, l) is penalised, and by which weight: W_jl off the diagonal by λ, b_j
/// by μ.
fn penalty_weight(c: usize, (lambda, mu): (f64, f64), j: usize, l: usize) -> f64 {
    if l == c {
        mu
    } else if l != j {
        lambda
    } else {
        0.0
    }
}

/// Mean NLL plus the ODIR penalty, and its gradient, at θ.
fn objective(d: Rows<'_>, penalty: (f64, f64), theta: &[f64], grad: &mut [f64]) -> f64 {
    let Rows { x, labels, rows, c } = d;
    grad.fill(0.0);
    let n = rows.len() as f64;
    let w = c + 1;
    let mut s = vec![0.0; c];
    let mut total = 0.0;
    for &i in rows {
        let xi = &x[i * c..(i + 1) * c];
        let y = labels[i] as usize;
        row_logits(theta, c, xi, &mut s);
        let (max, log_sum) = log_softmax_parts(&s);
        total += (max - s[y]) + log_sum;
        for j in 0..c - 1 {
            let r = (((s[j] - max) - log_sum).exp() - f64::from(u8::from(j == y))) / n;
            let g = &mut grad[j * w..(j + 1) * w];
            for (gl, v) in g.iter_mut().zip(xi) {
                *gl += r * v;
            }
            g[c] += r;
        }
    }
    let mut pen = 0.0;
    for j in 0..c - 1 {
        for l in 0..w {
            let k = penalty_weight(c, penalty, j, l);
            let t = theta[j * w + l];
            pen += k * t * t;
            grad[j * w + l] += 2.0 * k * t;
        }
    }
    total / n + pen
}

/// The Hessian of [`objective`] at θ, `[P, P]` row-major (P = (C − 1)(C + 1)): with xᵢ = (ln pᵢ, 1)
/// and qᵢ the model's probabilities, (1/n)·Σᵢ (diag(qᵢ) − qᵢqᵢᵀ) ⊗ xᵢxᵢᵀ over the first C − 1
/// classes, plus twice the penalty weights on the diagonal. Both sums are matrix products: the
/// block-diagonal part Xᵀ diag(q_j) X per class, the rest Zᵀ Z with Zᵢ = qᵢ ⊗ xᵢ.
fn hessian(d: Rows<'_>, penalty: (f64, f64), theta: &[f64]) -> Result<Vec<f64>, HeadError> {
    let Rows { x, rows, c, .. } = d;
    let (n, w) = (rows.len(), c + 1);
    let p = (c - 1) * w;
    let mut xs = vec![0.0; n * w]; // xᵢ rows
    let mut z = vec![0.0; n * p]; // qᵢ ⊗ xᵢ rows
    let mut qx = vec![0.0; n * w * (c - 1)]; // per class j: q_ij·xᵢ rows, class-major
    let mut s = vec![0.0; c];
    let mut q = vec![0.0; c];
    for (r, &i) in rows.iter().enumerate() {
        let xi = &mut xs[r * w..(r + 1) * w];
        xi[..c].copy_from_slice(&x[i * c..(i + 1) * c]);
        xi[c] = 1.0;
        row_logits(theta, c, &xi[..c], &mut s);
        softmax_row(&s, &mut q);
        for j in 0..c - 1 {
            for l in 0..w {
                let v = q[j] * xi[l];
                z[r * p + j * w + l] = v;
                qx[(j * n + r) * w + l] = v;
            }
        }
    }
    let shape = |e: ueb_kernels::gemm::ShapeError| HeadError::fit(NAME, format!("Hessian product: {e:?}"));
    let mut h = vec![0.0; p * p];
    // −Zᵀ Z.
    matmul(
        &mut h,
        p,
        Operand::rows(&z, n, p, p).t(),
        Operand::rows(&z, n, p, p),
        -1.0 / n as f64,
        false,
        n * p * p >= 1 << 22,
    )
    .map_err(shape)?;
    // + Xᵀ diag(q_j) X on the diagonal blocks.
    let mut block = vec![0.0; w * w];
    for j in 0..c - 1 {
        matmul(
            &mut block,
            w,
            Operand::rows(&xs, n, w, w).t(),
            Operand::rows(&qx[j * n * w..(j + 1) * n * w], n, w, w),
            1.0 / n as f64,
            false,
            false,
        )
        .map_err(shape)?;
        for a in 0..w {
            let row = (j * w + a) * p + j * w;
            for (hv, bv) in h[row..row + w].iter_mut().zip(&block[a * w..(a + 1) * w]) {
                *hv += bv;
            }
        }
        for l in 0..w {
            let at = j * w + l;
            h[at * p + at] += 2.0 * penalty_weight(c, penalty, j, l);
        }
    }
    Ok(h)
}

/// Solves H·δ = g: Cholesky when H is positive definite, else LU with partial pivoting;
/// `None` when neither gives a finite step.
fn newton_step(h: Vec<f64>, g: &[f64]) -> Option<Vec<f64>> {
    let p = g.len();
    let hm = Mat::from_fn(p, p, |a, b| h[a * p + b]);
    let gm = Mat::from_fn(p, 1, |a, _| g[a]);
    let sol = match hm.llt(Side::Lower) {
        Ok(llt) => llt.solve(&gm),
        Err(_) => hm.partial_piv_lu().solve(&gm),
    };
    let step: Vec<f64> = (0..p).map(|a| sol[(a, 0)]).collect();
    step.iter().all(|v| v.is_finite()).then_some(step)
}

/// Classes up to which the fit is Newton's method (P ≤ 36·37 parameters, as dirichletcal
/// chooses); beyond, L-BFGS.
const NEWTON_MAX_CLASSES: usize = 36;

/// θ fitted on `d` from the identity start (or `start`: the problem is convex, so where it
/// starts changes only how many steps it takes): Newton's method with a backtracking line search
/// (the full step inside the quadratic region, where a line search cannot see the loss's
/// decrease below its rounding), or L-BFGS above [`NEWTON_MAX_CLASSES`].
fn fit_rows(
    cfg: &DirichletConfig,
    d: Rows<'_>,
    penalty: (f64, f64),
    start: Option<&[f64]>,
) -> Result<Vec<f64>, HeadError> {
    let c = d.c;
    let w = c + 1;
    let mut theta = vec![0.0; (c - 1) * w];
    for j in 0..c - 1 {
        theta[j * w + j] = 1.0;
        theta[j * w + c - 1] = -1.0;
    }
    if let Some(start) = start {
        theta.copy_from_slice(start);
    }
    if c > NEWTON_MAX_CLASSES {
        return Ok(lbfgs(
            theta,
            |t, g| objective(d, penalty, t, g),
            cfg.gradient_tolerance,
            cfg.max_iterations,
        )
        .0);
    }
    let mut g = vec![0.0; theta.len()];
    let mut current = objective(d, penalty, &theta, &mut g);
    let mut scratch = vec![0.0; theta.len()];
    for _ in 0..cfg.max_iterations {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= cfg.gradient_tolerance {
            break;
        }
        let Some(step) = newton_step(hessian(d, penalty, &theta)?, &g) else {
            break;
        };
        let decrement: f64 = g.iter().zip(&step).map(|(a, b)| a * b).sum();
        let mut t = 1.0;
        let accepted = loop {
            let next: Vec<f64> = theta.iter().zip(&step).map(|(a, b)| a - t * b).collect();
            let l = objective(d, penalty, &next, &mut scratch);
            if decrement.abs() < 1e-10 || l <= current - 1e-4 * t * decrement {
                break Some((next, l));
            }
            t *= 0.5;
            if t < 1e-10 {
                break None;
            }
        };
        let Some((next, l)) = accepted else {
            break;
        };
        let before = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        theta = next;
        current = l;
        std::mem::swap(&mut g, &mut scratch);
        // In the quadratic region a step that no longer shrinks the gradient is at rounding.
        if decrement.abs() < 1e-10 && g.iter().fold(0.0f64, |m, v| m.max(v.abs())) >= before {
            break;
        }
    }
    Ok(theta)
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
    /// [W | b] rows j < C − 1, each W_j then b_j; the last row is zero.
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
            // (test rows, train rows) of every fold, made once for the whole grid.
            let mut folds = Vec::with_capacity(cfg.folds);
            for f in 0..cfg.folds {
                let (test, train): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| test_fold[i] == f);
                if test.is_empty() || train.is_empty() {
                    return Err(HeadError::fit(NAME, format!("fold {f} of {} is empty", cfg.folds)));
                }
                folds.push((test, train));
            }
            let rows = |r| Rows {
                x: &x,
                labels,
                rows: r,
                c,
            };
            let mut best = (f64::INFINITY, grid[0]);
            // Each fold's fit starts from its fit of the previous pair, a few Newton steps away.
            let mut last: Vec<Option<Vec<f64>>> = vec![None; cfg.folds];
            for &(l, m) in &grid {
                let mut sum = 0.0;
                for ((test, train), last) in folds.iter().zip(last.iter_mut()) {
                    let theta = fit_rows(cfg, rows(train), (l, m), last.as_deref())?;
                    let mut g = vec![0.0; theta.len()];
                    sum += objective(rows(test), (0.0, 0.0), &theta, &mut g);
                    *last = Some(theta);
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
            None,
        )?;
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
        let mut weight = Vec::with_capacity(c * c);
        let mut bias = Vec::with_capacity(c);
        for row in self.theta.chunks_exact(c + 1) {
            weight.extend_from_slice(&row[..c]);
            bias.push(row[c]);
        }
        weight.extend(std::iter::repeat_n(0.0, c));
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
        let theta: Vec<f64> = (0..c - 1)
            .flat_map(|j| s.weight[j * c..(j + 1) * c].iter().copied().chain([s.bias[j]]))
            .collect();
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

    calibrated_outputs!(num_classes);

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
