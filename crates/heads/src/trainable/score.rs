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

use crate::cache::SplitData;

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
    fn confident_rows_keep_their_digits() {
        // p_a = 1 − e^{-30}(1 + …): the textbook form gives 0 or noise here.
        let z = [30.0, 0.0, 0.0];
        let s = 2.0 * (-30.0f64).exp();
        assert!((one_minus_smooth_max(&z, 100.0) / (s / (1.0 + s)) - 1.0).abs() < 1e-12);
        let h = s.ln_1p() + 30.0 * s / (1.0 + s);
        assert!((entropy(&z) / h - 1.0).abs() < 1e-12);
    }
}
