//! Vectorised f64 element functions of host scoring (`tanh`, GELU), and the vector-register
//! fix that faer's matrix kernels need.
//!
//! The element functions are branch-free — every lane computes every case and a select keeps
//! one — so that LLVM vectorises the loops over them; the loops run inside pulp's
//! `Arch::dispatch` (re-exported by faer), which compiles them for the best instruction set the
//! CPU offers (AVX2 + FMA with the pulp features this workspace enables, SSE2 otherwise). They
//! use separate multiplies and adds, never fused ones, so the results are the same bits
//! whichever instruction set runs them (Rust never contracts `a * b + c` on its own).
//!
//! `libm::tanh` is scalar and costs 12–19 ns per value on the build machine; a 128-row batch of
//! a 768-wide `mlp` head evaluates 98 304 of them, more time than PyTorch's whole forward pass.
//!
//! **Upper vector-register state.** faer 0.24's AVX-512 matrix kernels (the hand-written
//! assembly of `private-gemm-x86`) return without `vzeroupper`. Until something clears the upper
//! halves of the vector registers, every SSE-encoded instruction on that thread pays a
//! transition penalty, which makes glibc's scalar `exp`/`ln`/`ln_1p` ~25× slower (`exp`: 5–9 →
//! 160–230 ns on the build machine). [`clear_upper_state`] clears it; the score paths call it
//! after their faer products so that the next head on the thread (or the caller's own libm
//! calls) runs at full speed.

// The published digits of the approximations are kept (more than f64 holds), so that they can
// be compared with their sources.
#![allow(clippy::excessive_precision)]

/// pulp's dispatch, re-exported by faer: [`map_in_place!`] and the host encoder use it.
pub use faer::traits::pulp::{Arch, Simd, WithSimd};

/// Declares a `WithSimd` op `$name` that applies the element function `$f` to every value of
/// a `&mut [$t]` in place; run inside pulp's dispatch ([`Arch`]), the loop is compiled (and
/// auto-vectorised) for the CPU's best instruction set. One struct per function: through a
/// generic closure LLVM may keep the function out of line, and nothing vectorises. Exported for
/// the host encoder's f32 element passes (`ueb-backbones`).
#[macro_export]
macro_rules! map_in_place {
    ($name:ident, $t:ty, $f:expr) => {
        struct $name<'a>(&'a mut [$t]);

        impl $crate::simd::WithSimd for $name<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: $crate::simd::Simd>(self, _simd: S) {
                for x in self.0.iter_mut() {
                    *x = $f(*x);
                }
            }
        }
    };
}

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
/// (~30 µs of one core's tanh; a task starts in a few microseconds). Each value's result does
/// not depend on the run it falls in: the vector and scalar forms give the same bits.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Runs `f` on `v`, split between the pool's threads from [`PARALLEL_ELEMENTS`] values.
fn in_runs(v: &mut [f64], f: impl Fn(&mut [f64]) + Sync + Send) {
    use rayon::prelude::*;
    let threads = crate::host::threads();
    if v.len() < PARALLEL_ELEMENTS || threads == 1 {
        f(v);
    } else {
        v.par_chunks_mut(v.len().div_ceil(threads).next_multiple_of(8))
            .for_each(f);
    }
}

/// `tanh` of every value in place (see [`tanh`] for the accuracy).
pub(crate) fn tanh_in_place(v: &mut [f64]) {
    in_runs(v, |run| Arch::new().dispatch(TanhInPlace(run)));
}

