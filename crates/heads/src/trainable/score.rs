//! The two scores on the host, in f64, and their anchor targets.
//!
//! Both scores are written in a cancellation-free form around the arg-max logit `z_a`: with
//! `e_i = exp(z_i − z_a)`, `s = Σ_{i≠a} e_i` and `d_i = z_a − z_i ≥ 0`,
//!
//! * `1 − p_a = s / (1 + s)` and `p_a − p_i = (1 − e_i) / (1 + s)`, so
//!   `1 − SmoothMax_λ(p) = s/(1+s) − (1/λ)·log1p(Σ_{i≠a} exp(−λ(p_a − p_i)))`;
//! * `H(p) = log1p(s) + Σ_{i≠a} d_i e_i / (1 + s)`.
//!
//! The textbook forms (`1 − logsumexp(λp)/λ`, `−Σ p log p`) subtract two numbers close to 1 (or
//! to `log Σ exp z`) and lose every digit on confident rows, exactly the rows whose errors the
//! BCE term weighs most (`−log u` for an error with `u ≈ 1e-7`). The training loss on the device
//! uses the same forms (`net.rs`).

use ueb_metrics::BuiltinScore;

use ueb_cache::SplitData;

/// Lower/upper clamp of the AdUE score (`[1e-8, 1 − 1e-8]`, the reference's later code).
pub const ADUE_CLAMP: f64 = 1e-8;
/// Lower/upper clamp of the ALIEN score (`[1e-9, 1 − 1e-9]`, the reference code).
pub const ALIEN_CLAMP: f64 = 1e-9;

/// Which of the two trainable heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// AdUE (2505.15443 v1): `u = (1 − SmoothMax_λ(p)) / (1 − 1/C)`, anchored to SR.
    Adue,
    /// ALIEN (2505.15443 v2): `u = H(p) / ln C`, anchored to the original normalised entropy.
    Alien,
}

impl Method {
    /// The registry name (`adue`, `alien`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Adue => "adue",
            Method::Alien => "alien",
        }
    }

    /// The clamp `ε` of the score: `u ∈ [ε, 1 − ε]`.
    pub fn clamp(self) -> f64 {
        match self {
            Method::Adue => ADUE_CLAMP,
            Method::Alien => ALIEN_CLAMP,
        }
    }

    /// The score of one row of head logits `z` (`lambda` is used by AdUE only).
    pub fn score_row(self, z: &[f64], lambda: f64) -> f64 {
        let u = match self {
            Method::Adue => one_minus_smooth_max(z, lambda) / (1.0 - 1.0 / z.len() as f64),
            Method::Alien => entropy(z) / (z.len() as f64).ln(),
        };
        let eps = self.clamp();
        u.clamp(eps, 1.0 - eps)
    }

    /// The score of one row of head logits `z` before the clamp, and its gradient `∂u/∂z`
    /// written to `grad` (`z.len()` values), for training on the host. The value is the one
    /// of [`Method::score_row`] (same cancellation-free forms); the gradient, with `p =
    /// softmax(z)` and the notation of the module docs:
    ///
    /// * ALIEN: `∂H/∂z_j = p_j·(d_j − W)` with `W = Σ_{i≠a} d_i e_i/(1 + s)` (`ln p_j + H =
    ///   W − d_j`, without forming either);
    /// * AdUE: `∂(1 − SmoothMax_λ)/∂z_j = −p_j·(q_j − Σ_i q_i p_i)` with `q = softmax(λp)`;
    ///   with `t_i = exp(−λ(p_a − p_i))`, `T = Σ t_i` and `r = Σ_{i≠a} t_i p_i`, the bracket is
    ///   `(s/(1 + s) − r)/T` at the arg-max and `(t_j − p_a − r)/T` elsewhere.
    ///
    /// Both divided by the method's normaliser (`ln C`, `1 − 1/C`), as the score is.
    pub(crate) fn score_with_gradient(self, z: &[f64], lambda: f64, grad: &mut [f64]) -> f64 {
        let c = z.len();
        let a = argmax(z);
        let za = z[a];
        let (mut s, mut weighted) = (0.0f64, 0.0f64);
        for (i, (&zi, g)) in z.iter().zip(grad.iter_mut()).enumerate() {
            // e_i, held in `grad` until the gradient replaces it.
            *g = if i == a { 1.0 } else { (zi - za).exp() };
            if i != a {
                s += *g;
                weighted += (za - zi) * *g;
            }
        }
        let denom = 1.0 + s;
        match self {
            Method::Alien => {
                let norm = (c as f64).ln();
                let w = weighted / denom;
                for (g, &zi) in grad.iter_mut().zip(z) {
                    *g = *g / denom * ((za - zi) - w) / norm;
                }
                (s.ln_1p() + w) / norm
            }
            Method::Adue => {
                let norm = 1.0 - 1.0 / c as f64;
                let t_of = |zi: f64| (-lambda * -(zi - za).exp_m1() / denom).exp();
                let (mut t_other, mut r) = (0.0f64, 0.0f64);
                for (i, (&zi, &e)) in z.iter().zip(grad.iter()).enumerate() {
                    if i != a {
                        let t = t_of(zi);
                        t_other += t;
                        r += t * (e / denom);
                    }
                }
                let total = 1.0 + t_other;
                let pa = 1.0 / denom;
                for (i, (g, &zi)) in grad.iter_mut().zip(z).enumerate() {
                    let p = *g / denom;
                    let bracket = if i == a { s / denom - r } else { t_of(zi) - pa - r } / total;
                    *g = -p * bracket / norm;
                }
                (s / denom - t_other.ln_1p() / lambda) / norm
            }
        }
    }

    /// The anchor target of every row of `split`, from the model's ORIGINAL (stored) logits:
    /// `u_SR = (1 − max p) / (1 − 1/C)` for AdUE, ueb's built-in `entropy` (`H(p)/ln C`) for
    /// ALIEN.
    pub fn anchors(self, split: &SplitData) -> Vec<f64> {
        let c = split.num_classes();
        let p = split.probs();
        p.chunks_exact(c)
            .map(|row| match self {
                Method::Adue => BuiltinScore::Sr.of_row(row) / (1.0 - 1.0 / c as f64),
                Method::Alien => BuiltinScore::Entropy.of_row(row),
            })
            .collect()
    }
}

