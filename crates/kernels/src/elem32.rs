//! Vectorised f32 element passes of the host encoder: `exp` (for the attention softmax), the two
//! GELU forms, ReLU, the softmax rows, LayerNorm and the bias rows.
//!
//! The element functions are branch-free (selects instead of branches) so that LLVM vectorises
//! the loops over them; the loops run inside pulp's `Arch::dispatch` ([`map_in_place!`](crate::map_in_place)), which
//! compiles them for the best instruction set the CPU offers, as [`crate::elem`] does for the
//! f64 scoring functions. Separate multiplies and adds, never fused ones, so that the bits do not
//! depend on the instruction set. transformers computes these in f32 with its own vectorised
//! `exp`/`erf`. Here (tested against `libm` in f64): `exp` within 2 ulp; the GELU forms within
//! 8e-7 relative near 0, a bound that grows with x²/2 because the f32 rounding of x/√2 (or of
//! u) carries into the exponential, as in any f32 GELU; the softmax within 4 ulp of the f64
//! value of its rounded inputs. All well inside the 1e-4 feature parity with transformers.

// Published digits are kept as published, so that they can be checked against their sources.
#![allow(clippy::excessive_precision)]

use crate::{Arch, Simd, WithSimd, map_in_place};

/// 1.5·2²³: adding it to an f32 below 2²² in magnitude rounds to an integer held in the low
/// mantissa bits.
const ROUND_SHIFT: f32 = 12_582_912.0;
/// ln 2 in two parts (Cody–Waite): `n·LN2_HI` is exact for |n| < 2⁹.
const LN2_HI: f32 = 0.693_359_375;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `e^x` is under f32's smallest normal; the result is flushed to 0.
const EXP_MIN: f32 = -87.3;
/// Above this `e^x` overflows; inputs are clamped to it (callers only need it finite).
const EXP_MAX: f32 = 88.7;

/// `e^x` for f32, branch-free: `x = n·ln 2 + r` with |r| ≤ ln 2 / 2, `e^r` from its Taylor
/// series to degree 7 (truncation < 5e-9 relative), `2ⁿ` built in the exponent bits. Within
/// 2 ulp of the exact value for normal results; 0 below [`EXP_MIN`], `e^{EXP_MAX}` above
/// [`EXP_MAX`].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = xc * std::f32::consts::LOG2_E + ROUND_SHIFT;
    let n = shifted - ROUND_SHIFT;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Horner in r with the Taylor coefficients 1/k!.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // The low bits of `shifted` hold n (two's complement): shifted into the exponent field
    // they give 2ⁿ for n + 127 ∈ [1, 254].
    let scale = f32::from_bits((shifted.to_bits().wrapping_add(127)) << 23);
    let e = p * scale;
    if x < EXP_MIN { 0.0 } else { e }
}

/// Coefficients of Press et al.'s Chebyshev fit `erfc(z) = t·exp(−z² + P(t))`, `t = 1/(1 +
/// z/2)`, z ≥ 0 (*Numerical Recipes*, `erfcc`; relative error < 1.2e-7 everywhere), in the
/// order of Horner's scheme from the constant term.
const ERFC_P: [f32; 10] = [
    -1.265_512_23,
    1.000_023_68,
    0.374_091_96,
    0.096_784_18,
    -0.186_288_06,
    0.278_868_07,
    -1.135_203_98,
    1.488_515_87,
    -0.822_152_23,
    0.170_872_77,
];

/// GELU, the exact erf form `x·Φ(x)`, with `Φ(x) = ½·erfc(−x/√2)` from [`ERFC_P`]: for x < 0
/// directly (no cancellation, so small negative outputs keep their relative accuracy), for
/// x ≥ 0 as `1 − ½·erfc(x/√2)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = ERFC_P[9];
    for &c in ERFC_P[..9].iter().rev() {
        p = p * t + c;
    }
    let erfc = t * exp(-z * z + p);
    let phi = if x < 0.0 { 0.5 * erfc } else { 1.0 - 0.5 * erfc };
    x * phi
}

/// √(2/π).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU's tanh approximation (transformers' `gelu_new`): `½x(1 + tanh(u))` with
/// `u = √(2/π)(x + 0.044715x³)`, computed as `x / (1 + e^{−2u})` (the same function, with no
/// cancellation near u = 0).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * (x * x * x));
    x / (1.0 + exp(-2.0 * u))
}