/// GELU (the exact erf form) of every value in place (see [`gelu`] for the accuracy).
pub(crate) fn gelu_in_place(v: &mut [f64]) {
    in_runs(v, |run| Arch::new().dispatch(GeluInPlace(run)));
}

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
pub(crate) fn dense_epilogue_f32(
    src: &[f32],
    rows: usize,
    bias: Option<&[f32]>,
    activation: crate::cache::Activation,
    out: &mut [f64],
) {
    use crate::cache::Activation;
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
    let threads = crate::host::threads();
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
pub(crate) fn dense_epilogue(rows: usize, bias: Option<&[f64]>, activation: crate::cache::Activation, out: &mut [f64]) {
    use crate::cache::Activation;
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

/// The dot products of up to four rows with columns of a matrix, for products with few rows
/// (a batch of 1–4 rows times a d × d factor streams the factor once, and faer's kernels reach
/// only part of the memory bandwidth there): `out[k·R + r] = Σ_{i ≥ s_k} x_r[i]·col_k[i]` for
/// the columns `k ∈ cols`, where `col_k` is column k of the column-major `factor` `[d, m]` and
/// `s_k = k` when the factor is lower-triangular (its zeros are not read), 0 otherwise.
pub(crate) struct ColumnDots<'a, const R: usize> {
    /// The rows, each of length d.
    pub rows: [&'a [f64]; R],
    /// The factor, column-major `[d, m]`.
    pub factor: &'a [f64],
    /// d.
    pub dim: usize,
    /// Whether the factor is lower-triangular.
    pub lower: bool,
    /// The first column.
    pub first: usize,
    /// `R` outputs per column, for `out.len() / R` columns from `first` on.
    pub out: &'a mut [f64],
}

impl<const R: usize> WithSimd for ColumnDots<'_, R> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let d = self.dim;
        for (k_rel, out) in self.out.chunks_exact_mut(R).enumerate() {
            let k = self.first + k_rel;
            let start = if self.lower { k } else { 0 };
            let col = &self.factor[k * d + start..(k + 1) * d];
            let (col_v, col_t) = S::as_simd_f64s(col);
            let xs: [(&[S::f64s], &[f64]); R] = std::array::from_fn(|r| S::as_simd_f64s(&self.rows[r][start..]));
            // Two accumulators per row hide the latency of the fused multiply–add.
            let mut acc = [[simd.splat_f64s(0.0); 2]; R];
            let pairs = col_v.chunks_exact(2);
            let odd = pairs.remainder();
            for (i, c) in pairs.enumerate() {
                for r in 0..R {
                    acc[r][0] = simd.mul_add_f64s(xs[r].0[2 * i], c[0], acc[r][0]);
                    acc[r][1] = simd.mul_add_f64s(xs[r].0[2 * i + 1], c[1], acc[r][1]);
                }
            }
            for (r, o) in out.iter_mut().enumerate() {
                let mut a = simd.add_f64s(acc[r][0], acc[r][1]);
                if let Some(&c) = odd.first() {
                    a = simd.mul_add_f64s(xs[r].0[col_v.len() - 1], c, a);
                }
                let mut sum = simd.reduce_sum_f64s(a);
                for (xv, cv) in xs[r].1.iter().zip(col_t) {
                    sum = xv.mul_add(*cv, sum);
                }
                *o = sum;
            }
        }
    }
}

/// Runs [`ColumnDots`] compiled for the CPU's best instruction set.
pub(crate) fn column_dots<const R: usize>(op: ColumnDots<'_, R>) {
    Arch::new().dispatch(op);
}

/// The squared distance of every row of `y` to its nearest centre: `out[i] = min_k Σ_j
/// (y[j·n + i] − c[k·r + j])²` for column-major rows `y` `[n, r]` and row-major centres `c`
/// `[K, r]`. Each term is `t·t` added to the running sum over `j` in order, with a separate
/// multiply and add (as the plain loop it replaces, so the bits are the same); the minimum
/// skips NaN as `f64::min` does.
///
/// Tiles of 8 rows against 4 centres keep 32 sums in registers, each load of `y` serving 4
/// centres; the plain loop kept one row of sums in memory and ran on SSE2, outside any
/// dispatch (it is what grows with the number of centres: 20 centres cost about 0.9 ms more
/// than 2 at batch 128, r = 768, in an earlier measurement).
pub(crate) struct MinSqDistances<'a, Y = f64> {
    /// The mapped rows, column-major `[n, r]`, f64 or f32 (widened exactly as they are read).
    pub y: &'a [Y],
    /// n.
    pub rows: usize,
    /// The mapped centres, row-major `[K, r]`.
    pub centres: &'a [f64],
    /// r.
    pub rank: usize,
    /// The minimum over the centres of rows `first..first + out.len()`.
    pub out: &'a mut [f64],
    /// The first row of `out`.
    pub first: usize,
}

/// Rows per tile of [`MinSqDistances`].
const DIST_ROWS: usize = 8;
/// Centres per tile of [`MinSqDistances`].
const DIST_CENTRES: usize = 4;

