//! The end of a dense layer in one pass over its column-major output: bias and activation,
//! in f64 or (for `score_precision: f32`) in f32 arithmetic widened to f64.

use crate::Activation;
use crate::elem::{PARALLEL_ELEMENTS, gelu, tanh, tanh_f32};
use crate::{Arch, Simd, WithSimd};

/// Declares a `WithSimd` op `$name` for [`dense_epilogue`] with the element function `$f`.
macro_rules! epilogue_op {
    ($name:ident, $f:expr) => {
        struct $name<'a>(Epilogue<'a>);

        impl WithSimd for $name<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: Simd>(self, _simd: S) {
                let Epilogue { rows, bias, out } = self.0;
                for (j, col) in out.chunks_mut(rows.max(1)).enumerate() {
                    // Without a bias nothing is added: x + 0 would turn −0 into +0.
                    match bias.map(|b| b[j]) {
                        Some(b) => col.iter_mut().for_each(|o| *o = $f(*o + b)),
                        None => col.iter_mut().for_each(|o| *o = $f(*o)),
                    }
                }
            }
        }
    };
}

/// One run of [`dense_epilogue`]: whole columns, `bias` starting at its first.
struct Epilogue<'a> {
    rows: usize,
    bias: Option<&'a [f64]>,
    out: &'a mut [f64],
}

epilogue_op!(TanhEpilogue, tanh);
epilogue_op!(GeluEpilogue, gelu);
epilogue_op!(PlainEpilogue, std::convert::identity);

/// Declares a `WithSimd` op `$name` for [`dense_epilogue_f32`] with the f32 function `$f`.
macro_rules! narrow_epilogue_op {
    ($name:ident, $f:expr) => {
        struct $name<'a>(NarrowEpilogue<'a>);

        impl WithSimd for $name<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: Simd>(self, _simd: S) {
                let NarrowEpilogue { src, rows, bias, out } = self.0;
                // The f32 values go through a small buffer before they are widened: written
                // straight to f64, LLVM computes 8 lanes at a time instead of 16.
                let mut narrow = [0.0f32; 64];
                for (j, col) in out.chunks_mut(rows.max(1)).enumerate() {
                    let from = &src[j * rows..(j + 1) * rows];
                    for (o, x) in col.chunks_mut(narrow.len()).zip(from.chunks(narrow.len())) {
                        let t = &mut narrow[..x.len()];
                        // Without a bias nothing is added: x + 0 would turn −0 into +0.
                        match bias.map(|b| b[j]) {
                            Some(b) => t.iter_mut().zip(x).for_each(|(t, &x)| *t = $f(x + b)),
                            None => t.iter_mut().zip(x).for_each(|(t, &x)| *t = $f(x)),
                        }
                        o.iter_mut().zip(t.iter()).for_each(|(o, &t)| *o = f64::from(t));
                    }
                }
            }
        }
    };
}

/// One run of [`dense_epilogue_f32`]: whole columns, `bias` and `src` starting at its first.
struct NarrowEpilogue<'a> {
    src: &'a [f32],
    rows: usize,
    bias: Option<&'a [f32]>,
    out: &'a mut [f64],
}

/// GELU of an f32 value: the f64 function, rounded (no f32 form of its `erfc` here).
#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    gelu(f64::from(x)) as f32
}

narrow_epilogue_op!(TanhNarrowEpilogue, tanh_f32);
narrow_epilogue_op!(GeluNarrowEpilogue, gelu_f32);
narrow_epilogue_op!(PlainNarrowEpilogue, std::convert::identity);

/// [`dense_epilogue`] in f32 arithmetic, the dense layer of `score_precision: f32` as PyTorch
/// float32 ends it: `out = act(src + bias[col])` with the sum and the activation in f32
/// ([`tanh_f32`]; GELU is the f64 function rounded), widened to f64 (exactly) for the rest of
/// the pass. Split between the pool's threads by whole columns from [`PARALLEL_ELEMENTS`]
/// values; a value's bits do not depend on the split.
pub fn dense_epilogue_f32(src: &[f32], rows: usize, bias: Option<&[f32]>, activation: Activation, out: &mut [f64]) {
    let run = |first_col: usize, out: &mut [f64]| {
        let cols = out.len() / rows.max(1);
        let e = NarrowEpilogue {
            src: &src[first_col * rows..(first_col + cols) * rows],
            rows,
            bias: bias.map(|b| &b[first_col..first_col + cols]),
            out,
        };
        match activation {
            Activation::Tanh => Arch::new().dispatch(TanhNarrowEpilogue(e)),
            Activation::Gelu => Arch::new().dispatch(GeluNarrowEpilogue(e)),
            Activation::None => Arch::new().dispatch(PlainNarrowEpilogue(e)),
        }
    };
    by_columns(rows, out, run);
}