map_in_place!(GeluInPlace, f32, gelu);
map_in_place!(GeluTanhInPlace, f32, gelu_tanh);
map_in_place!(ReluInPlace, f32, |x: f32| x.max(0.0));

/// GELU (erf form) of every value.
pub fn gelu_in_place(v: &mut [f32]) {
    Arch::new().dispatch(GeluInPlace(v));
}

/// GELU (tanh form) of every value.
pub fn gelu_tanh_in_place(v: &mut [f32]) {
    Arch::new().dispatch(GeluTanhInPlace(v));
}

/// ReLU of every value.
pub fn relu_in_place(v: &mut [f32]) {
    Arch::new().dispatch(ReluInPlace(v));
}

/// Softmax of every `width`-long row of `rows`, in place: `e^{x − max}` and their sum in f64.
struct SoftmaxRows<'a> {
    rows: &'a mut [f32],
    width: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.rows.chunks_exact_mut(self.width.max(1)) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            let sum = sum_wide(row, |v| v);
            let inv = 1.0 / sum;
            for x in row.iter_mut() {
                *x = (f64::from(*x) * inv) as f32;
            }
        }
    }
}

/// Softmax over each `width`-long row of `rows` (row-major), in place.
pub fn softmax_rows(rows: &mut [f32], width: usize) {
    Arch::new().dispatch(SoftmaxRows { rows, width });
}

/// `Σ f(x)` over a row in f64, in 16 interleaved lanes: independent chains, which the
/// vectorised loop runs at the adders' throughput, where one running sum waits an add's latency
/// per element (the moments of LayerNorm and the softmax sums were most of their passes' time).
#[inline(always)]
fn sum_wide(row: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(f64::from(x));
        }
    }
    let tail: f64 = tail.iter().map(|&x| f(f64::from(x))).sum();
    acc.iter().sum::<f64>() + tail
}

/// LayerNorm of every `gamma.len()`-wide row of `x` in place over `x + bias + add` (`bias` one
/// row, `add` row-aligned with `x`; both optional, added in that order), with f64 moments:
/// `(x − mean)/√(var + eps)·gamma + beta`, the biased variance as transformers uses.
pub struct LayerNormRows<'a> {
    /// The rows, row-major.
    pub x: &'a mut [f32],
    /// The residual, row-aligned with `x`.
    pub add: Option<&'a [f32]>,
    /// A bias added to every row first.
    pub bias: Option<&'a [f32]>,
    /// LayerNorm's weight.
    pub gamma: &'a [f32],
    /// LayerNorm's bias.
    pub beta: &'a [f32],
    /// LayerNorm's epsilon.
    pub eps: f64,
}

impl WithSimd for LayerNormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let d = self.gamma.len().max(1);
        let n = d as f64;
        for (i, row) in self.x.chunks_exact_mut(d).enumerate() {
            if let Some(b) = self.bias {
                for (x, b) in row.iter_mut().zip(b) {
                    *x += *b;
                }
            }
            if let Some(add) = self.add {
                for (x, a) in row.iter_mut().zip(&add[i * d..(i + 1) * d]) {
                    *x += *a;
                }
            }
            let mean = sum_wide(row, |v| v) / n;
            let var = sum_wide(row, |v| (v - mean) * (v - mean)) / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((x, g), b) in row.iter_mut().zip(self.gamma).zip(self.beta) {
                *x = ((f64::from(*x) - mean) * inv) as f32 * *g + *b;
            }
        }
    }
}

/// [`LayerNormRows`], compiled for the CPU's best instruction set.
pub fn layer_norm_rows(op: LayerNormRows<'_>) {
    Arch::new().dispatch(op);
}

/// `row += bias` for every `bias.len()`-wide row, compiled for the CPU's best instruction set.
struct AddBias<'a> {
    rows: &'a mut [f32],
    bias: &'a [f32],
}

impl WithSimd for AddBias<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for r in self.rows.chunks_exact_mut(self.bias.len().max(1)) {
            for (v, b) in r.iter_mut().zip(self.bias) {
                *v += *b;
            }
        }
    }
}

