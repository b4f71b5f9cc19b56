//! How much memory is left for a run: the system's available memory on Linux, macOS
//! and Windows, a CUDA GPU's free memory and a Metal GPU's working-set headroom, and
//! whether an error means a device ran out.
//!
//! Each probe answers `None` where it cannot tell; callers then refuse nothing.

use candle_core::Device;

/// Where a device's memory comes from, as far as a run's estimate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// The system's memory available without swapping.
    pub host_bytes: Option<u64>,
    /// What the compute device can still take, where it has memory of its own or a
    /// limit of its own (a GPU); `None` for the CPU.
    pub device_bytes: Option<u64>,
    /// The device computes in the host's memory (the CPU, Apple silicon's unified
    /// memory): its part and the host's part of a run come out of the same memory.
    pub shared: bool,
}

impl Available {
    /// What `device` and the host have left now.
    pub fn probe(device: &Device) -> Self {
        Self {
            host_bytes: host_available_bytes(),
            device_bytes: gpu_available_bytes(device),
            shared: device.is_cpu() || (device.is_metal() && cfg!(target_arch = "aarch64")),
        }
    }

    /// The most the device's part of a run may take: the device's own limit, and on
    /// shared memory the host's too.
    pub fn for_device(&self) -> Option<u64> {
        match (
            self.device_bytes,
            self.shared.then_some(self.host_bytes).flatten(),
        ) {
            (Some(device), Some(host)) => Some(device.min(host)),
            (device, host) => device.or(host),
        }
    }
}

/// Memory `device` can still take now: a GPU's own (see [`Available`]), else the host's.
pub fn available_bytes(device: &Device) -> Option<u64> {
    Available::probe(device).for_device()
}

/// Whether `error` says a device ran out of memory (CUDA's driver or cuBLAS, a Metal
/// buffer or command buffer): such a step can be retried in smaller parts. candle
/// wraps these errors as boxed sources or strings, so the message is what is left.
pub fn is_out_of_memory(error: &candle_core::Error) -> bool {
    const SIGNS: [&str; 6] = [
        "out of memory",
        "out_of_memory",
        "outofmemory",
        "alloc_failed",
        "insufficient memory",
        "failed to create metal resource: buffer",
    ];
    let message = error.to_string().to_lowercase();
    SIGNS.iter().any(|sign| message.contains(sign))
}

/// A GPU's free memory (CUDA) or working-set headroom (Metal); `None` for the CPU or
/// where the device does not say.
fn gpu_available_bytes(device: &Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let (free, _total) = cuda.cuda_stream().context().mem_get_info().ok()?;
            Some(free as u64)
        }
        #[cfg(any(feature = "metal", all(target_os = "macos", target_arch = "aarch64")))]
        Device::Metal(metal) => {
            // Past the recommended working set macOS starts paging the GPU's memory.
            let limit = metal.recommended_max_working_set_size() as u64;
            Some(limit.saturating_sub(metal.current_allocated_size() as u64))
        }
        _ => None,
    }
}

/// The system's memory available without swapping: Linux's `MemAvailable`.
#[cfg(target_os = "linux")]
pub fn host_available_bytes() -> Option<u64> {
    parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The system's memory available without swapping: free, inactive and purgeable pages.
#[cfg(target_os = "macos")]
pub fn host_available_bytes() -> Option<u64> {
    macos::available_bytes()
}

/// The system's memory available without swapping: available physical memory.
#[cfg(windows)]
pub fn host_available_bytes() -> Option<u64> {
    windows::available_bytes()
}

/// Not known on this system.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub fn host_available_bytes() -> Option<u64> {
    None
}

#[cfg(any(target_os = "linux", test))]
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(target_os = "macos")]
mod macos {
    use std::sync::OnceLock;

    /// The host port, asked for once: each `mach_host_self` adds a reference to it.
    // libc points to the mach2 crate for Mach calls; this one is all Minus needs.
    #[allow(deprecated)]
    fn host_port() -> libc::mach_port_t {
        static PORT: OnceLock<libc::mach_port_t> = OnceLock::new();
        // SAFETY: no arguments; returns a port name owned by this task.
        *PORT.get_or_init(|| unsafe { libc::mach_host_self() })
    }