/// Sums of squared differences of `T` consecutive rows (from `row0`) to `G` centres (from
/// `k0`), folded into `best` by `min`.
#[inline(always)]
fn distance_tile<Y: crate::gemm::Element, const T: usize, const G: usize>(
    op: &mut MinSqDistances<'_, Y>,
    row0: usize,
    k0: usize,
) {
    let (n, r) = (op.rows, op.rank);
    let mut acc = [[0.0f64; T]; G];
    let centres: [&[f64]; G] = std::array::from_fn(|g| &op.centres[(k0 + g) * r..(k0 + g + 1) * r]);
    for j in 0..r {
        let mut yv = [0.0f64; T];
        for (v, y) in yv.iter_mut().zip(&op.y[j * n + row0..j * n + row0 + T]) {
            *v = y.to_f64();
        }
        for (a, c) in acc.iter_mut().zip(&centres) {
            let m = c[j];
            for (a, y) in a.iter_mut().zip(yv) {
                let t = y - m;
                *a += t * t;
            }
        }
    }
    let o = row0 - op.first;
    for a in &acc {
        for (b, v) in op.out[o..o + T].iter_mut().zip(a) {
            *b = b.min(*v);
        }
    }
}

/// All centres against `T` consecutive rows from `row0`.
#[inline(always)]
fn distance_rows<Y: crate::gemm::Element, const T: usize>(op: &mut MinSqDistances<'_, Y>, row0: usize) {
    let k = op.centres.len() / op.rank.max(1);
    let mut k0 = 0;
    while k0 + DIST_CENTRES <= k {
        distance_tile::<Y, T, DIST_CENTRES>(op, row0, k0);
        k0 += DIST_CENTRES;
    }
    while k0 < k {
        distance_tile::<Y, T, 1>(op, row0, k0);
        k0 += 1;
    }
}

impl<Y: crate::gemm::Element> WithSimd for MinSqDistances<'_, Y> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, _simd: S) {
        self.out.iter_mut().for_each(|b| *b = f64::INFINITY);
        if self.rank == 0 {
            return;
        }
        let n = self.first + self.out.len();
        let mut row0 = self.first;
        while row0 + DIST_ROWS <= n {
            distance_rows::<Y, DIST_ROWS>(&mut self, row0);
            row0 += DIST_ROWS;
        }
        while row0 < n {
            distance_rows::<Y, 1>(&mut self, row0);
            row0 += 1;
        }
    }
}

/// Runs [`MinSqDistances`] compiled for the CPU's best instruction set, its rows split between
/// the pool's threads (in runs of whole tiles) from 2¹⁸ subtract–multiply–adds: a row's sums
/// do not depend on the split.
pub(crate) fn min_sq_distances<Y: crate::gemm::Element>(op: MinSqDistances<'_, Y>) {
    use rayon::prelude::*;
    let threads = crate::host::threads();
    let work = op.out.len() * op.centres.len();
    if work < 1 << 18 || threads == 1 {
        Arch::new().dispatch(op);
        return;
    }
    let per = op.out.len().div_ceil(threads).next_multiple_of(DIST_ROWS);
    let (y, rows, centres, rank, first) = (op.y, op.rows, op.centres, op.rank, op.first);
    op.out.par_chunks_mut(per).enumerate().for_each(|(t, out)| {
        Arch::new().dispatch(MinSqDistances {
            y,
            rows,
            centres,
            rank,
            out,
            first: first + t * per,
        });
    });
}

/// `out[i·m + k] = Σ_j x[i·d + j]·w[k·d + j]` in f64 for row-major rows `x` `[n, d]` and `w`
/// `[m, d]` of f32 or f64 values (widened exactly): the products with few rows or few outputs —
/// a linear head's logits, and an `mlp` head's layers for a batch of a few rows, whose weights
/// then stream from memory once, as f32 (half the bytes of a widened copy).
///
/// A tile of up to four rows of `x` meets four rows of `w`: 16 accumulators, so each loaded
/// vector serves four multiply–adds (one row against four outputs reloaded every weight from
/// the L2 cache, which bounded the old kernel at d = 4096). Each output's sum runs in the same
/// order whatever tile or thread computes it (see [`dot_tile`]).
pub(crate) struct RowDots<'a, X, W> {
    /// The rows, row-major `[n, d]`.
    pub x: &'a [X],
    /// The weights, row-major `[m, d]`.
    pub w: &'a [W],
    /// d.
    pub dim: usize,
    /// The outputs from this row of `w` on (so that threads can take runs of outputs).
    pub first: usize,
    /// `[n, cols]`, row-major: the dots with rows `first..first + cols` of `w`.
    pub out: &'a mut [f64],
    /// The number of outputs per row in `out`.
    pub cols: usize,
    /// Whether `w` is the transpose of a lower-triangular factor (row `k` is zero before
    /// entry `k`): a tile of outputs `k..k + 4` then starts its dots at entry `k`, and reads
    /// at most three of the zeros.
    pub lower: bool,
}

