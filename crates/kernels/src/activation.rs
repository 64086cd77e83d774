//! The activation between a classifier's `dense` and `out_proj` layers, as the feature cache
//! names it (`tanh`, `gelu`, `none`), and its f64 host kernels.

use serde::{Deserialize, Serialize};

/// Activation between `dense` and `out_proj` of an `mlp` classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// tanh (RoBERTa, BERT pooler).
    Tanh,
    /// GELU, the exact erf form (ELECTRA, transformers' `"gelu"`).
    Gelu,
    /// None (linear classifiers).
    None,
}

impl Activation {
    /// The activation of one value, in f64 (the scalar form of [`Activation::apply_in_place`]:
    /// the same bits).
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => crate::elem::tanh(x),
            Activation::Gelu => crate::elem::gelu(x),
            Activation::None => x,
        }
    }

    /// The activation of every value in place, vectorised ([`crate::elem`]): within 2 ulp of
    /// `libm::tanh` for tanh, a few ulp of `½·x·libm::erfc(−x/√2)` for GELU.
    pub fn apply_in_place(self, v: &mut [f64]) {
        match self {
            Activation::Tanh => crate::elem::tanh_in_place(v),
            Activation::Gelu => crate::elem::gelu_in_place(v),
            Activation::None => {}
        }
    }
}
