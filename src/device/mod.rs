//! Which compute device and number format a run uses.
//!
//! Rules: `auto` takes CUDA where it is built in and present, else Metal on Apple
//! silicon, else the CPU; a GPU `auto` picks must pass a first test ([`smoke_test`])
//! or the run falls back to the CPU with a one-line notice. bf16 runs only on a GPU
//! that passes the same test in bf16.

mod smoke;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{MinusError, Result};

pub use smoke::smoke_test;

/// The device asked for on the command line or in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA if present, then Metal on Apple silicon, then the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    /// All choices, in menu order.
    pub const ALL: [Self; 4] = [Self::Auto, Self::Cpu, Self::Cuda, Self::Metal];

    /// The command-line / settings name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }
}

/// The number format asked for; `None` where it is taken means the device's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DTypeChoice {
    F32,
    F16,
    Bf16,
}

impl From<DTypeChoice> for DType {
    fn from(choice: DTypeChoice) -> Self {
        match choice {
            DTypeChoice::F32 => DType::F32,
            DTypeChoice::F16 => DType::F16,
            DTypeChoice::Bf16 => DType::BF16,
        }
    }
}

/// The device a run got, and why it is not the one `auto` preferred, if so.
pub struct ChosenDevice {
    pub device: Device,
    /// One line for the user when `auto` fell back to the CPU.
    pub fallback: Option<String>,
}

/// How [`select_device_with`] finds and checks a GPU: the real ones open candle's
/// devices and run [`smoke_test`]; tests put in failing ones.
pub struct DeviceProbe<'a> {
    /// The GPU `auto` would use and its name, or `None` when there is none.
    pub find_gpu: &'a dyn Fn() -> Option<(Device, &'static str)>,
    /// The first test a GPU must pass.
    pub smoke_test: &'a dyn Fn(&Device, DType) -> candle_core::Result<()>,
}

/// Whether this build runs `auto` on Metal: only Apple silicon has the
/// `simdgroup_matrix` instructions candle's Metal matrix multiply needs.
const METAL_BY_DEFAULT: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// The GPU `auto` prefers on this machine, opened.
fn find_gpu() -> Option<(Device, &'static str)> {
    if candle_core::utils::cuda_is_available() {
        return Device::new_cuda(0).ok().map(|d| (d, "CUDA"));
    }
    if METAL_BY_DEFAULT && candle_core::utils::metal_is_available() {
        return Device::new_metal(0).ok().map(|d| (d, "Metal"));
    }
    None
}

/// Opens the compute device (see the module's rules).
pub fn select_device(choice: DeviceChoice) -> Result<ChosenDevice> {
    select_device_with(
        choice,
        &DeviceProbe {
            find_gpu: &find_gpu,
            smoke_test: &smoke_test,
        },
    )
}

/// [`select_device`] with the GPU search and the first test given.
pub fn select_device_with(choice: DeviceChoice, probe: &DeviceProbe) -> Result<ChosenDevice> {
    let unavailable = |what: &str, e: candle_core::Error| {
        MinusError::DeviceUnavailable(format!("{what} is not available: {e}"))
    };
    // A GPU asked for by name that fails its first test is an error, not a fallback.
    let tested = |device: Device, what: &str| {
        (probe.smoke_test)(&device, DType::F16).map_err(|e| {
            MinusError::DeviceUnavailable(format!("{what} failed a first test: {e}"))
        })?;
        Ok(ChosenDevice {
            device,
            fallback: None,
        })
    };
    match choice {
        DeviceChoice::Cpu => Ok(ChosenDevice {
            device: Device::Cpu,
            fallback: None,
        }),
        DeviceChoice::Cuda => tested(
            Device::new_cuda(0).map_err(|e| unavailable("CUDA", e))?,
            "CUDA",
        ),
        DeviceChoice::Metal => tested(
            Device::new_metal(0).map_err(|e| unavailable("Metal", e))?,
            "Metal",
        ),
        DeviceChoice::Auto => Ok(match (probe.find_gpu)() {
            None => ChosenDevice {
                device: Device::Cpu,
                fallback: None,
            },
            Some((device, what)) => match (probe.smoke_test)(&device, DType::F16) {
                Ok(()) => ChosenDevice {
                    device,
                    fallback: None,
                },
                Err(e) => ChosenDevice {
                    device: Device::Cpu,
                    fallback: Some(format!(
                        "{what} failed a first test ({}), so this runs on the CPU",
                        first_line(&e)
                    )),
                },
            },
        }),
    }
}

/// The first line of candle's error (it appends backtraces on new lines).
fn first_line(error: &candle_core::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What the dtype rules need to know of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub is_gpu: bool,
    /// Whether bf16 kernels run there (CUDA: compute capability 8.0+; Metal: a GPU
    /// with bfloat).
    pub bf16: bool,
}

impl Capabilities {
    /// Finds out by running the first test in bf16 (never on the CPU, where candle
    /// has no bf16 matrix multiply).
    pub fn of(device: &Device) -> Self {
        let is_gpu = !device.is_cpu();
        Self {
            is_gpu,
            bf16: is_gpu && smoke_test(device, DType::BF16).is_ok(),
        }
    }
}

/// The dtype to run in: `choice` if given, else f32 on the CPU and f16 on GPUs.
pub fn resolve_dtype(device: &Device, choice: Option<DTypeChoice>) -> Result<DType> {
    // The bf16 probe runs kernels: only when bf16 is asked for.
    let capabilities = if choice == Some(DTypeChoice::Bf16) {
        Capabilities::of(device)
    } else {
        Capabilities {
            is_gpu: !device.is_cpu(),
            bf16: false,
        }
    };
    resolve_dtype_for(capabilities, choice)
}

/// [`resolve_dtype`] for a device of known capabilities.
pub fn resolve_dtype_for(capabilities: Capabilities, choice: Option<DTypeChoice>) -> Result<DType> {
    let default = if capabilities.is_gpu {
        DTypeChoice::F16
    } else {
        DTypeChoice::F32
    };
    let dtype = DType::from(choice.unwrap_or(default));
    // Refused here rather than at the first layer, where candle's error would not say why.
    if dtype == DType::BF16 && !capabilities.is_gpu {
        return Err(MinusError::UnsupportedDtype(
            "bf16 does not run on the CPU (candle has no bf16 matrix multiply there): use f32 or f16"
                .to_string(),
        ));
    }
    if dtype == DType::BF16 && !capabilities.bf16 {
        return Err(MinusError::UnsupportedDtype(
            "bf16 does not run on this GPU (CUDA needs compute capability 8.0 or newer, Metal a GPU with bfloat): use f16"
                .to_string(),
        ));
    }
    Ok(dtype)
}

/// A human name for a device.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests;