/// Outputs per tile.
const DOT_G: usize = 4;
/// Lanes of a dot product's accumulator: eight, whatever the vector width, so that the sums
/// (and their rounding) are the same on every instruction set.
const DOT_LANES: usize = 8;

/// Widens `src` into `dst` (a plain loop, which LLVM vectorises inside the dispatch).
#[inline(always)]
fn widen_into<T: crate::gemm::Element>(src: &[T], dst: &mut [f64]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v.to_f64();
    }
}

/// The dots of `R` rows with `DOT_G` weight rows (repeat a weight row to pad), `[R][DOT_G]`.
/// Both sides are widened in registers as they are loaded (LLVM turns the fixed 8-lane loops
/// into vector conversions and fused multiply–adds); lane `l` sums the terms `j ≡ l (mod 8)`
/// in order, then the lanes are added in a fixed tree and the tail of `d mod 8` terms follows.
#[inline(always)]
fn dot_tile<X: crate::gemm::Element, W: crate::gemm::Element, const R: usize>(
    xs: [&[X]; R],
    ws: [&[W]; DOT_G],
) -> [[f64; DOT_G]; R] {
    let d = xs[0].len();
    let body = d / DOT_LANES;
    let mut acc = [[[0.0f64; DOT_LANES]; DOT_G]; R];
    let mut xv = [[0.0f64; DOT_LANES]; R];
    let mut wv = [[0.0f64; DOT_LANES]; DOT_G];
    for v in 0..body {
        for r in 0..R {
            let c = &xs[r][v * DOT_LANES..(v + 1) * DOT_LANES];
            for l in 0..DOT_LANES {
                xv[r][l] = c[l].to_f64();
            }
        }
        for g in 0..DOT_G {
            let c = &ws[g][v * DOT_LANES..(v + 1) * DOT_LANES];
            for l in 0..DOT_LANES {
                wv[g][l] = c[l].to_f64();
            }
        }
        for r in 0..R {
            for g in 0..DOT_G {
                for l in 0..DOT_LANES {
                    acc[r][g][l] = xv[r][l].mul_add(wv[g][l], acc[r][g][l]);
                }
            }
        }
    }
    std::array::from_fn(|r| {
        std::array::from_fn(|g| {
            let a = &acc[r][g];
            let mut sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
            for j in body * DOT_LANES..d {
                sum = xs[r][j].to_f64().mul_add(ws[g][j].to_f64(), sum);
            }
            sum
        })
    })
}

impl<X: crate::gemm::Element, W: crate::gemm::Element> RowDots<'_, X, W> {
    #[inline(always)]
    fn rows<const R: usize>(&mut self, i0: usize) {
        let (d, cols, first) = (self.dim, self.cols, self.first);
        let xs: [&[X]; R] = std::array::from_fn(|r| &self.x[(i0 + r) * d..(i0 + r + 1) * d]);
        let mut k = 0;
        while k < cols {
            let g_len = DOT_G.min(cols - k);
            // A short last tile repeats its last weight row; the extra outputs are dropped.
            let start = if self.lower { first + k } else { 0 };
            let ws: [&[W]; DOT_G] = std::array::from_fn(|g| {
                let row = first + k + g.min(g_len - 1);
                &self.w[row * d + start..(row + 1) * d]
            });
            let v = dot_tile::<X, W, R>(xs.map(|x| &x[start..]), ws);
            for (r, vr) in v.iter().enumerate() {
                let o = (i0 + r) * cols + k;
                self.out[o..o + g_len].copy_from_slice(&vr[..g_len]);
            }
            k += g_len;
        }
    }
}