/// Adds `bias` to every row of `rows` (row-major, rows `bias.len()` wide).
pub fn add_bias(rows: &mut [f32], bias: &[f32]) {
    Arch::new().dispatch(AddBias { rows, bias });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| (lo + (hi - lo) * i as f64 / n as f64) as f32)
    }

    #[test]
    fn exp_is_within_two_ulp() {
        for x in grid(-87.0, 88.0, 400_000) {
            let want = libm::exp(f64::from(x));
            let got = f64::from(exp(x));
            assert!(
                (got - want).abs() <= 2.0 * f64::from(f32::EPSILON) * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_forms_match_their_definitions_in_f64() {
        for x in grid(-12.0, 12.0, 400_000) {
            let xd = f64::from(x);
            let want = 0.5 * xd * libm::erfc(-xd * std::f64::consts::FRAC_1_SQRT_2);
            let got = f64::from(gelu(x));
            // The fit is good to 1.2e-7 relative; the f32 rounding of x/√2 and of its square
            // carries into e^{−z²}, so the bound grows with z² (as in any f32 erf-form GELU).
            let z2 = xd * xd / 2.0;
            let tol = 8e-7 * want.abs() * z2.max(1.0) + 1e-37;
            assert!((got - want).abs() <= tol, "gelu({x}) = {got}, want {want}");
            let u = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
            // ½x(1 + tanh u) = x/(1 + e^{−2u}), without f64's own cancellation far out.
            let want_t = xd / (1.0 + libm::exp(-2.0 * u));
            let got_t = f64::from(gelu_tanh(x));
            assert!(
                // The f32 rounding of 2u carries into e^{−2u}: the bound grows with |u|.
                (got_t - want_t).abs() <= 4e-7 * want_t.abs() * u.abs().max(1.0) + 1e-37,
                "gelu_tanh({x}) = {got_t}, want {want_t}"
            );
        }
        let mut v: Vec<f32> = grid(-3.0, 3.0, 1000).collect();
        let each: Vec<f32> = v.iter().map(|&x| gelu(x)).collect();
        gelu_in_place(&mut v);
        assert_eq!(v, each);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_f64() {
        let mut rows: Vec<f32> = (0..3 * 17).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.9).collect();
        let orig = rows.clone();
        softmax_rows(&mut rows, 17);
        for (r, o) in rows.chunks(17).zip(orig.chunks(17)) {
            // `x − max` is rounded to f32 as in the kernel (and in PyTorch's f32 softmax).
            let m = o.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let s: f64 = o.iter().map(|&x| f64::from(x - m).exp()).sum();
            for (&p, &x) in r.iter().zip(o) {
                let want = f64::from(x - m).exp() / s;
                let err = (f64::from(p) - want).abs() / want;
                assert!(
                    err <= 4.0 * f64::from(f32::EPSILON),
                    "softmax({x}) = {p}, want {want} ({err:e})"
                );
            }
        }
    }

    #[test]
    fn layer_norm_matches_its_definition() {
        // Three rows 37 wide (two 16-lane chunks of the moments' sums and a tail), with a bias
        // and a residual, against the definition in f64.
        let d = 37;
        let val = |i: usize, k: f64| ((i as f64 * k).sin() * 3.0) as f32;
        let mut x: Vec<f32> = (0..3 * d).map(|i| val(i, 0.37) + 5.0).collect();
        let add: Vec<f32> = (0..3 * d).map(|i| val(i, 0.11)).collect();
        let bias: Vec<f32> = (0..d).map(|i| val(i, 0.7)).collect();
        let gamma: Vec<f32> = (0..d).map(|i| 1.0 + val(i, 0.23) / 4.0).collect();
        let beta: Vec<f32> = (0..d).map(|i| val(i, 0.05)).collect();
        let want: Vec<f64> = x
            .chunks_exact(d)
            .zip(add.chunks_exact(d))
            .flat_map(|(r, a)| {
                let v: Vec<f64> = (0..d).map(|k| f64::from(r[k] + bias[k] + a[k])).collect();
                let mean = v.iter().sum::<f64>() / d as f64;
                let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / d as f64;
                (0..d)
                    .map(|k| (v[k] - mean) / (var + 1e-5).sqrt() * f64::from(gamma[k]) + f64::from(beta[k]))
                    .collect::<Vec<f64>>()
            })
            .collect();
        layer_norm_rows(LayerNormRows {
            x: &mut x,
            add: Some(&add),
            bias: Some(&bias),
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        });
        for (i, (g, w)) in x.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 2e-6 * (1.0 + w.abs()),
                "element {i}: {g} vs {w}"
            );
        }
    }
}
