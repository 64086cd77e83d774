//! Branch-free element functions of host scoring: f64 `tanh` and GELU (exact erf form), f32
//! `tanh`, and the vector-register fix that faer's matrix kernels need.
//!
//! The element functions are branch-free — every lane computes every case and a select keeps
//! one — so that LLVM vectorises the loops over them; the loops run inside pulp's
//! `Arch::dispatch` (re-exported by faer), which compiles them for the best instruction set the
//! CPU offers (AVX2 + FMA with the pulp features this workspace enables, SSE2 otherwise). They
//! use separate multiplies and adds, never fused ones, so the results are the same bits
//! whichever instruction set runs them (Rust never contracts `a * b + c` on its own).
//!
//! `libm::tanh` is scalar, and a 128-row batch of a 768-wide `mlp` head evaluates 98 304 of them
//! (decision T18; measured: `docs/performance-log.md`).
//!
//! **Upper vector-register state.** faer 0.24's AVX-512 matrix kernels (the hand-written
//! assembly of `private-gemm-x86`) return without `vzeroupper`. Until something clears the upper
//! halves of the vector registers, every SSE-encoded instruction on that thread pays a
//! transition penalty, which makes glibc's scalar `exp`/`ln`/`ln_1p` many times slower (decision
//! H12). [`clear_upper_state`] clears it; the score paths call it
//! after their faer products so that the next head on the thread (or the caller's own libm
//! calls) runs at full speed.

// The published digits of the approximations are kept (more than f64 holds), so that they can
// be compared with their sources.
#![allow(clippy::excessive_precision)]

use crate::{Arch, Simd, WithSimd, map_in_place};

map_in_place!(TanhInPlace, f64, tanh);
map_in_place!(GeluInPlace, f64, gelu);

/// A SIMD sum: compiled for AVX by the dispatch, so LLVM ends it with `vzeroupper`.
struct SumLanes<'a>(&'a [f64]);

impl WithSimd for SumLanes<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (head, tail) = S::as_simd_f64s(self.0);
        let mut acc = simd.splat_f64s(0.0);
        for &x in head {
            acc = simd.add_f64s(acc, x);
        }
        simd.reduce_sum_f64s(acc) + tail.iter().sum::<f64>()
    }
}

/// Clears the upper halves of the vector registers that faer's AVX-512 kernels leave dirty
/// (see the module docs). Cheap (a few nanoseconds); call it after faer products and before
/// scalar libm calls on the same thread.
pub fn clear_upper_state() {
    let v = [1.0f64; 16];
    // black_box keeps the sum (and with it the AVX code and its vzeroupper) from being folded.
    std::hint::black_box(Arch::new().dispatch(SumLanes(std::hint::black_box(&v[..]))));
}

/// Values from which an element function runs on the rayon pool's threads, in equal runs
/// long enough to outweigh a task's start-up (decision T16). Each value's result does
/// not depend on the run it falls in: the vector and scalar forms give the same bits.
pub(crate) const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Runs `f` on `v`, split between the pool's threads from [`PARALLEL_ELEMENTS`] values.
fn in_runs(v: &mut [f64], f: impl Fn(&mut [f64]) + Sync + Send) {
    use rayon::prelude::*;
    let threads = crate::threads();
    if v.len() < PARALLEL_ELEMENTS || threads == 1 {
        f(v);
    } else {
        v.par_chunks_mut(v.len().div_ceil(threads).next_multiple_of(8))
            .for_each(f);
    }
}

/// `tanh` of every value in place (see [`tanh`] for the accuracy).
pub fn tanh_in_place(v: &mut [f64]) {
    in_runs(v, |run| Arch::new().dispatch(TanhInPlace(run)));
}

/// GELU (the exact erf form) of every value in place (see [`gelu`] for the accuracy).
pub fn gelu_in_place(v: &mut [f64]) {
    in_runs(v, |run| Arch::new().dispatch(GeluInPlace(run)));
}

/// Padé coefficients of `exp` on `|r| ≤ ln 2 / 2`: `e^r = 1 + 2r·P(r²)/(Q(r²) − r·P(r²))`
/// (Cephes `exp.c`, S. L. Moshier; the published digits, so they can be checked).
const EXP_P: [f64; 3] = [
    1.26177193074810590878E-4,
    3.02994407707441961300E-2,
    9.99999999999999999910E-1,
];
const EXP_Q: [f64; 4] = [
    3.00198505138664455042E-6,
    2.52448340349684104192E-3,
    2.27265548208155028766E-1,
    2.00000000000000000009E0,
];
/// ln 2 split so that `n·LN2_HI` is exact for the `n` used here.
const LN2_HI: f64 = 6.93145751953125E-1;
const LN2_LO: f64 = 1.42860682030941723212E-6;
/// 1.5·2⁵²: adding it rounds a value below 2⁵¹ in magnitude to an integer, which lands in the
/// low mantissa bits.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;

