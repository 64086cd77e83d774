//! The squared distance of every mapped row to its nearest mapped class centre, the last step
//! of a Mahalanobis score.

use ueb_kernels::gemm::Element;
use ueb_kernels::{Arch, Simd, WithSimd};

/// The squared distance of every row of `y` to its nearest centre: `out[i] = min_k Σ_j
/// (y[j·n + i] − c[k·r + j])²` for column-major rows `y` `[n, r]` and row-major centres `c`
/// `[K, r]`. Each term is `t·t` added to the running sum over `j` in order, with a separate
/// multiply and add (as the plain loop it replaces, so the bits are the same); the minimum
/// skips NaN as `f64::min` does.
///
/// Tiles of 8 rows against 4 centres keep 32 sums in registers, each load of `y` serving 4
/// centres; the plain loop kept one row of sums in memory and ran on SSE2, outside any
/// dispatch (it is what grows with the number of centres; measured: `docs/performance-log.md`).
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
fn distance_tile<Y: Element, const T: usize, const G: usize>(op: &mut MinSqDistances<'_, Y>, row0: usize, k0: usize) {
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
fn distance_rows<Y: Element, const T: usize>(op: &mut MinSqDistances<'_, Y>, row0: usize) {
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

impl<Y: Element> WithSimd for MinSqDistances<'_, Y> {
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
pub(crate) fn min_sq_distances<Y: Element>(op: MinSqDistances<'_, Y>) {
    use rayon::prelude::*;
    let threads = ueb_kernels::threads();
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let wide32 = ueb_kernels::convert::widen(&y32);
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
}
