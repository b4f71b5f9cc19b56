//! Which compute device and number format a run uses.
//!
//! Rules: `auto` takes CUDA where it is built in and present, else Metal on Apple
//! silicon, else the CPU; a GPU `auto` picks must open and pass a first test
//! ([`smoke_test`]) in the run's number format, or the run falls back to the CPU with
//! a one-line notice saying why (a panic in candle included). bf16 runs only on a GPU
//! that passes the same test in bf16.

mod gpu;
pub mod memory;
mod smoke;

use candle_core::{DType, Device};

use crate::choices::named_choices;
use crate::{MinusError, Result};

pub use gpu::Gpu;
pub use smoke::smoke_test;

named_choices! {
    /// The device asked for on the command line or in the window.
    #[derive(Default)]
    pub enum DeviceChoice {
        /// CUDA if present, then Metal on Apple silicon, then the CPU.
        #[default]
        Auto = "auto",
        /// The CPU, always available.
        Cpu = "cpu",
        /// The first CUDA GPU (builds with the `cuda` feature).
        Cuda = "cuda",
        /// The Metal GPU (Apple silicon builds, or the `metal` feature).
        Metal = "metal",
    }
}

named_choices! {
    /// The number format asked for; `None` where it is taken means the device's default.
    pub enum DTypeChoice {
        /// 32-bit floats.
        F32 = "f32",
        /// 16-bit floats.
        F16 = "f16",
        /// bfloat16, on GPUs only.
        Bf16 = "bf16",
    }
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

/// How [`select_device_with`] finds, opens and checks a GPU: the real probe uses
/// candle's devices and [`smoke_test`]; tests put in failing and panicking ones.
pub struct DeviceProbe<'a> {
    /// The GPU `auto` would use, without opening it, or `None` when there is none.
    pub find_gpu: &'a dyn Fn() -> Option<Gpu>,
    /// Why a GPU must not be tried on this system, if so (Metal below macOS 15).
    pub refusal: &'a dyn Fn(Gpu) -> Option<String>,
    /// Opens a GPU; may panic, as candle's Metal does where it cannot run.
    pub open: &'a dyn Fn(Gpu) -> candle_core::Result<Device>,
    /// The first test a GPU must pass, in the run's number format.
    pub smoke_test: &'a dyn Fn(&Device, DType) -> candle_core::Result<()>,
}

impl DeviceProbe<'static> {
    /// The probe of this machine's real devices.
    pub fn real() -> Self {
        Self {
            find_gpu: &gpu::find,
            refusal: &gpu::refusal,
            open: &gpu::open,
            smoke_test: &smoke_test,
        }
    }
}

/// Opens the compute device (see the module's rules) for a run in `dtype` (`None`:
/// the device's default).
pub fn select_device(choice: DeviceChoice, dtype: Option<DTypeChoice>) -> Result<ChosenDevice> {
    select_device_with(choice, dtype, &DeviceProbe::real())
}

/// [`select_device`] with the GPU search, opening and first test given.
pub fn select_device_with(
    choice: DeviceChoice,
    dtype: Option<DTypeChoice>,
    probe: &DeviceProbe,
) -> Result<ChosenDevice> {
    let test_dtype = first_test_dtype(dtype);
    let gpu = match choice {
        DeviceChoice::Cpu => return Ok(on_cpu(None)),
        DeviceChoice::Cuda => Gpu::Cuda,
        DeviceChoice::Metal => Gpu::Metal,
        DeviceChoice::Auto => {
            return Ok(match (probe.find_gpu)() {
                None => on_cpu(None),
                Some(gpu) => match try_gpu(gpu, test_dtype, probe) {
                    Ok(device) => ChosenDevice {
                        device,
                        fallback: None,
                    },
                    Err(reason) => on_cpu(Some(format!("{reason}, so this runs on the CPU"))),
                },
            });
        }
    };
    // A GPU asked for by name that cannot run is an error, not a fallback.
    let device = try_gpu(gpu, test_dtype, probe).map_err(MinusError::DeviceUnavailable)?;
    Ok(ChosenDevice {
        device,
        fallback: None,
    })
}

/// The CPU, with the reason it replaced a GPU, if it did.
fn on_cpu(fallback: Option<String>) -> ChosenDevice {
    ChosenDevice {
        device: Device::Cpu,
        fallback,
    }
}

/// The number format of a GPU's first test: the run's, so that an f32 run is not
/// refused for f16 kernels it never uses. A bf16 run tests f16 here and bf16 in
/// [`resolve_dtype`], whose refusal says what bf16 needs.
fn first_test_dtype(dtype: Option<DTypeChoice>) -> DType {
    match dtype {
        Some(DTypeChoice::F32) => DType::F32,
        Some(DTypeChoice::F16 | DTypeChoice::Bf16) | None => DType::F16,
    }
}

/// Opens `gpu` and runs its first test; an error or a panic on the way becomes the
/// line that says why the GPU cannot be used.
fn try_gpu(gpu: Gpu, dtype: DType, probe: &DeviceProbe) -> std::result::Result<Device, String> {
    if let Some(reason) = (probe.refusal)(gpu) {
        return Err(reason);
    }
    let name = gpu.name();
    let device = gpu::without_panics(|| (probe.open)(gpu))
        .map_err(|e| format!("{name} could not be opened ({e})"))?;
    gpu::without_panics(|| (probe.smoke_test)(&device, dtype))
        .map_err(|e| format!("{name} failed a first test ({e})"))?;
    Ok(device)
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
            bf16: is_gpu && gpu::without_panics(|| smoke_test(device, DType::BF16)).is_ok(),
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
mod fallback_tests;
#[cfg(test)]
mod tests;
