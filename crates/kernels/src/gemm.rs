//! The one call into the `gemm` crate, behind a safe signature, for f32 and f64: the host
//! encoder pass (`ueb-backbones`), the heads' host products ([`crate::product`]) and the host
//! training of the trainable heads use it.
//!
//! `gemm::gemm` takes raw pointers and strides. [`matmul`] takes slices and checks, before the
//! call, that every element the strides reach lies inside its slice, so no caller can make it
//! read or write out of bounds; the output is a `&mut` borrow, so it cannot alias an input. This
//! module is the workspace's only `unsafe` code (decision B8).
#![allow(unsafe_code)]

/// The element types the products run in (f32 and f64; the trait is sealed, because
/// `gemm::gemm` dispatches on the type at run time and has kernels for these).
pub trait Element:
    Copy
    + Default
    + PartialEq
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + sealed::Sealed
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// The unit roundoff (half the distance from 1 to the next value): 2⁻²⁴ or 2⁻⁵³.
    const UNIT_ROUNDOFF: f64;
    /// The value, exactly, in f64.
    fn to_f64(self) -> f64;
    /// `v` rounded to this type (to nearest).
    fn from_f64(v: f64) -> Self;
    /// The square root (correctly rounded, IEEE 754).
    fn sqrt(self) -> Self;
    /// `v`, exactly.
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Operands whose shapes or strides do not fit their buffers: an internal error (callers build
/// operands from checked shapes), reported rather than read out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal: host matrix product [{m}, {k}]·[{rhs_rows}, {n}] does not fit its buffers")]
pub struct ShapeError {
    /// Rows of the left operand.
    pub m: usize,
    /// Columns of the left operand.
    pub k: usize,
    /// Rows of the right operand.
    pub rhs_rows: usize,
    /// Columns of the right operand.
    pub n: usize,
}

/// A strided matrix operand: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a, T> {
    /// The storage the strides index.
    pub data: &'a [T],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

impl<'a, T> Operand<'a, T> {
    /// A row-major `[rows, cols]` block whose rows are `row_stride` apart.
    pub fn rows(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the largest index the strides reach (0 when empty).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `dst = scale · lhs · rhs` (or `dst += scale · lhs · rhs` with `accumulate`), where `dst` is
/// row-major `[lhs.rows, rhs.cols]` with rows `dst_row_stride` apart. `parallel` lets the
/// kernel split the product over the rayon pool (worth it above a few million multiply–adds).
///
/// # Errors
/// Mismatched shapes or strides that leave a slice: an internal error, never reached from user
/// data (the callers build operands from checked shapes).
pub fn matmul<T: Element>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Operand<'_, T>,
    rhs: Operand<'_, T>,
    scale: T,
    accumulate: bool,
    parallel: bool,
) -> Result<(), ShapeError> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let out = Operand::rows(dst, m, n, dst_row_stride);
    let fits = |o: &Operand<'_, T>| o.extent() <= o.data.len();
    if rhs.rows != k || !fits(&lhs) || !fits(&rhs) || !fits(&out) || (m > 1 && dst_row_stride < n) {
        return Err(ShapeError {
            m,
            k,
            rhs_rows: rhs.rows,
            n,
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let stride = |s: usize| s as isize;
    // SAFETY: the checks above keep every index the kernel forms (row·row_stride +
    // col·col_stride over the operand's rows and columns) inside its slice; `dst` is a unique
    // borrow, so it overlaps neither input, and rows `dst_row_stride ≥ n` apart do not overlap
    // each other.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(dst_row_stride),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            T::ONE,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn strided_products_match_a_plain_loop_and_bad_strides_are_errors() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        // dst rows 4 apart (one spare column), accumulate onto 1.0, scale 2.
        let mut dst = vec![1.0f32; m * 4];
        matmul(
            &mut dst,
            4,
            Operand::rows(&a, m, k, k),
            Operand::rows(&b, k, n, n),
            2.0,
            true,
            false,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert!((dst[i * 4 + j] - (1.0 + 2.0 * want[i * n + j])).abs() < 1e-5);
            }
            assert_eq!(dst[i * 4 + 3], 1.0);
        }
        // The transpose of a [n, k] row-major block.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut d2 = vec![0.0f32; m * n];
        matmul(
            &mut d2,
            n,
            Operand::rows(&a, m, k, k),
            Operand::rows(&bt, n, k, k).t(),
            1.0,
            false,
            true,
        )
        .unwrap();
        for (x, y) in d2.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        let short = &a[..m * k - 1];
        assert!(
            matmul(
                &mut d2,
                n,
                Operand::rows(short, m, k, k),
                Operand::rows(&b, k, n, n),
                1.0,
                false,
                false
            )
            .is_err()
        );
        assert!(
            matmul(
                &mut d2,
                n - 1,
                Operand::rows(&a, m, k, k),
                Operand::rows(&b, k, n, n),
                1.0,
                false,
                false
            )
            .is_err()
        );
    }
}
