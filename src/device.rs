//! Which compute device and number format a run uses.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{MinusError, Result};

/// The device asked for on the command line or in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA if present, then Metal, then the CPU.
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

/// Opens the compute device: `auto` tries CUDA, then Metal, then the CPU.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    let unavailable = |what: &str, e: candle_core::Error| {
        MinusError::DeviceUnavailable(format!("{what} is not available: {e}"))
    };
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| unavailable("CUDA", e)),
        DeviceChoice::Metal => Device::new_metal(0).map_err(|e| unavailable("Metal", e)),
        DeviceChoice::Auto => Ok(if candle_core::utils::cuda_is_available() {
            Device::new_cuda(0).unwrap_or(Device::Cpu)
        } else if candle_core::utils::metal_is_available() {
            Device::new_metal(0).unwrap_or(Device::Cpu)
        } else {
            Device::Cpu
        }),
    }
}

/// The dtype to run in: `choice` if given, else f32 on the CPU and f16 on GPUs.
pub fn resolve_dtype(device: &Device, choice: Option<DTypeChoice>) -> Result<DType> {
    let default = if device.is_cpu() {
        DTypeChoice::F32
    } else {
        DTypeChoice::F16
    };
    let dtype = DType::from(choice.unwrap_or(default));
    // Refused here rather than at the first layer, where candle's error would not say why.
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(MinusError::UnsupportedDtype(
            "bf16 does not run on the CPU (candle has no bf16 matrix multiply there): use f32 or f16"
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