/// Runs `run(first_column, columns)` over the column-major `out` `[rows, cols]`, split between
/// the pool's threads by whole columns from [`PARALLEL_ELEMENTS`] values.
fn by_columns(rows: usize, out: &mut [f64], run: impl Fn(usize, &mut [f64]) + Sync + Send) {
    use rayon::prelude::*;
    let threads = crate::threads();
    let cols = out.len() / rows.max(1);
    if out.len() < PARALLEL_ELEMENTS || threads == 1 || cols < 2 {
        run(0, out);
    } else {
        let per_run = cols.div_ceil(threads);
        out.par_chunks_mut(per_run * rows)
            .enumerate()
            .for_each(|(i, chunk)| run(i * per_run, chunk));
    }
}

/// The end of a dense layer over column-major `[rows, cols]` values, in place and in one pass:
/// `out = act(out + bias[col])`, the same bits as adding the bias and applying the activation
/// in turn. Split between the pool's threads by whole columns from [`PARALLEL_ELEMENTS`]
/// values.
pub fn dense_epilogue(rows: usize, bias: Option<&[f64]>, activation: Activation, out: &mut [f64]) {
    let run = |first_col: usize, out: &mut [f64]| {
        let cols = out.len() / rows.max(1);
        let e = Epilogue {
            rows,
            bias: bias.map(|b| &b[first_col..first_col + cols]),
            out,
        };
        match activation {
            Activation::Tanh => Arch::new().dispatch(TanhEpilogue(e)),
            Activation::Gelu => Arch::new().dispatch(GeluEpilogue(e)),
            Activation::None => Arch::new().dispatch(PlainEpilogue(e)),
        }
    };
    by_columns(rows, out, run);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::widen;

    #[test]
    fn the_dense_epilogues_give_the_bits_of_their_scalar_forms() {
        // 300 columns of 128 rows (~38k values, on the pool) and of 3 rows (one run); −0, 0,
        // infinities and NaN among the values.
        for rows in [128, 3] {
            let cols = 300;
            let src: Vec<f32> = (0..rows * cols)
                .map(|e| match e % 97 {
                    0 => -0.0,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => f32::NAN,
                    _ => ((e * 7919 % 1000) as f32 - 500.0) / 90.0,
                })
                .collect();
            let bias32: Vec<f32> = (0..cols)
                .map(|j| if j % 5 == 0 { 0.0 } else { j as f32 / 77.0 - 1.9 })
                .collect();
            let bias = widen(&bias32);
            for activation in [Activation::Tanh, Activation::Gelu, Activation::None] {
                for with_bias in [true, false] {
                    // f64: the bias, then the activation, as two passes.
                    let mut want = widen(&src);
                    if with_bias {
                        for (col, bj) in want.chunks_exact_mut(rows).zip(&bias) {
                            col.iter_mut().for_each(|v| *v += bj);
                        }
                    }
                    activation.apply_in_place(&mut want);
                    let mut got = widen(&src);
                    dense_epilogue(rows, with_bias.then_some(&bias[..]), activation, &mut got);
                    // f32: the scalar functions, value by value.
                    let mut narrow = vec![f64::NAN; rows * cols];
                    dense_epilogue_f32(&src, rows, with_bias.then_some(&bias32[..]), activation, &mut narrow);
                    for e in 0..rows * cols {
                        let case = format!("{activation:?} bias {with_bias} rows {rows} value {e}");
                        assert_eq!(got[e].to_bits(), want[e].to_bits(), "{case}");
                        let v = if with_bias { src[e] + bias32[e / rows] } else { src[e] };
                        let one = match activation {
                            Activation::Tanh => tanh_f32(v),
                            Activation::Gelu => gelu(f64::from(v)) as f32,
                            Activation::None => v,
                        };
                        assert_eq!(narrow[e].to_bits(), f64::from(one).to_bits(), "{case}, f32");
                    }
                }
            }
        }
    }
}
