//! The one place for ueb's CPU numeric kernels: the checked call into the `gemm` crate, the
//! branch-free vectorised element functions (f64 and f32), the dot-product and
//! product-splitting kernels of the host forward passes, and widening/narrowing copies.
//!
//! Nothing here knows about caches, heads or models: callers pass slices and shapes. This crate
//! depends on no other ueb crate, and it holds the workspace's only `unsafe` code (the
//! [`gemm`] wrapper). Every kernel runs inside pulp's [`Arch::dispatch`] (re-exported from
//! faer), which compiles its loop for the best instruction set the CPU offers; the functions
//! use separate multiplies and adds unless they say otherwise, so their bits do not depend on
//! that instruction set. Work is split between the rayon pool's threads only where a value's
//! result does not depend on the split.
//!
//! With the `burn` feature, [`burn_ops`] adds the two helpers that need burn's tensors.

pub mod activation;
#[cfg(feature = "burn")]
pub mod burn_ops;
pub mod convert;
pub mod dense;
pub mod dots;
pub mod elem;
pub mod elem32;
pub mod gemm;
pub mod product;

pub use activation::Activation;
pub use elem::clear_upper_state;
/// pulp's dispatch, re-exported by faer: every kernel here, [`map_in_place!`] and the host
/// encoder's own passes run inside it.
pub use faer::traits::pulp::{Arch, Simd, WithSimd};

/// Threads a kernel may use: the size of the pool faer would use (`RAYON_NUM_THREADS` or the
/// number of cores).
pub fn threads() -> usize {
    match faer::Par::rayon(0) {
        faer::Par::Rayon(n) => n.get(),
        faer::Par::Seq => 1,
    }
}

/// Declares a `WithSimd` op `$name` that applies the element function `$f` to every value of
/// a `&mut [$t]` in place; run inside pulp's dispatch ([`Arch`]), the loop is compiled (and
/// auto-vectorised) for the CPU's best instruction set. One struct per function: through a
/// generic closure LLVM may keep the function out of line, and nothing vectorises.
#[macro_export]
macro_rules! map_in_place {
    ($name:ident, $t:ty, $f:expr) => {
        struct $name<'a>(&'a mut [$t]);

        impl $crate::WithSimd for $name<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: $crate::Simd>(self, _simd: S) {
                for x in self.0.iter_mut() {
                    *x = $f(*x);
                }
            }
        }
    };
}
