//! Peak resident memory of the bench's parts: loading, and the VAE decode alone
//! (`minus bench --only decode`), read from Linux's VmHWM, which can be reset so each
//! part gets its own peak.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use minus::pipeline::models::load_vae;

/// Peak resident memory of this process in MB since start or the last reset, where
/// the system says (Linux).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Starts a new peak at the present resident memory (Linux 4.0+; elsewhere nothing).
pub fn reset_peak_rss() {
    // Best effort: without it the peak is the process's, which the label then overstates.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One line: `label: N MB`, or that the figure is unavailable here.
pub fn print_peak(label: &str, peak_mb: Option<f64>) {
    match peak_mb {
        Some(mb) => println!("{label}: {mb:.0} MB"),
        None => println!("{label}: unavailable on this system"),
    }
}

/// Loads only the VAE of `model_dir` and decodes `batch` random latents of `size`²
/// pixels once, printing the time and the decode's peak resident memory.
pub fn decode_only(
    model_dir: &std::path::Path,
    device: &Device,
    dtype: DType,
    size: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let vae = load_vae(&model_dir.join("vae"), device, dtype, false).context("loading the VAE")?;
    let latent = size / 8;
    let latents = Tensor::randn(0f32, 1f32, (batch, 4, latent, latent), device)?.to_dtype(dtype)?;
    reset_peak_rss();
    let started = Instant::now();
    let images = vae.decode(&latents)?;
    images.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    let decode_secs = started.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    println!("VAE decode of {batch} at {size}x{size} ({dtype:?}): {decode_secs:.1}s",);
    print_peak("decode peak resident memory", peak);
    Ok(())
}
