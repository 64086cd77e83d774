//! `--device`: the burn backend a command runs on.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Backends this binary was built with, for messages.
pub fn available() -> Vec<&'static str> {
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

/// The device named by `--device` (`flex`, `ndarray`, `wgpu`, `cuda`, `cuda:N`).
pub fn parse(name: &str) -> Result<Device> {
    let (backend, index) = match name.split_once(':') {
        Some((b, i)) => (b, Some(i)),
        None => (name, None),
    };
    let index: usize = match index {
        None => 0,
        Some(i) => match i.parse() {
            Ok(v) => v,
            Err(_) => bail!("--device {name}: `{i}` is not a device index"),
        },
    };
    // Only the GPU backends take an index.
    let _ = index;
    let missing = |feature: &str| {
        anyhow::anyhow!(
            "--device {name}: this ueb was built without the `{feature}` backend (built with: {}); rebuild with `cargo build --release -p ueb-cli --features {feature}`",
            available().join(", ")
        )
    };
    match backend {
        "flex" | "cpu" => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[cfg(not(feature = "flex"))]
            return Err(missing("flex"));
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // burn 0.22 deprecates ndarray for flex; ueb still offers both
            return Ok(Device::ndarray());
            #[cfg(not(feature = "ndarray"))]
            return Err(missing("ndarray"));
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(if name.contains(':') {
                Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index))
            } else {
                Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
            });
            #[cfg(not(feature = "wgpu"))]
            return Err(missing("wgpu"));
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
            #[cfg(not(feature = "cuda"))]
            return Err(missing("cuda"));
        }
        _ => bail!("--device {name}: unknown device (expected flex, ndarray, wgpu or cuda[:N])"),
    }
}
