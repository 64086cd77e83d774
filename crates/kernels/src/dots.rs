//! Dot-product kernels for products with few rows or few outputs, which stream their weights
//! once instead of packing them: each output's sum runs in one documented order whatever tile
//! or thread computes it.

use crate::gemm::Element;
use crate::{Arch, Simd, WithSimd};

/// The dot products of up to four rows with columns of a matrix, for products with few rows
/// (a batch of 1–4 rows times a d × d factor streams the factor once, and faer's kernels reach
/// only part of the memory bandwidth there): `out[k·R + r] = Σ_{i ≥ s_k} x_r[i]·col_k[i]` for
/// the columns `k ∈ cols`, where `col_k` is column k of the column-major `factor` `[d, m]` and
/// `s_k = k` when the factor is lower-triangular (its zeros are not read), 0 otherwise.
pub struct ColumnDots<'a, const R: usize> {
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
pub fn column_dots<const R: usize>(op: ColumnDots<'_, R>) {
    Arch::new().dispatch(op);
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
pub struct RowDots<'a, X, W> {
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

/// The dots of `R` rows with `DOT_G` weight rows (repeat a weight row to pad), `[R][DOT_G]`.
/// Both sides are widened in registers as they are loaded (LLVM turns the fixed 8-lane loops
/// into vector conversions and fused multiply–adds); lane `l` sums the terms `j ≡ l (mod 8)`
/// in order, then the lanes are added in a fixed tree and the tail of `d mod 8` terms follows.
#[inline(always)]
fn dot_tile<X: Element, W: Element, const R: usize>(xs: [&[X]; R], ws: [&[W]; DOT_G]) -> [[f64; DOT_G]; R] {
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

impl<X: Element, W: Element> RowDots<'_, X, W> {
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

impl<X: Element, W: Element> WithSimd for RowDots<'_, X, W> {
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

/// Bounds `0 = b₀ < b₁ < … = m` that cut the `m` outputs of a dot-product kernel into at most
/// `threads` runs of about equal work, each inner bound a multiple of `align`: output `k` costs
/// `dim` multiply–adds, or `dim − k` when the factor is lower-triangular (its column `k` starts
/// at the diagonal).
pub fn balanced_runs(m: usize, dim: usize, lower: bool, threads: usize, align: usize) -> Vec<usize> {
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

/// Multiply–adds from which [`row_dots`] splits its work between threads: several times a rayon
/// task's start-up (decision T16).
const PARALLEL_ROW_DOTS: usize = 1 << 18;

/// `out = x · wᵀ` in f64 (see [`RowDots`]) for `x` `[n, d]`, `w` `[m, d]`, `out` `[n, m]`, all
/// row-major; threads take runs of rows (of outputs when there are only a few rows), which
/// changes no sum. Each part runs compiled for the CPU's best instruction set.
pub fn row_dots<X: Element, W: Element>(x: &[X], w: &[W], dim: usize, out: &mut [f64]) {
    factor_dots(x, w, dim, false, out);
}

/// [`row_dots`] with `w` the transpose of a factor `F` `[d, r]` (`F` column-major), so that
/// `out = x · F`; with `lower`, `F` is lower-triangular (`r = d`, zero above the diagonal) and a
/// tile of outputs starts its dots at its first output's diagonal (see [`RowDots::lower`]).
pub fn factor_dots<X: Element, W: Element>(x: &[X], w: &[W], dim: usize, lower: bool, out: &mut [f64]) {
    use rayon::prelude::*;
    let m = w.len() / dim.max(1);
    if m == 0 || dim == 0 {
        out.fill(0.0);
        return;
    }
    let n = out.len() / m;
    let threads = crate::threads();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