    /// Free, inactive and purgeable pages (the kernel's free count includes the
    /// speculative ones), as Activity Monitor counts memory that can be had.
    pub(super) fn available_bytes() -> Option<u64> {
        // SAFETY: a plain-data struct the kernel fills; zero is a valid value.
        let mut stats: libc::vm_statistics64 = unsafe { std::mem::zeroed() };
        let mut count = libc::HOST_VM_INFO64_COUNT;
        // SAFETY: `stats` holds `count` integers, as the call is told.
        let status = unsafe {
            libc::host_statistics64(
                host_port(),
                libc::HOST_VM_INFO64,
                (&raw mut stats).cast(),
                &mut count,
            )
        };
        if status != libc::KERN_SUCCESS {
            return None;
        }
        // SAFETY: no arguments.
        let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let pages = u64::from(stats.free_count)
            + u64::from(stats.inactive_count)
            + u64::from(stats.purgeable_count);
        Some(pages.saturating_mul(page_bytes))
    }
}

#[cfg(windows)]
mod windows {
    /// `MEMORYSTATUSEX` of the Windows API.
    #[repr(C)]
    struct MemoryStatusEx {
        length: u32,
        memory_load: u32,
        total_phys: u64,
        avail_phys: u64,
        total_page_file: u64,
        avail_page_file: u64,
        total_virtual: u64,
        avail_virtual: u64,
        avail_extended_virtual: u64,
    }

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GlobalMemoryStatusEx(buffer: *mut MemoryStatusEx) -> i32;
    }

    /// Available physical memory, as Task Manager shows it.
    pub(super) fn available_bytes() -> Option<u64> {
        let mut status = MemoryStatusEx {
            length: std::mem::size_of::<MemoryStatusEx>() as u32,
            memory_load: 0,
            total_phys: 0,
            avail_phys: 0,
            total_page_file: 0,
            avail_page_file: 0,
            total_virtual: 0,
            avail_virtual: 0,
            avail_extended_virtual: 0,
        };
        // SAFETY: `status` is a live MEMORYSTATUSEX with its length set, as the call needs.
        let ok = unsafe { GlobalMemoryStatusEx(&mut status) };
        (ok != 0).then_some(status.avail_phys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let meminfo = "MemTotal:       32 kB\nMemAvailable:   23310728 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(23_310_728 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_system_says_how_much_memory_is_available() {
        let cpu = Available::probe(&Device::Cpu);
        assert!(cpu.shared && cpu.device_bytes.is_none());
        let host = cpu.host_bytes.expect("the system's available memory");
        assert!(host > 1 << 20, "{host} bytes");
        assert_eq!(cpu.for_device(), Some(host));
    }

    #[test]
    fn the_device_limit_is_the_smaller_of_both_on_shared_memory() {
        let gib = 1u64 << 30;
        let unified = Available {
            host_bytes: Some(6 * gib),
            device_bytes: Some(10 * gib),
            shared: true,
        };
        assert_eq!(unified.for_device(), Some(6 * gib));
        let discrete = Available {
            shared: false,
            ..unified
        };
        assert_eq!(discrete.for_device(), Some(10 * gib));
        let unknown = Available {
            host_bytes: None,
            device_bytes: None,
            shared: false,
        };
        assert_eq!(unknown.for_device(), None);
    }

    #[test]
    fn out_of_memory_errors_are_told_from_others() {
        let cuda = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        let cublas = candle_core::Error::Msg("CublasError(CUBLAS_STATUS_ALLOC_FAILED)".into());
        let metal =
            candle_core::Error::Msg("Metal error Failed to create metal resource: Buffer".into());
        for error in [cuda, cublas, metal] {
            assert!(is_out_of_memory(&error), "{error}");
        }
        let shape = candle_core::Error::Msg("shape mismatch in conv2d".into());
        assert!(!is_out_of_memory(&shape));
    }
}
