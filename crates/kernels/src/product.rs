//! `x · F` into a column-major destination for a right factor `F` in PyTorch weight layout or
//! lower-triangular: the `gemm` crate's products (faer's for the triangular diagonal blocks),
//! one sequential call, fixed column blocks on the rayon pool, or one call split inside,
//! chosen by the work.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};

use crate::gemm::{Element, Operand, ShapeError, matmul};

/// Columns per task of [`product`] with a rectangular right factor: 192 splits a 768-wide
/// product into four equal tasks, two per core (decision T16).
const PRODUCT_BLOCK: usize = 192;
/// Columns per task with a lower-triangular right factor: the tasks' work falls from the first
/// block to the last, so more, narrower ones balance the threads.
const TRIANGULAR_BLOCK: usize = 128;
/// Multiply–adds from which [`product`] hands blocks to the rayon pool: several times a task's
/// start-up (decision T16).
const PARALLEL_WORK: usize = 1 << 21;
/// Multiply–adds from which a rectangular product is one call to the `gemm` crate split over
/// the pool inside (it packs the left factor once, where each block packs it again; decisions
/// T16, B9).
const WHOLE_WORK: usize = 1 << 25;
/// Multiply–adds from which a triangular product is faer's parallel triangular product: from
/// about 32 × 4096 × 4096 it overtakes the blocks (decision B9; measured:
/// `docs/performance-log.md`).
const WHOLE_TRIANGULAR_WORK: usize = 1 << 28;

/// How [`product`] shares its work between threads: one sequential call, column blocks on the
/// pool, or one call split inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partition {
    Sequential,
    Blocks,
    Whole,
}

impl Partition {
    /// The partition for `work` multiply–adds.
    fn of(work: usize, lower: bool) -> Self {
        let whole = if lower { WHOLE_TRIANGULAR_WORK } else { WHOLE_WORK };
        if work >= whole {
            Self::Whole
        } else if work >= PARALLEL_WORK && crate::threads() > 1 {
            Self::Blocks
        } else {
            Self::Sequential
        }
    }
}

/// A row-major `[out, in]` matrix as `[in, out]` (row-major transposes; also the way back,
/// with the dimensions swapped).
pub fn transpose<T: Copy + Default>(w: &[T], out: usize, inp: usize) -> Vec<T> {
    let mut t = vec![T::default(); w.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = w[o * inp + i];
        }
    }
    t
}

/// and `rhs` column-major `[k, m]`, which is also a PyTorch weight `[m, k]` (row-major) taken
/// as `Wᵀ`. With `lower`, `rhs` is square and lower-triangular, and its upper triangle is never
/// read.
///
/// The rectangular products are the `gemm` crate's, faster than faer's here (decision B9). Small
/// products are one sequential call, large ones (from [`WHOLE_WORK`]) one call split over the
/// pool inside.
/// Between the two the columns are cut into fixed blocks, each one sequential product, that
/// the rayon pool's threads take: independent blocks need no synchronisation inside the
/// product. For a triangular factor, block `[a, b)` is `x[:, a..b]·F[a..b, a..b]`, faer's
/// triangular product, plus `x[:, b..]·F[b.., a..b]`, a rectangular one; from
/// [`WHOLE_TRIANGULAR_WORK`] the whole product is faer's parallel triangular one.
///
/// # Errors
/// Operands that do not fit their buffers (an internal error: the callers take the shapes from
/// the head's own dimensions).
pub fn product<T: Element + ComplexField>(
    x: Operand<'_, T>,
    rhs: &[T],
    m: usize,
    lower: bool,
    out: &mut [T],
) -> Result<(), ShapeError> {
    let (n, k) = (x.rows, x.cols);
    let work = if lower { n * k * (k + 1) / 2 } else { n * k * m };
    product_in(Partition::of(work, lower), x, rhs, m, lower, out)
}

