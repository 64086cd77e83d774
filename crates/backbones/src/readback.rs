//! Copies of burn tensors and layers on the host: a tensor as a row-major `Vec<f32>`, a
//! `Linear` in PyTorch layout. The export, the fine-tuning, the extraction and the host encoder
//! all read their weights back through here.

use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::error::{BackboneError, Result};

/// Reads a tensor back to the host, row-major.
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| BackboneError::Invalid(format!("reading a tensor back: {e:?}")))
}

/// A `Linear` as PyTorch stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchLinear {
    /// `[out, in]`, row-major.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Option<Vec<f32>>,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

/// A burn `Linear` (`[in, out]`) in PyTorch layout.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn linear_to_torch(linear: &Linear) -> Result<TorchLinear> {
    let w = linear.weight.val();
    let [d_in, d_out] = w.dims();
    let w = to_host(w.transpose())?;
    let b = match &linear.bias {
        Some(b) => {
            let v = b.val();
            let [n] = v.dims();
            Some(to_host(v.reshape([1, n]))?)
        }
        None => None,
    };
    Ok(TorchLinear {
        weight: w,
        bias: b,
        d_in,
        d_out,
    })
}
