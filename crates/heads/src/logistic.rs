//! Binary logistic regression on a few features, solved by Newton's method to rounding: the
//! fit under Platt and beta calibration.
//!
//! The loss is Σᵢ [tᵢ·softplus(−rᵢ) + (1 − tᵢ)·softplus(rᵢ)] + (λ/2)‖w‖², rᵢ = w·xᵢ + c, with
//! targets tᵢ in [0, 1] (Platt's are smoothed) and the intercept c unpenalised, which is
//! scikit-learn's `LogisticRegression` objective with λ = 1/C. It is convex; Newton's method with
//! a backtracking line search reaches the optimum to rounding, where scikit-learn's L-BFGS stops
//! at its tolerance.

/// ln(1 + eˣ) without overflow.
pub(crate) fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// 1 / (1 + e⁻ˣ) without overflow.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A fitted model: P(t = 1 | x) = σ(w·x + c).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logistic {
    pub w: Vec<f64>,
    pub c: f64,
}

/// Fits `x` (`[n, d]`, row-major) against `t` with L2 weight `lambda` on w, from w = 0 and
/// intercept `c0`.
pub(crate) fn fit(x: &[f64], d: usize, t: &[f64], lambda: f64, c0: f64) -> Logistic {
    let p = d + 1;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let loss = |th: &[f64]| -> f64 {
        let pen: f64 = th[..d].iter().map(|w| w * w).sum::<f64>() * lambda / 2.0;
        t.iter()
            .enumerate()
            .map(|(i, &ti)| {
                let r = dot(row(i), &th[..d]) + th[d];
                ti * softplus(-r) + (1.0 - ti) * softplus(r)
            })
            .sum::<f64>()
            + pen
    };
    let mut th = vec![0.0; p];
    th[d] = c0;
    let mut current = loss(&th);
    let mut g = vec![0.0; p];
    let mut h = vec![0.0; p * p];
    let mut xi = vec![0.0; p];
    for _ in 0..200 {
        g.fill(0.0);
        h.fill(0.0);
        for (i, &ti) in t.iter().enumerate() {
            xi[..d].copy_from_slice(row(i));
            xi[d] = 1.0;
            let s = sigmoid(dot(&xi, &th));
            let (gi, hi) = (s - ti, s * (1.0 - s));
            for a in 0..p {
                g[a] += gi * xi[a];
                for b in 0..p {
                    h[a * p + b] += hi * xi[a] * xi[b];
                }
            }
        }
        for a in 0..d {
            g[a] += lambda * th[a];
            h[a * p + a] += lambda;
        }
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= 1e-13 * t.len().max(1) as f64 {
            break;
        }
        // A singular Hessian (a constant feature): a gradient step instead.
        let step_dir = solve(&h, &g, p).unwrap_or_else(|| {
            let scale = (0..p).map(|a| h[a * p + a]).fold(0.0f64, f64::max).max(1e-300);
            g.iter().map(|v| v / scale).collect()
        });
        // Near the optimum the loss changes by less than its own rounding, so a line search
        // could not see the decrease: within a Newton decrement of 1e-8 the full step is taken
        // (Newton's quadratic convergence region for this smooth, convex loss).
        let decrement = dot(&g, &step_dir);
        if decrement.abs() < 1e-8 {
            th.iter_mut().zip(&step_dir).for_each(|(a, b)| *a -= b);
            current = loss(&th);
            continue;
        }
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-10 {
            let next: Vec<f64> = th.iter().zip(&step_dir).map(|(a, b)| a - step * b).collect();
            let l = loss(&next);
            if l <= current {
                improved = l < current || next != th;
                (th, current) = (next, l);
                break;
            }
            step *= 0.5;
        }
        if !improved {
            break;
        }
    }
    let c = th[d];
    th.truncate(d);
    Logistic { w: th, c }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves the `[p, p]` system `a x = b` by Gaussian elimination with partial pivoting; `None`
/// when it is singular.
fn solve(a: &[f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut m: Vec<f64> = a.to_vec();
    let mut x: Vec<f64> = b.to_vec();
    let norm = a.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    for col in 0..p {
        let piv = (col..p).max_by(|&i, &j| m[i * p + col].abs().total_cmp(&m[j * p + col].abs()))?;
        if m[piv * p + col].abs() <= norm * 1e-14 {
            return None;
        }
        if piv != col {
            for k in 0..p {
                m.swap(piv * p + k, col * p + k);
            }
            x.swap(piv, col);
        }
        for r in col + 1..p {
            let f = m[r * p + col] / m[col * p + col];
            for k in col..p {
                m[r * p + k] -= f * m[col * p + k];
            }
            x[r] -= f * x[col];
        }
    }
    for col in (0..p).rev() {
        let s: f64 = (col + 1..p).map(|k| m[col * p + k] * x[k]).sum();
        x[col] = (x[col] - s) / m[col * p + col];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_vanishes_at_the_fit() {
        // Two overlapping classes on two features, soft targets and a penalty.
        let x: Vec<f64> = (0..40)
            .flat_map(|i| [f64::from(i % 7) - 3.0, f64::from(i % 5) * 0.5])
            .collect();
        let t: Vec<f64> = (0..40).map(|i| if i % 3 == 0 { 0.9 } else { 0.1 }).collect();
        let m = fit(&x, 2, &t, 0.5, 0.0);
        let mut g = [0.5 * m.w[0], 0.5 * m.w[1], 0.0];
        for (i, &ti) in t.iter().enumerate() {
            let r = m.w[0] * x[2 * i] + m.w[1] * x[2 * i + 1] + m.c;
            let e = sigmoid(r) - ti;
            g[0] += e * x[2 * i];
            g[1] += e * x[2 * i + 1];
            g[2] += e;
        }
        assert!(g.iter().all(|v| v.abs() < 1e-10), "{g:?}");
        // A constant feature leaves a singular Hessian: still a finite fit.
        let m = fit(
            &[1.0; 10],
            1,
            &[0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
            0.0,
            0.0,
        );
        assert!(m.w[0].is_finite() && m.c.is_finite());
    }
}