/// Index of the largest value, the lowest index on ties.
fn argmax(z: &[f64]) -> usize {
    z.iter()
        .enumerate()
        .fold(0, |best, (k, &v)| if v > z[best] { k } else { best })
}

/// `1 − SmoothMax_λ(softmax(z))`, cancellation-free (see the module docs).
fn one_minus_smooth_max(z: &[f64], lambda: f64) -> f64 {
    let a = argmax(z);
    let za = z[a];
    let s: f64 = z
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != a)
        .map(|(_, &zi)| (zi - za).exp())
        .sum();
    let denom = 1.0 + s;
    let t: f64 = z
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != a)
        .map(|(_, &zi)| (-lambda * -(zi - za).exp_m1() / denom).exp())
        .sum();
    s / denom - t.ln_1p() / lambda
}

/// Entropy (nats) of `softmax(z)`, cancellation-free (see the module docs).
fn entropy(z: &[f64]) -> f64 {
    let a = argmax(z);
    let za = z[a];
    let (mut s, mut weighted) = (0.0f64, 0.0f64);
    for (i, &zi) in z.iter().enumerate() {
        if i != a {
            let e = (zi - za).exp();
            s += e;
            weighted += (za - zi) * e;
        }
    }
    s.ln_1p() + weighted / (1.0 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(z: &[f64]) -> Vec<f64> {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn cancellation_free_forms_match_the_textbook_ones() {
        for z in [
            vec![0.3, -1.2, 2.0],
            vec![1.0, 1.0, 1.0, 1.0],
            vec![5.0, -3.0],
            vec![0.1, 0.2, 0.3, -0.4, 0.0],
        ] {
            let p = softmax(&z);
            let h: f64 = p.iter().map(|v| -v * v.ln()).sum();
            assert!((entropy(&z) - h).abs() < 1e-14, "{z:?}");
            let lse = p.iter().map(|v| (100.0 * v).exp()).sum::<f64>().ln() / 100.0;
            assert!((one_minus_smooth_max(&z, 100.0) - (1.0 - lse)).abs() < 1e-13, "{z:?}");
        }
    }

    #[test]
    fn score_gradients_match_central_differences() {
        // Central differences of the value (step 1e-5, error ~1e-10 for these smooth scores),
        // including a confident row and a tie for the arg-max.
        for z in [
            vec![0.3, -1.2, 2.0],
            vec![1.0, 1.0, 1.0, 1.0],
            vec![5.0, -3.0],
            vec![0.1, 0.2, 0.3, -0.4, 0.0],
            vec![9.0, 0.5, -2.0],
        ] {
            for method in [Method::Adue, Method::Alien] {
                let mut grad = vec![0.0; z.len()];
                let value = method.score_with_gradient(&z, 100.0, &mut grad);
                let plain = match method {
                    Method::Adue => one_minus_smooth_max(&z, 100.0) / (1.0 - 1.0 / z.len() as f64),
                    Method::Alien => entropy(&z) / (z.len() as f64).ln(),
                };
                assert!(
                    (value - plain).abs() < 1e-15,
                    "{method:?} {z:?}: value {value} vs {plain}"
                );
                let h = 1e-5;
                for j in 0..z.len() {
                    let at = |delta: f64| {
                        let mut zz = z.clone();
                        zz[j] += delta;
                        let mut g = vec![0.0; zz.len()];
                        method.score_with_gradient(&zz, 100.0, &mut g)
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h);
                    assert!(
                        (grad[j] - numeric).abs() < 1e-8 * (1.0 + numeric.abs()),
                        "{method:?} {z:?} ∂/∂z{j}: {} vs {numeric}",
                        grad[j]
                    );
                }
            }
        }
    }

    #[test]
    fn confident_rows_keep_their_digits() {
        // p_a = 1 − e^{-30}(1 + …): the textbook form gives 0 or noise here.
        let z = [30.0, 0.0, 0.0];
        let s = 2.0 * (-30.0f64).exp();
        assert!((one_minus_smooth_max(&z, 100.0) / (s / (1.0 + s)) - 1.0).abs() < 1e-12);
        let h = s.ln_1p() + 30.0 * s / (1.0 + s);
        assert!((entropy(&z) / h - 1.0).abs() < 1e-12);
    }
}
