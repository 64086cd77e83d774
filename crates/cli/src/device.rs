//! `--device`: the burn backend a command runs on (the name's syntax and the backends this
//! binary has are checked by `ueb_runner::DeviceName`).

use anyhow::{Result, anyhow, bail};
use burn::tensor::{DType, Device, FloatDType};
use ueb_runner::{DeviceName, Precision};

/// The help line of a `--device` option: `what`, the names `ueb_runner::DeviceName` parses, and
/// the backends this binary has.
pub(crate) fn help(what: &str) -> String {
    format!(
        "{what}: {} (this binary: {})",
        DeviceName::SYNTAX,
        available().join(", ")
    )
}

/// Backends this binary was built with, for messages.
pub(crate) fn available() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "ndarray") {
        out.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

/// The device named by `--device`, computing in `precision` (resolved: CPU devices are only
/// ever asked for f32, see `Precision::on`); checked before any tensor exists, since burn fixes
/// a device's float type at its first tensor.
///
/// # Errors
/// The errors of [`parse`], or a precision the device cannot compute in (naming the device and
/// what it does support).
pub(crate) fn open(name: &str, precision: Precision) -> Result<Device> {
    let mut device = parse(name)?;
    let dtype = match precision {
        Precision::F32 => return Ok(device),
        Precision::Bf16 => FloatDType::BF16,
        Precision::F16 => FloatDType::F16,
    };
    if !device.supports_dtype(DType::from(dtype)) {
        let can: Vec<&str> = [(Precision::Bf16, DType::BF16), (Precision::F16, DType::F16)]
            .into_iter()
            .filter(|(_, d)| device.supports_dtype(*d))
            .map(|(p, _)| p.as_str())
            .collect();
        bail!(
            "--device {name}: this device cannot compute in {precision} (it can in f32{}); choose another --precision",
            can.iter().map(|p| format!(", {p}")).collect::<String>()
        );
    }
    device
        .configure(dtype)
        .map_err(|e| anyhow!("--device {name}: cannot set precision {precision}: {e:?}"))?;
    Ok(device)
}

/// The device named by `--device` (`flex`, `ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`), in
/// f32.
pub(crate) fn parse(name: &str) -> Result<Device> {
    let device = DeviceName::parse(name, Some(&available()))?;
    // `parse` refused the backends this binary lacks, so `None` is never returned here.
    let built = match device {
        DeviceName::Flex => flex(),
        DeviceName::NdArray => ndarray(),
        DeviceName::Wgpu(index) => wgpu(index),
        DeviceName::Cuda(index) => cuda(index),
    };
    built.ok_or_else(|| {
        anyhow!(
            "--device {name}: this ueb was built without the `{}` backend",
            device.feature()
        )
    })
}

#[cfg(feature = "flex")]
fn flex() -> Option<Device> {
    Some(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn flex() -> Option<Device> {
    None
}

#[cfg(feature = "ndarray")]
fn ndarray() -> Option<Device> {
    #[allow(deprecated)] // burn 0.22 deprecates ndarray for flex; ueb still offers both
    Some(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Option<Device> {
    None
}

#[cfg(feature = "wgpu")]
fn wgpu(index: Option<usize>) -> Option<Device> {
    Some(match index {
        Some(i) => Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)),
        None => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: Option<usize>) -> Option<Device> {
    None
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Option<Device> {
    Some(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Option<Device> {
    None
}

/// `--precision` as clap reads it.
pub(crate) fn parse_precision(name: &str) -> std::result::Result<Precision, String> {
    Precision::parse(name).map_err(|e| e.to_string())
}