/// `e^x = 2ⁿ·(q + p)/(q − p)` for `x ∈ [−708, 709]` (normal results): returns `(p, q, 2ⁿ)`,
/// the Padé form of Cephes' `exp` (peak relative error 2.2e-16) without its division, so that
/// callers can merge it with their own. Outside that range the result is meaningless: callers
/// clamp.
#[inline(always)]
fn exp_parts(x: f64) -> (f64, f64, f64) {
    let shifted = x * std::f64::consts::LOG2_E + ROUND_SHIFT;
    let n = shifted - ROUND_SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let rr = r * r;
    let p = r * ((EXP_P[0] * rr + EXP_P[1]) * rr + EXP_P[2]);
    let q = ((EXP_Q[0] * rr + EXP_Q[1]) * rr + EXP_Q[2]) * rr + EXP_Q[3];
    // The low bits of `shifted` hold n (two's complement, modulo 2⁵²); shifting them into the
    // exponent field gives 2ⁿ for n + 1023 ∈ [1, 2046].
    let scale = f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52);
    (p, q, scale)
}

/// Cody–Waite rational coefficients of `tanh` on `|x| < 0.625`: `x + x·x²·P(x²)/Q(x²)`
/// (Cephes `tanh.c`).
const TANH_P: [f64; 3] = [
    -9.64399179425052238628E-1,
    -9.92877231001918586564E1,
    -1.61468768441708447952E3,
];
const TANH_Q: [f64; 3] = [
    1.12811678491632931402E2,
    2.23548839060100448583E3,
    4.84406305325125486048E3,
];

/// `tanh(x)`, branch-free: the rational form below 0.625, `1 − 2/(e^{2|x|} + 1)` above (with
/// |x| clamped to 20, where tanh already rounds to 1). Both branches share one division (the
/// slowest vector instruction here): `e^{2|x|} = 2ⁿ·(q + p)/(q − p)` from the Padé form of
/// `exp`, so `2/(e^{2|x|} + 1) = 2(q − p)/(2ⁿ(q + p) + (q − p))`. Within 2 ulp of `libm::tanh`
/// (tested on a dense grid); ±0, ±∞ and NaN behave as in `libm`.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    // On |x|, with the sign put back at the end: odd symmetry is exact, and tanh(−0) = −0.
    let a = x.abs();
    // NaN takes the rational branch, which propagates it.
    let small = a < 0.625 || x.is_nan();
    let z = a * a;
    let tp = ((TANH_P[0] * z + TANH_P[1]) * z + TANH_P[2]) * z;
    let tq = ((z + TANH_Q[0]) * z + TANH_Q[1]) * z + TANH_Q[2];
    let (ep, eq, scale) = exp_parts(2.0 * a.min(20.0));
    let (num, den) = if small {
        (tp, tq)
    } else {
        (2.0 * (eq - ep), scale * (eq + ep) + (eq - ep))
    };
    let ratio = num / den;
    let t = if small { a + a * ratio } else { 1.0 - ratio };
    t.copysign(x)
}

/// Cephes `tanhf`'s polynomial on `|x| < 0.625`: `x + x·x²·P(x²)`.
const TANHF_P: [f32; 5] = [
    -5.704_988_727_45E-3,
    2.063_908_879_54E-2,
    -5.373_971_555_31E-2,
    1.333_144_220_36E-1,
    -3.333_328_194_22E-1,
];
/// Cephes `expf`'s polynomial: `e^r ≈ 1 + r + r²·P(r)` on `|r| ≤ ln2/2`.
const EXPF_P: [f32; 6] = [
    1.987_569_150_0E-4,
    1.398_199_950_7E-3,
    8.333_451_907_3E-3,
    4.166_579_589_4E-2,
    1.666_666_545_9E-1,
    5.000_000_120_1E-1,
];
/// ln 2 split for f32 (Cephes): `n·LN2F_HI` is exact for the `n` used here.
const LN2F_HI: f32 = 0.693_359_375;
const LN2F_LO: f32 = -2.121_944_4E-4;
/// 1.5·2²³: adding it rounds an f32 below 2²² in magnitude to an integer in the low bits.
const ROUND_SHIFT_F32: f32 = 12_582_912.0;