impl<X: crate::gemm::Element, W: crate::gemm::Element> WithSimd for RowDots<'_, X, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, _simd: S) {
        let n = self.out.len() / self.cols.max(1);
        let mut i = 0;
        while i + 4 <= n {
            self.rows::<4>(i);
            i += 4;
        }
        match n - i {
            1 => self.rows::<1>(i),
            2 => self.rows::<2>(i),
            3 => self.rows::<3>(i),
            _ => {}
        }
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
pub(crate) fn widen(src: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; src.len()];
    widen_to(src, &mut out);
    out
}

/// `src` rounded to f32 (to nearest).
pub(crate) fn narrow(src: &[f64]) -> Vec<f32> {
    src.iter().map(|&v| v as f32).collect()
}

/// `src` widened into `dst` (exactly; `dst` as long as `src`).
pub(crate) fn widen_to(src: &[f32], dst: &mut [f64]) {
    Arch::new().dispatch(Widen(src, dst));
}

/// Bounds `0 = b₀ < b₁ < … = m` that cut the `m` outputs of a dot-product kernel into at most
/// `threads` runs of about equal work, each inner bound a multiple of `align`: output `k` costs
/// `dim` multiply–adds, or `dim − k` when the factor is lower-triangular (its column `k` starts
/// at the diagonal).
pub(crate) fn balanced_runs(m: usize, dim: usize, lower: bool, threads: usize, align: usize) -> Vec<usize> {
    // Multiply–adds of the outputs before output k (increasing in k).
    let work_before = |k: usize| {
        if lower {
            k * dim - k * k.saturating_sub(1) / 2
        } else {
            k * dim
        }
    };
    let total = work_before(m);
    let mut bounds = vec![0];
    for t in 1..threads.max(1) {
        let target = total / threads * t;
        // The first output whose preceding work reaches the target.
        let (mut lo, mut hi) = (bounds[bounds.len() - 1], m);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if work_before(mid) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        bounds.push(lo.next_multiple_of(align.max(1)).min(m));
    }
    bounds.push(m);
    bounds.dedup();
    bounds
}

/// Multiply–adds from which [`row_dots`] splits its work between threads (a rayon task is
/// a few microseconds; 2²⁰ multiply–adds are ~100 µs on one core).
const PARALLEL_ROW_DOTS: usize = 1 << 18;

/// `out = x · wᵀ` in f64 (see [`RowDots`]) for `x` `[n, d]`, `w` `[m, d]`, `out` `[n, m]`, all
/// row-major; threads take runs of rows (of outputs when there are only a few rows), which
/// changes no sum. Each part runs compiled for the CPU's best instruction set.
pub(crate) fn row_dots<X: crate::gemm::Element, W: crate::gemm::Element>(
    x: &[X],
    w: &[W],
    dim: usize,
    out: &mut [f64],
) {
    factor_dots(x, w, dim, false, out);
}

