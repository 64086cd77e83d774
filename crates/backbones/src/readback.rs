//! Copies of burn tensors and layers on the host: a tensor as a row-major `Vec<f32>`, a
//! `Linear` in PyTorch layout. The export, the fine-tuning, the extraction and the host encoder
//! all read their weights back through here.

use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::error::{BackboneError, Result};

/// Reads a tensor back to the host, row-major. A device that failed while computing it (out of
/// memory, a lost GPU) is an error with the device's account, not a panic.
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_data()
        .map_err(|e| {
            BackboneError::Invalid(format!(
                "the device failed computing a tensor: {}",
                first_and_cause(&e.to_string())
            ))
        })?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| BackboneError::Invalid(format!("reading a tensor back: {e:?}")))
}

/// The first line of a multi-line device error, and its last cause (burn chains them with
/// "Caused by:"), so that a message says what ran out without burn's whole account.
fn first_and_cause(e: &str) -> String {
    let lines: Vec<&str> = e
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect();
    match (lines.first(), lines.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}: {b}"),
        (Some(a), _) => (*a).to_string(),
        _ => e.to_string(),
    }
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