/// `tanh(x)` in f32 arithmetic, branch-free: Cephes `tanhf`'s polynomial below 0.625 (no
/// division), `1 − 2/(e^{2|x|} + 1)` above with Cephes `expf` (|x| clamped to 10, where tanh
/// already rounds to 1 in f32). The activation of `score_precision: f32`, as PyTorch float32
/// computes it: a vector of 16 f32 values costs about what 8 f64 values did. Within 2 ulp
/// (of f32) of the correctly rounded value (tested on a dense grid); ±0, ±∞ and NaN behave as
/// in `libm`.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    // NaN takes the polynomial, which propagates it.
    let small = a < 0.625 || x.is_nan();
    let z = a * a;
    let poly = ((((TANHF_P[0] * z + TANHF_P[1]) * z + TANHF_P[2]) * z + TANHF_P[3]) * z + TANHF_P[4]) * z * a + a;
    // e^{2|x|} = 2ⁿ·e^r.
    let y = 2.0 * a.min(10.0);
    let shifted = y * std::f32::consts::LOG2_E + ROUND_SHIFT_F32;
    let n = shifted - ROUND_SHIFT_F32;
    let r = (y - n * LN2F_HI) - n * LN2F_LO;
    let p = (((((EXPF_P[0] * r + EXPF_P[1]) * r + EXPF_P[2]) * r + EXPF_P[3]) * r + EXPF_P[4]) * r + EXPF_P[5])
        * (r * r)
        + r
        + 1.0;
    // The low bits of `shifted` hold n ∈ [0, 29]; shifted into the exponent field, 2ⁿ.
    let e = p * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    let big = 1.0 - 2.0 / (e + 1.0);
    (if small { poly } else { big }).copysign(x)
}

// fdlibm's `erf`/`erfc` coefficients (Sun Microsystems, 1993, freely redistributable; the
// digits of the `libm` crate and musl), one rational approximation per range of |x|.
const ERX: f64 = 8.45062911510467529297e-01;
const PP: [f64; 5] = [
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
];
const QQ: [f64; 5] = [
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
];
const PA: [f64; 7] = [
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
];
const QA: [f64; 6] = [
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
];
const RA: [f64; 8] = [
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e+01,
    -6.23753324503260060396e+01,
    -1.62396669462573470355e+02,
    -1.84605092906711035994e+02,
    -8.12874355063065934246e+01,
    -9.81432934416914548592e+00,
];
const SA: [f64; 8] = [
    1.96512716674392571292e+01,
    1.37657754143519042600e+02,
    4.34565877475229228821e+02,
    6.45387271733267880336e+02,
    4.29008140027567833386e+02,
    1.08635005541779435134e+02,
    6.57024977031928170135e+00,
    -6.04244152148580987438e-02,
];
const RB: [f64; 7] = [
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e+01,
    -1.60636384855821916062e+02,
    -6.37566443368389627722e+02,
    -1.02509513161107724954e+03,
    -4.83519191608651397019e+02,
];
const SB: [f64; 7] = [
    3.03380607434824582924e+01,
    3.25792512996573918826e+02,
    1.53672958608443695994e+03,
    3.19985821950859553908e+03,
    2.55305040643316442583e+03,
    4.74528541206955367215e+02,
    -2.24409524465858183362e+01,
];

