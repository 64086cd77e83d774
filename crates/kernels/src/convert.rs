//! Exact widening (f32 → f64) and rounding (f64 → f32) copies.

use crate::gemm::Element;
use crate::{Arch, Simd, WithSimd};

/// Widens `src` into `dst` (a plain loop, which LLVM vectorises inside the dispatch).
#[inline(always)]
pub(crate) fn widen_into<T: Element>(src: &[T], dst: &mut [f64]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v.to_f64();
    }
}

/// A widening copy, compiled inside the dispatch (a plain loop outside it is SSE2 code).
struct Widen<'a>(&'a [f32], &'a mut [f64]);

impl WithSimd for Widen<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        widen_into(self.0, self.1);
    }
}

/// `src` widened to f64 (exactly).
pub fn widen(src: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; src.len()];
    widen_to(src, &mut out);
    out
}

/// `src` rounded to f32 (to nearest).
pub fn narrow(src: &[f64]) -> Vec<f32> {
    src.iter().map(|&v| v as f32).collect()
}

/// `src` widened into `dst` (exactly; `dst` as long as `src`).
pub fn widen_to(src: &[f32], dst: &mut [f64]) {
    Arch::new().dispatch(Widen(src, dst));
}