/// [`row_dots`] with `w` the transpose of a factor `F` `[d, r]` (`F` column-major), so that
/// `out = x · F`; with `lower`, `F` is lower-triangular (`r = d`, zero above the diagonal) and a
/// tile of outputs starts its dots at its first output's diagonal (see [`RowDots::lower`]).
pub(crate) fn factor_dots<X: crate::gemm::Element, W: crate::gemm::Element>(
    x: &[X],
    w: &[W],
    dim: usize,
    lower: bool,
    out: &mut [f64],
) {
    use rayon::prelude::*;
    let m = w.len() / dim.max(1);
    if m == 0 || dim == 0 {
        out.fill(0.0);
        return;
    }
    let n = out.len() / m;
    let threads = crate::host::threads();
    let run = |x: &[X], first: usize, out: &mut [f64], cols: usize| {
        Arch::new().dispatch(RowDots {
            x,
            w,
            dim,
            first,
            out,
            cols,
            lower,
        });
    };
    if n * m * dim < PARALLEL_ROW_DOTS || threads == 1 {
        run(x, 0, out, m);
    } else if n >= 4 * threads {
        // Runs of rows, a multiple of the 4-row tile.
        let per = n.div_ceil(threads).next_multiple_of(4);
        out.par_chunks_mut(per * m)
            .zip(x.par_chunks(per * dim))
            .for_each(|(o, xr)| run(xr, 0, o, m));
    } else {
        // Few rows: runs of outputs of equal work, each starting on a 4-output tile (so that
        // the tiles, and with them the sums, are the same whatever the split), into per-run
        // buffers.
        let bounds = balanced_runs(m, dim, lower, threads, DOT_G);
        let parts: Vec<(usize, Vec<f64>)> = bounds
            .windows(2)
            .map(|b| (b[0], b[1]))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(k0, k1)| {
                let cols = k1 - k0;
                let mut part = vec![0.0; n * cols];
                run(x, k0, &mut part, cols);
                (k0, part)
            })
            .collect();
        for (k0, part) in parts {
            let cols = part.len() / n.max(1);
            for i in 0..n {
                out[i * m + k0..i * m + k0 + cols].copy_from_slice(&part[i * cols..(i + 1) * cols]);
            }
        }
    }
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
pub(crate) fn tanh(x: f64) -> f64 {
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
pub(crate) fn tanh_f32(x: f32) -> f32 {
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
pub(crate) fn gelu(x: f64) -> f64 {
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
    fn tiled_distances_equal_the_plain_loop_bit_for_bit() {
        // Row counts below, at and off the tile size; centre counts below, at and off theirs.
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
        };
        // (77, 5, 700) is above the threading cut-off: two runs of rows, the second off the tile.
        for (n, k, r) in [
            (1, 1, 5),
            (3, 2, 7),
            (8, 4, 16),
            (13, 5, 9),
            (130, 20, 33),
            (17, 9, 0),
            (77, 5, 700),
        ] {
            let y: Vec<f64> = (0..n * r).map(|_| next()).collect();
            let c: Vec<f64> = (0..k * r).map(|_| next()).collect();
            let mut got = vec![0.0; n];
            min_sq_distances(MinSqDistances {
                y: &y,
                rows: n,
                centres: &c,
                rank: r,
                out: &mut got,
                first: 0,
            });
            // f32 rows, widened as they are read: the bits of the f64 kernel on their widening.
            let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            let wide32 = widen(&y32);
            let (mut got32, mut want32) = (vec![0.0; n], vec![0.0; n]);
            min_sq_distances(MinSqDistances {
                y: &y32[..],
                rows: n,
                centres: &c,
                rank: r,
                out: &mut got32,
                first: 0,
            });
            min_sq_distances(MinSqDistances {
                y: &wide32[..],
                rows: n,
                centres: &c,
                rank: r,
                out: &mut want32,
                first: 0,
            });
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got32), bits(&want32), "f32 rows, n {n} k {k} r {r}");
            if r > 0 {
                assert_ne!(got32, got, "f32 rows are not the f64 rows, n {n} k {k} r {r}");
            }
            for i in 0..n {
                let mut best = f64::INFINITY;
                for mu in c.chunks_exact(r.max(1)).take(if r == 0 { 0 } else { k }) {
                    let mut a = 0.0f64;
                    for (j, m) in mu.iter().enumerate() {
                        let t = y[j * n + i] - m;
                        a += t * t;
                    }
                    best = best.min(a);
                }
                assert_eq!(got[i].to_bits(), best.to_bits(), "n {n} k {k} r {r} row {i}");
            }
        }
    }

    #[test]
    fn row_dots_sum_in_one_documented_order_whatever_the_tiles_and_threads() {
        // Row counts below, at and off the 4-row tile; output counts off the 4-output tile;
        // d with a tail of 3; sizes on both sides of the threading cut-off, splitting rows
        // (64 rows) and outputs (2 rows × 600).
        use ueb_rng::{Rng64, Xoshiro256};
        let mut rng = Xoshiro256::new(17, 1003);
        let mut next = || (rng.unit() * 4.0 - 2.0) as f32;
        let d = 1003;
        for (n, m) in [(1, 1), (2, 3), (3, 4), (5, 7), (64, 200), (2, 600), (9, 2)] {
            let x: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let w: Vec<f32> = (0..m * d).map(|_| next()).collect();
            let mut got = vec![f64::NAN; n * m];
            row_dots(&x, &w, d, &mut got);
            let hidden: Vec<f64> = x.iter().map(|&v| f64::from(v) * 0.5).collect();
            let mut got_wide = vec![f64::NAN; n * m];
            row_dots(&hidden, &w, d, &mut got_wide);
            for i in 0..n {
                for k in 0..m {
                    let dot = |xs: &dyn Fn(usize) -> f64| {
                        let mut lanes = [0.0f64; DOT_LANES];
                        let body = d / DOT_LANES * DOT_LANES;
                        for j in 0..body {
                            lanes[j % DOT_LANES] = xs(j).mul_add(f64::from(w[k * d + j]), lanes[j % DOT_LANES]);
                        }
                        let l = lanes;
                        let mut sum = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
                        for j in body..d {
                            sum = xs(j).mul_add(f64::from(w[k * d + j]), sum);
                        }
                        sum
                    };
                    let want = dot(&|j| f64::from(x[i * d + j]));
                    assert_eq!(got[i * m + k].to_bits(), want.to_bits(), "n {n} m {m} ({i}, {k})");
                    let want = dot(&|j| hidden[i * d + j]);
                    assert_eq!(
                        got_wide[i * m + k].to_bits(),
                        want.to_bits(),
                        "f64 rows: n {n} m {m} ({i}, {k})"
                    );
                }
            }
        }
    }

    #[test]
    fn balanced_runs_cover_the_outputs_in_aligned_runs_of_equal_work() {
        for (m, dim, lower, threads, align) in [
            (603, 603, true, 2, 4),
            (768, 768, false, 3, 4),
            (40, 40, true, 3, 1),
            (5, 9, false, 8, 4),
        ] {
            let b = balanced_runs(m, dim, lower, threads, align);
            assert_eq!((b[0], b[b.len() - 1]), (0, m), "{b:?}");
            assert!(b.len() <= threads + 1 && b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
            assert!(b[1..b.len() - 1].iter().all(|k| k % align == 0), "{b:?}");
            let cost = |k: usize| if lower { dim - k } else { dim };
            let work: Vec<usize> = b.windows(2).map(|w| (w[0]..w[1]).map(cost).sum()).collect();
            // Each run is within `align` outputs' work of an equal share.
            let share = work.iter().sum::<usize>() / threads;
            if b.len() == threads + 1 {
                assert!(
                    work.iter().all(|&w| w.abs_diff(share) <= (align + 1) * dim),
                    "{b:?} {work:?}"
                );
            }
        }
    }

    #[test]
    fn lower_factor_dots_start_each_tile_on_its_diagonal() {
        // w = Fᵀ of a lower-triangular F: row k is zero from the tile's start to k and NaN
        // before (never to be read). Sizes split rows (64), outputs by work (2 rows), or
        // neither (1 row of a small factor).
        use ueb_rng::{Rng64, Xoshiro256};
        let mut rng = Xoshiro256::new(19, 603);
        for (n, d) in [(1, 37), (2, 603), (3, 603), (64, 131)] {
            let x: Vec<f64> = (0..n * d).map(|_| rng.unit() * 4.0 - 2.0).collect();
            let w: Vec<f32> = (0..d * d)
                .map(|e| {
                    let (k, j) = (e / d, e % d);
                    let start = k - k % DOT_G;
                    if j < start {
                        f32::NAN
                    } else if j < k {
                        0.0
                    } else {
                        (rng.unit() * 4.0 - 2.0) as f32
                    }
                })
                .collect();
            let mut got = vec![f64::NAN; n * d];
            factor_dots(&x, &w, d, true, &mut got);
            for i in 0..n {
                for k in 0..d {
                    let s = k - k % DOT_G;
                    let len = d - s;
                    let mut lanes = [0.0f64; DOT_LANES];
                    let body = len / DOT_LANES * DOT_LANES;
                    let term = |j: usize, acc: f64| x[i * d + s + j].mul_add(f64::from(w[k * d + s + j]), acc);
                    for j in 0..body {
                        lanes[j % DOT_LANES] = term(j, lanes[j % DOT_LANES]);
                    }
                    let l = lanes;
                    let mut want = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
                    for j in body..len {
                        want = term(j, want);
                    }
                    assert_eq!(got[i * d + k].to_bits(), want.to_bits(), "n {n} d {d} ({i}, {k})");
                }
            }
        }
    }

    #[test]
    fn the_dense_epilogues_give_the_bits_of_their_scalar_forms() {
        use crate::cache::Activation;
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