/// GELU, the exact erf form: `x·Φ(x) = ½·x·erfc(−x/√2)`. The erfc form keeps the relative
/// accuracy for negative x, where `½·x·(1 + erf(x/√2))` subtracts two numbers close to 1.
///
/// `erfc` is fdlibm's algorithm made branch-free: every range is evaluated and selects keep
/// one. Divisions are merged (the slowest vector instruction here): the two rational forms of
/// `|t| < 1.25` share one, which `|t| ≥ 1.25` shares too for its final
/// `exp(−t² − 0.5625 + R/S)/|t|`, leaving five (of seven). Within 4 ulp of `½·x·libm::erfc(−x/√2)` (tested); results below ~1e-306 (x < −37.5)
/// flush to 0.
#[inline(always)]
pub fn gelu(x: f64) -> f64 {
    let t = -x * std::f64::consts::FRAC_1_SQRT_2;
    let a = t.abs();
    let below = a < 0.843_75;
    let near = a < 1.25;
    // |t| < 0.84375: erf(t) = t + t·y with y = r/s.
    let z = t * t;
    let r = PP[0] + z * (PP[1] + z * (PP[2] + z * (PP[3] + z * PP[4])));
    let s = 1.0 + z * (QQ[0] + z * (QQ[1] + z * (QQ[2] + z * (QQ[3] + z * QQ[4]))));
    // 0.84375 ≤ |t| < 1.25: erf(|t|) = ERX + pa/qa in |t| − 1.
    let s1 = a - 1.0;
    let pa = PA[0] + s1 * (PA[1] + s1 * (PA[2] + s1 * (PA[3] + s1 * (PA[4] + s1 * (PA[5] + s1 * PA[6])))));
    let qa = 1.0 + s1 * (QA[0] + s1 * (QA[1] + s1 * (QA[2] + s1 * (QA[3] + s1 * (QA[4] + s1 * QA[5])))));
    // |t| ≥ 1.25: erfc(|t|) = exp(−t² − 0.5625 + R/S)/|t| in 1/t², with −t² split exactly.
    let xc = a.clamp(1.25, 26.5);
    let w = 1.0 / (xc * xc);
    let ra = RA[0] + w * (RA[1] + w * (RA[2] + w * (RA[3] + w * (RA[4] + w * (RA[5] + w * (RA[6] + w * RA[7]))))));
    let sa = 1.0
        + w * (SA[0] + w * (SA[1] + w * (SA[2] + w * (SA[3] + w * (SA[4] + w * (SA[5] + w * (SA[6] + w * SA[7])))))));
    let rb = RB[0] + w * (RB[1] + w * (RB[2] + w * (RB[3] + w * (RB[4] + w * (RB[5] + w * RB[6])))));
    let sb = 1.0 + w * (SB[0] + w * (SB[1] + w * (SB[2] + w * (SB[3] + w * (SB[4] + w * (SB[5] + w * SB[6]))))));
    let (rr, ss) = if xc < 1.0 / 0.35 { (ra, sa) } else { (rb, sb) };
    // xc with its low 32 bits cleared: its square is exact, so the first exponential carries
    // no error from the square.
    let x_hi = f64::from_bits(xc.to_bits() & 0xffff_ffff_0000_0000);
    // Both exponentials in Cephes' own form `1 + 2p/(q − p)`: folding them into the shared
    // division costs 1–2 ulp in the far tail.
    let (p1, q1, scale1) = exp_parts(-x_hi * x_hi - 0.5625);
    let (p2, q2, scale2) = exp_parts((x_hi - xc) * (x_hi + xc) + rr / ss);
    let e2 = (1.0 + 2.0 * (p2 / (q2 - p2))) * scale2;
    let e1 = (1.0 + 2.0 * (p1 / (q1 - p1))) * scale1;
    let (num, den) = if below {
        (r, s)
    } else if near {
        (pa, qa)
    } else {
        (e1 * e2, xc)
    };
    let ratio = num / den;
    let erfc = if below {
        if t < 0.25 {
            1.0 - (t + t * ratio)
        } else {
            0.5 - (t - 0.5 + t * ratio)
        }
    } else if near {
        if t < 0.0 {
            1.0 + (ERX + ratio)
        } else {
            1.0 - ERX - ratio
        }
    } else {
        let tail = if a >= 26.5 { 0.0 } else { ratio };
        if t < 0.0 { 2.0 - tail } else { tail }
    };
    if x.is_nan() { x } else { 0.5 * x * erfc }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite values of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        let key = |v: f64| {
            let bits = v.to_bits() as i64;
            if bits < 0 { i64::MIN - bits } else { bits }
        };
        key(a).abs_diff(key(b))
    }

    /// Every grid value: dense around 0 and the branch points, spread over the whole range.
    fn grid() -> Vec<f64> {
        let mut xs = Vec::new();
        // Dense uniform grid on [-40, 40] (step 1e-4 near the branch points' scale).
        let n = 800_000;
        for i in 0..=n {
            xs.push(-40.0 + 80.0 * i as f64 / n as f64);
        }
        // Logarithmic grid from 1e-300 to 1e3, both signs.
        for i in 0..=60_000 {
            let v = 10f64.powf(-300.0 + 303.0 * i as f64 / 60_000.0);
            xs.push(v);
            xs.push(-v);
        }
        // Neighbours of the branch points and of the clamps.
        for b in [0.25f64, 0.625, 0.843_75, 1.25, 1.0 / 0.35, 6.0, 19.0, 20.0, 26.5, 28.0] {
            let mut v = f64::from_bits(b.to_bits() - 64);
            for _ in 0..128 {
                xs.push(v);
                xs.push(-v);
                xs.push(v * std::f64::consts::SQRT_2);
                xs.push(-v * std::f64::consts::SQRT_2);
                v = f64::from_bits(v.to_bits() + 1);
            }
        }
        xs
    }

    #[test]
    fn tanh_is_within_two_ulp_of_libm() {
        let xs = grid();
        let mut got = xs.clone();
        tanh_in_place(&mut got);
        let mut worst = (0u64, 0.0f64);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = libm::tanh(x);
            let u = ulps(g, want);
            if u > worst.0 {
                worst = (u, x);
            }
            assert!(u <= 2, "tanh({x:e}) = {g:e}, libm {want:e} ({u} ulp)");
            assert!((g - want).abs() <= 4.5e-16 * want.abs(), "tanh({x:e})");
        }
        // The scalar function (outside the dispatch) gives the same bits, as does the run of
        // the grid's 920 000 values (split between threads) each value fell in.
        for (&x, &g) in xs.iter().zip(&got).step_by(97) {
            assert_eq!(tanh(x).to_bits(), g.to_bits(), "tanh({x:e}) in a run");
            assert_eq!(tanh(x).to_bits(), {
                let mut v = [x];
                tanh_in_place(&mut v);
                v[0].to_bits()
            });
        }
        eprintln!("tanh: worst {} ulp at {:e}", worst.0, worst.1);
    }

    #[test]
    fn tanh_special_values() {
        let mut v = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-310,
            -1e-310,
            710.0,
            -1e308,
        ];
        tanh_in_place(&mut v);
        assert_eq!(v[0].to_bits(), 0.0f64.to_bits());
        assert_eq!(v[1].to_bits(), (-0.0f64).to_bits());
        assert_eq!(v[2], 1.0);
        assert_eq!(v[3], -1.0);
        assert!(v[4].is_nan());
        assert_eq!(v[5], 1e-310);
        assert_eq!(v[6], -1e-310);
        assert_eq!(v[7], 1.0);
        assert_eq!(v[8], -1.0);
    }

    #[test]
    fn gelu_is_within_a_few_ulp_of_libm() {
        let xs = grid();
        let mut got = xs.clone();
        gelu_in_place(&mut got);
        let mut worst = (0u64, 0.0f64);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = 0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
            if want.abs() < 1e-300 {
                // Where libm's result is (nearly) subnormal we flush to 0.
                assert!(g.abs() <= 1e-300, "gelu({x:e}) = {g:e}, libm {want:e}");
                continue;
            }
            let u = ulps(g, want);
            if u > worst.0 {
                worst = (u, x);
            }
            assert!(u <= 4, "gelu({x:e}) = {g:e}, libm {want:e} ({u} ulp)");
        }
        eprintln!("gelu: worst {} ulp at {:e}", worst.0, worst.1);
    }

    #[test]
    fn gelu_special_values() {
        let mut v = [0.0, -0.0, f64::INFINITY, f64::NAN, -40.0, 40.0];
        gelu_in_place(&mut v);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], 0.0);
        assert_eq!(v[2], f64::INFINITY);
        assert!(v[3].is_nan());
        assert_eq!(v[4], 0.0);
        assert_eq!(v[5], 40.0);
    }

    #[test]
    fn f32_tanh_is_within_two_ulp_of_the_rounded_value() {
        // Every 701st f32 in [0, 12] (1.6M values, subnormals included) with both signs, then
        // powers of ten down to the subnormals.
        let ulps32 = |a: f32, b: f32| -> u32 {
            let key = |v: f32| {
                let bits = v.to_bits() as i32;
                if bits < 0 { i32::MIN - bits } else { bits }
            };
            key(a).abs_diff(key(b))
        };
        let mut xs: Vec<f32> = (0..=12f32.to_bits())
            .step_by(701)
            .flat_map(|i| [f32::from_bits(i), -f32::from_bits(i)])
            .collect();
        xs.extend((-45..=2).flat_map(|p| [10f32.powi(p), -(10f32.powi(p))]));
        let mut worst = (0, 0.0f32);
        for &x in &xs {
            let got = tanh_f32(x);
            let want = libm::tanh(f64::from(x)) as f32;
            let u = ulps32(got, want);
            if u > worst.0 {
                worst = (u, x);
            }
            assert!(u <= 2, "tanh_f32({x:e}) = {got:e}, rounded {want:e} ({u} ulp)");
        }
        eprintln!("tanh_f32: worst {} ulp at {:e}", worst.0, worst.1);
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn clearing_the_upper_state_is_harmless() {
        clear_upper_state();
        let mut v = [0.5, 2.0];
        tanh_in_place(&mut v);
        assert!((v[0] - libm::tanh(0.5)).abs() < 1e-16);
    }
}
