//! The two helpers that need burn's tensors: whether a runtime device is a CPU one, and GELU
//! with an exact gradient on every backend.

use burn::tensor::{Device, Tensor};

/// Whether `device` is one of burn's CPU devices (flex or ndarray, with or without autodiff).
/// On these, ueb runs its own host kernels instead of burn's per-operation passes where it has
/// them (the encoder's feature extraction, the trainable heads' training): the same functions,
/// without a pass and an allocation per element-wise operation (decisions EN10, T17).
///
/// burn names its devices' variants only in builds that enable their backends, and library
/// crates enable none (the binary does), so the variant is read from the device's `Debug`
/// form, which burn writes as `Flex(..)` / `NdArray(..)` (burn is pinned to one version; the
/// binary's tests check both devices and an autodiff one).
pub fn is_cpu_device(device: &Device) -> bool {
    let inner = format!("{:?}", device.clone().inner().as_dispatch());
    inner.starts_with("Flex(") || inner.starts_with("NdArray(")
}

/// GELU in the exact erf form, `x·(1 + erf(x/√2))/2`, composed from `erf` so that its gradient
/// is exact on every backend: burn 0.22.1's default `gelu_backward` (used by ndarray and the
/// CubeCL backends; flex overrides it) is the derivative of the tanh approximation, 0.3 off at
/// |x| ≈ 1.
///
/// Shapes: any → same.
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let half_x = x.clone().mul_scalar(0.5);
    half_x * x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2).erf().add_scalar(1.0)
}
