//! How the C allocator treats the large, short-lived buffers of a denoising step.
//!
//! Every layer of a step allocates its output (tens of megabytes at 512×512) and
//! frees its input. glibc's defaults hand such blocks back to the kernel on
//! `free` and map fresh zeroed pages for the next one, so a CPU step spent about
//! 0.5 s of system time in page faults. Keeping freed memory in the heap lets the
//! next layer reuse it; the peak footprint is the same, it is only returned to
//! the system later.

/// Tells glibc to serve blocks up to its limit (32 MiB) from the heap, to keep
/// up to 2 GiB of freed memory at the top of the heap instead of trimming it, and
/// to grow the heap in 512 MiB steps. Does nothing on other C libraries.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = libc::c_int::MAX;
        const TOP_PAD_BYTES: libc::c_int = 512 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is called before
        // any other thread exists. A refused setting keeps glibc's default.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD_BYTES);
        }
    }
}
