//! The name of a burn backend, as `--device` and an experiment's `device:` write it (`flex`,
//! `ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`); the binary turns it into a device of a
//! backend it was built with.

use crate::error::{Result, bail, message};

/// A backend and, for the GPU ones, the device's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// burn's flex backend (also written `cpu`).
    Flex,
    /// burn's ndarray backend.
    NdArray,
    /// wgpu: the default adapter, or the N-th discrete GPU.
    Wgpu(Option<usize>),
    /// CUDA device N (0 by default).
    Cuda(usize),
}

impl DeviceName {
    /// The cargo feature that builds this backend.
    pub fn feature(self) -> &'static str {
        match self {
            DeviceName::Flex => "flex",
            DeviceName::NdArray => "ndarray",
            DeviceName::Wgpu(_) => "wgpu",
            DeviceName::Cuda(_) => "cuda",
        }
    }

    /// Parses `name`; with `built`, the backends the binary was built with, a backend it lacks
    /// is an error that says how to rebuild.
    ///
    /// # Errors
    /// An unknown backend, a bad index, or a backend missing from `built`.
    pub fn parse(name: &str, built: Option<&[&str]>) -> Result<Self> {
        let (backend, index) = match name.split_once(':') {
            Some((b, i)) => (b, Some(i)),
            None => (name, None),
        };
        let index: Option<usize> = match index {
            None => None,
            Some(i) => match i.parse() {
                Ok(v) => Some(v),
                Err(_) => bail!("--device {name}: `{i}` is not a device index"),
            },
        };
        let device = match backend {
            "flex" | "cpu" => DeviceName::Flex,
            "ndarray" => DeviceName::NdArray,
            "wgpu" => DeviceName::Wgpu(index),
            "cuda" => DeviceName::Cuda(index.unwrap_or(0)),
            _ => bail!("--device {name}: unknown device (expected flex, ndarray, wgpu or cuda[:N])"),
        };
        if let Some(built) = built
            && !built.contains(&device.feature())
        {
            let feature = device.feature();
            return Err(message!(
                "--device {name}: this ueb was built without the `{feature}` backend (built with: {}); rebuild with `cargo build --release -p ueb-cli --features {feature}`",
                built.join(", ")
            ));
        }
        Ok(device)
    }
}
