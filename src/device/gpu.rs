//! Finding and opening a GPU without letting candle's panics through.
//!
//! candle 0.11 panics where it should return errors: `Device::new_metal` builds a
//! residency set whose Objective-C class exists only from macOS 15, and indexes an
//! empty device list when no GPU is visible (SSH, launchd, virtual machines). A panic
//! on the engine thread would end the engine, so opening and the first test run under
//! `catch_unwind`, and Metal is not tried at all where it is known to panic.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use candle_core::Device;

// The fallback to the CPU catches panics: with `panic = "abort"` they would end the app.
#[cfg(panic = "abort")]
compile_error!(
    "Minus needs `panic = \"unwind\"`: a GPU that panics while opening falls back to the CPU"
);

/// A GPU candle can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpu {
    /// The first CUDA GPU.
    Cuda,
    /// The system's Metal GPU.
    Metal,
}

impl Gpu {
    /// The name the user reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cuda => "CUDA",
            Self::Metal => "Metal",
        }
    }
}

/// Whether this build runs `auto` on Metal: only Apple silicon has the
/// `simdgroup_matrix` instructions candle's Metal matrix multiply needs.
const METAL_BY_DEFAULT: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// The GPU `auto` tries on this machine, without opening it.
pub(super) fn find() -> Option<Gpu> {
    if candle_core::utils::cuda_is_available() {
        Some(Gpu::Cuda)
    } else if METAL_BY_DEFAULT && candle_core::utils::metal_is_available() {
        Some(Gpu::Metal)
    } else {
        None
    }
}

/// Opens `gpu` with candle (which may panic: see the module's notes).
pub(super) fn open(gpu: Gpu) -> candle_core::Result<Device> {
    match gpu {
        Gpu::Cuda => Device::new_cuda(0),
        Gpu::Metal => Device::new_metal(0),
    }
}

/// Why `gpu` must not be tried on this system, if so.
pub(super) fn refusal(gpu: Gpu) -> Option<String> {
    // Without Metal compiled in, opening it fails cleanly and says so.
    if gpu != Gpu::Metal || !candle_core::utils::metal_is_available() {
        return None;
    }
    metal_refusal(&macos_version()?)
}

/// Why Metal must not be tried on macOS `version` ("14.6.1"), if so.
pub(super) fn metal_refusal(version: &str) -> Option<String> {
    let major: u32 = version.split('.').next()?.parse().ok()?;
    (major < 15)
        .then(|| format!("Metal in this build needs macOS 15 (this Mac runs macOS {version})"))
}

/// The macOS version ("15.1"), read from `sysctl kern.osproductversion`.
#[cfg(target_os = "macos")]
fn macos_version() -> Option<String> {
    let mut buffer = [0u8; 32];
    let mut length = buffer.len();
    // SAFETY: the name is NUL-terminated, and `length` is the buffer's size, which
    // sysctl does not write past (it fails instead).
    let status = unsafe {
        libc::sysctlbyname(
            c"kern.osproductversion".as_ptr(),
            buffer.as_mut_ptr().cast(),
            &mut length,
            std::ptr::null_mut(),
            0,
        )
    };
    if status != 0 {
        return None;
    }
    let text = std::str::from_utf8(buffer.get(..length)?).ok()?;
    Some(text.trim_end_matches('\0').to_string())
}

/// Not macOS: no version to check.
#[cfg(not(target_os = "macos"))]
fn macos_version() -> Option<String> {
    None
}

/// Runs `work`, with its error or its panic as one line.
pub(super) fn without_panics<T>(
    work: impl FnOnce() -> candle_core::Result<T>,
) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(first_line(&error.to_string())),
        Err(payload) => Err(format!("candle panicked: {}", panic_message(&*payload))),
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    first_line(text)
}

/// The first line (candle appends backtraces on new lines).
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}