/// [`product`] with the partition given.
fn product_in<T: Element + ComplexField>(
    partition: Partition,
    x: Operand<'_, T>,
    rhs: &[T],
    m: usize,
    lower: bool,
    out: &mut [T],
) -> Result<(), ShapeError> {
    use rayon::prelude::*;
    let (n, k) = (x.rows, x.cols);
    let shape_error = ShapeError {
        m: n,
        k,
        rhs_rows: k,
        n: m,
    };
    let fits = x.col_stride == 1 || x.row_stride == 1;
    if !fits || rhs.len() < k * m || out.len() < n * m || (lower && k != m) {
        return Err(shape_error);
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    let rhs = &rhs[..k * m];
    let out = &mut out[..n * m];
    // x[:, from..] and, as a faer view, x[:, from..from + cols].
    let x_from = |from: usize| Operand {
        data: x.data.get(from * x.col_stride..).unwrap_or_default(),
        cols: k - from,
        ..x
    };
    let faer_view = |from: usize, cols: usize| -> Result<MatRef<'_, T>, ShapeError> {
        let v = x_from(from);
        let reach = if v.rows == 0 || cols == 0 {
            0
        } else {
            (v.rows - 1) * v.row_stride + (cols - 1) * v.col_stride + 1
        };
        if reach > v.data.len() {
            return Err(shape_error.clone());
        }
        Ok(if v.col_stride == 1 {
            MatRef::from_row_major_slice_with_stride(v.data, n, cols, v.row_stride)
        } else {
            MatRef::from_column_major_slice_with_stride(v.data, n, cols, v.col_stride)
        })
    };
    // Columns [a, a + dst.len() / n) of the product into `dst` (column-major).
    let block = |a: usize, dst: &mut [T], parallel: bool| -> Result<(), ShapeError> {
        let cols = dst.len() / n;
        let below = if lower { a + cols } else { 0 };
        if lower {
            triangular::matmul(
                MatMut::from_column_major_slice_mut(dst, n, cols),
                BlockStructure::Rectangular,
                Accum::Replace,
                faer_view(a, cols)?,
                BlockStructure::Rectangular,
                MatRef::from_column_major_slice(rhs, k, m).submatrix(a, a, cols, cols),
                BlockStructure::TriangularLower,
                T::ONE,
                if parallel { Par::rayon(0) } else { Par::Seq },
            );
        }
        if below < k {
            // dstᵀ `[cols, n]` (row-major) = F[below.., a..]ᵀ · x[:, below..]ᵀ.
            let f = Operand {
                data: rhs.get(a * k + below..).unwrap_or_default(),
                rows: cols,
                cols: k - below,
                row_stride: k,
                col_stride: 1,
            };
            matmul(dst, n, f, x_from(below).t(), T::ONE, lower, parallel)?;
        }
        Ok(())
    };
    match partition {
        Partition::Sequential => block(0, out, false),
        Partition::Whole => block(0, out, true),
        Partition::Blocks => {
            let width = if lower { TRIANGULAR_BLOCK } else { PRODUCT_BLOCK };
            out.par_chunks_mut(n * width)
                .enumerate()
                .try_for_each(|(i, dst)| block(i * width, dst, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ueb_rng::{Rng64, Xoshiro256};

    #[test]
    fn every_partition_of_a_product_gives_the_textbook_product() {
        // d = 300: three triangular blocks and two rectangular ones, the last ones partial. Every
        // split runs on row-major, column-major and row-strided left operands, in f64 and f32.
        let d = 300;
        let mut rng = Xoshiro256::new(5, 300);
        let f: Vec<f64> = (0..d * d).map(|_| rng.unit() - 0.5).collect();
        let n = 9;
        let x: Vec<f64> = (0..n * d).map(|_| rng.unit() - 0.5).collect();
        let x_cm = transpose(&x, n, d);
        // Rows 3 values apart beyond their d: a row stride of d + 3.
        let x_padded: Vec<f64> = x
            .chunks_exact(d)
            .flat_map(|r| r.iter().copied().chain([f64::NAN; 3]))
            .collect();
        let views = [
            ("row-major", Operand::rows(&x, n, d, d)),
            ("column-major", Operand::rows(&x_cm, d, n, n).t()),
            ("strided", Operand::rows(&x_padded, n, d, d + 3)),
        ];
        for partition in [Partition::Sequential, Partition::Blocks, Partition::Whole] {
            for lower in [false, true] {
                // Column-major `f`; a lower factor's upper triangle holds NaN, which must never be read.
                let rhs: Vec<f64> = (0..d * d)
                    .map(|e| if lower && e % d < e / d { f64::NAN } else { f[e] })
                    .collect();
                // want[j·n + i] = Σ_{k ≥ from} x[i, k]·f[k, j], column-major like the product.
                let want: Vec<f64> = (0..n * d)
                    .map(|e| {
                        let (i, j) = (e % n, e / n);
                        let from = if lower { j } else { 0 };
                        (from..d).map(|k| x[i * d + k] * f[j * d + k]).sum()
                    })
                    .collect();
                for (name, xv) in views {
                    let mut out = vec![f64::NAN; n * d];
                    product_in(partition, xv, &rhs, d, lower, &mut out).unwrap();
                    for (e, (got, want)) in out.iter().zip(&want).enumerate() {
                        let case = format!("{partition:?} lower {lower} {name} ({}, {})", e % n, e / n);
                        assert!((got - want).abs() <= 1e-12, "{case}: {got} vs {want}");
                    }
                }
                let (x32, rhs32) = (crate::convert::narrow(&x), crate::convert::narrow(&rhs));
                let mut out32 = vec![f32::NAN; n * d];
                product_in(partition, Operand::rows(&x32, n, d, d), &rhs32, d, lower, &mut out32).unwrap();
                for (e, (got, want)) in out32.iter().zip(&want).enumerate() {
                    let case = format!("{partition:?} lower {lower} f32 ({}, {})", e % n, e / n);
                    assert!((f64::from(*got) - want).abs() <= 1e-4, "{case}: {got} vs {want}");
                }
            }
        }
        // Operands too short for their shapes are errors, not reads out of bounds.
        let mut out = vec![0.0; n * d];
        assert!(product(Operand::rows(&x[..n * d - 1], n, d, d), &f, d, false, &mut out).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f[..d * d - 1], d, false, &mut out).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f, d, false, &mut out[..n * d - 1]).is_err());
        assert!(product(Operand::rows(&x, n, d, d), &f[..d * (d - 1)], d - 1, true, &mut out).is_err());
    }
}
