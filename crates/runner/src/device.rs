//! The name of a burn backend, as `--device` and an experiment's `device:` write it (`flex`,
//! `ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`); the binary turns it into a device of a
//! backend it was built with.

use serde::{Deserialize, Serialize};

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
    /// The names `parse` accepts, for help texts and messages: one list, so they cannot drift.
    pub const SYNTAX: &'static str = "flex (or cpu), ndarray, wgpu[:N], cuda[:N]";

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
            _ => bail!("--device {name}: unknown device (expected {})", Self::SYNTAX),
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

impl DeviceName {
    /// Whether the backend computes on the CPU (flex, ndarray).
    pub fn is_cpu(self) -> bool {
        matches!(self, DeviceName::Flex | DeviceName::NdArray)
    }
}

/// The floating-point type of the backbone passes (`precision:` in an experiment,
/// `--precision` on the command line): every float tensor the device creates has it, the
/// checkpoint's weights are cast to it as they load, and features and logits are widened back
/// to f32 when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 (the default, and the only precision of CPU devices).
    #[default]
    F32,
    /// bfloat16: f32's range with 8 bits of mantissa.
    Bf16,
    /// IEEE half: 11 bits of mantissa, a maximum of 65504.
    F16,
}

impl Precision {
    /// The names `--precision` accepts, in the order help lists them.
    pub const NAMES: [&'static str; 3] = ["f32", "bf16", "f16"];

    /// Parses `f32`, `bf16` or `f16`.
    ///
    /// # Errors
    /// Any other name, with the accepted ones.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            _ => bail!("precision `{name}`: expected one of {}", Self::NAMES.join(", ")),
        }
    }

    /// The name `parse` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Whether this is f32 (plans leave the default out of `plan.yaml`, so results
    /// directories written before precision existed still resume).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The precision `device` computes in when `self` is asked for, and what to tell the user
    /// when that is not what was asked: CPU devices compute in f32 (decision EN12).
    pub fn on(self, device: DeviceName) -> (Precision, Option<String>) {
        if device.is_cpu() && !self.is_f32() {
            let backend = device.feature();
            (
                Precision::F32,
                Some(format!(
                    "precision {}: the {backend} device computes in f32 (half precision is for GPU devices: wgpu, cuda)",
                    self.as_str()
                )),
            )
        } else {
            (self, None)
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_round_trip_and_cpus_keep_f32() {
        for name in Precision::NAMES {
            assert_eq!(Precision::parse(name).unwrap().as_str(), name);
        }
        let e = Precision::parse("fp16").unwrap_err().to_string();
        assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
        let (p, note) = Precision::Bf16.on(DeviceName::Flex);
        assert_eq!(p, Precision::F32);
        assert!(note.unwrap().contains("flex device computes in f32"));
        assert_eq!(Precision::F32.on(DeviceName::NdArray), (Precision::F32, None));
        assert_eq!(Precision::F16.on(DeviceName::Wgpu(None)), (Precision::F16, None));
        assert_eq!(Precision::Bf16.on(DeviceName::Cuda(0)), (Precision::Bf16, None));
    }
}
