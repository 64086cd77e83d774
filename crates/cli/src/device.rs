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
    // `parse` refused the backends this binary lacks, so a branch of one is never taken.
    let missing = || {
        anyhow!(
            "--device {name}: this ueb was built without the `{}` backend",
            device.feature()
        )
    };
    match device {
        DeviceName::Flex => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[cfg(not(feature = "flex"))]
            return Err(missing());
        }
        DeviceName::NdArray => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // burn 0.22 deprecates ndarray for flex; ueb still offers both
            return Ok(Device::ndarray());
            #[cfg(not(feature = "ndarray"))]
            return Err(missing());
        }
        DeviceName::Wgpu(index) => {
            #[cfg(feature = "wgpu")]
            return Ok(match index {
                Some(i) => Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)),
                None => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            });
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = index;
                return Err(missing());
            }
        }
        DeviceName::Cuda(index) => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                return Err(missing());
            }
        }
    }
}
