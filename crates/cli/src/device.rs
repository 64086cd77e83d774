//! `--device`: the burn backend a command runs on (the name's syntax and the backends this
//! binary has are checked by `ueb_runner::DeviceName`).

use anyhow::{Result, anyhow};
use burn::tensor::Device;
use ueb_runner::DeviceName;

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

/// The device named by `--device` (`flex`, `ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`).
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
