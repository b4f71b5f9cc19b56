//! A rough estimate of the memory one run needs, checked before any work starts: on
//! the CPU an allocation that fails aborts the process, so a request that cannot fit
//! (say 4096×4096, 64 images) must be refused with a message instead.
//!
//! The estimate follows where the peak is today: attention and convolutions work in
//! bounded tiles, so what grows with the request is the activations: the UNet's at
//! its first level, the VAE's at full resolution (one image at a time), and the
//! conversion of the decoded batch to 8-bit images. TAESD's previews (64 channels at
//! full resolution, between steps) and the image encoder (224² inputs) stay below the
//! VAE's peak, so they are not counted.

use super::models::Models;
use super::request::Request;
use crate::models::vae_tiles::{TILE_LATENTS, TILED_ABOVE_LATENT_PIXELS};
use crate::{MinusError, Result};

/// Live activations of the UNet's first level, in units of its channel count, per
/// latent pixel and sample: the three skip connections kept for the up path, the hidden
/// state, normalised copies, q/k/v, the attention output and GEGLU's 8× and 4× widths.
const UNET_LIVE_CHANNEL_MULTIPLES: u64 = 24;
/// Channels of the VAE decoder at full resolution before its last block (SD 1.5's VAE,
/// the one every SD 1.5 checkpoint uses), and how many such tensors are alive at once
/// (the upsampled input, the convolution's output, a normalised copy).
const VAE_FULL_RES_CHANNELS: u64 = 256;
const VAE_LIVE_TENSORS: u64 = 3;
/// f32 copies of the decoded batch alive while it becomes 8-bit images.
const DECODED_F32_COPIES: u64 = 8;

/// What a request needs, split by where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Peak of the denoising loop and the VAE decode, on the compute device.
    pub device_bytes: u64,
    /// The decoded batch and the 8-bit images, always in host memory.
    pub host_bytes: u64,
}

/// The sizes of the networks that set the peak.
#[derive(Debug, Clone, Copy)]
pub struct NetworkSizes {
    /// Channels of the UNet's first level (320 in SD 1.5).
    pub unet_channels: u64,
    /// Bytes per activation value (4 for f32, 2 for f16/bf16).
    pub dtype_bytes: u64,
}

impl NetworkSizes {
    /// The sizes of loaded models.
    pub fn of(models: &Models) -> Self {
        Self {
            unet_channels: models
                .unet
                .config()
                .block_out_channels
                .first()
                .map_or(320, |&c| c as u64),
            dtype_bytes: models.dtype.size_in_bytes() as u64,
        }
    }
}

/// Estimates the memory `request` needs with networks of `sizes`.
pub fn estimate(request: &Request, sizes: NetworkSizes) -> Estimate {
    let batch = request.batch as u64;
    let pixels = request.width as u64 * request.height as u64;
    let latent_pixels = pixels / 64;
    // Both CFG halves go through the UNet together.
    let unet = 2 * batch * latent_pixels * sizes.unet_channels * UNET_LIVE_CHANNEL_MULTIPLES;
    // The VAE decodes one image at a time; a very large one tile by tile, blended
    // into two f32 sums (three colours and a weight).
    let tiled = latent_pixels > TILED_ABOVE_LATENT_PIXELS as u64;
    let decoded_pixels = if tiled {
        (8 * TILE_LATENTS as u64).pow(2)
    } else {
        pixels
    };
    let vae = decoded_pixels * VAE_FULL_RES_CHANNELS * VAE_LIVE_TENSORS;
    let tile_sums_bytes = if tiled { pixels * 4 * 4 } else { 0 };
    Estimate {
        device_bytes: unet.max(vae).saturating_mul(sizes.dtype_bytes) + tile_sums_bytes,
        host_bytes: batch * pixels * 3 * (4 * DECODED_F32_COPIES + 1),
    }
}

/// Refuses an estimate over `limit_bytes`, naming both.
pub fn check_fits(needed_bytes: u64, limit_bytes: u64) -> Result<()> {
    if needed_bytes <= limit_bytes {
        return Ok(());
    }
    Err(MinusError::InvalidRequest(format!(
        "this run needs about {} of memory and {} is available: use a smaller size or fewer images per run",
        gib(needed_bytes),
        gib(limit_bytes)
    )))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Memory the system can give without swapping (Linux's `MemAvailable`); `None`
/// where it is not known, and then nothing is refused.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&meminfo)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses `request` when it cannot fit the memory available to `models`: everything
/// on the CPU, only the host part on a GPU (whose own errors do not abort).
pub fn check_request(models: &Models, request: &Request) -> Result<()> {
    let Some(limit_bytes) = available_bytes() else {
        return Ok(());
    };
    let needs = estimate(request, NetworkSizes::of(models));
    let host_bytes = if models.device.is_cpu() {
        needs.device_bytes + needs.host_bytes
    } else {
        needs.host_bytes
    };
    check_fits(host_bytes, limit_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15_F32: NetworkSizes = NetworkSizes {
        unet_channels: 320,
        dtype_bytes: 4,
    };

    fn needs(width: usize, height: usize, batch: usize) -> u64 {
        let request = Request {
            width,
            height,
            batch,
            ..Request::default()
        };
        let estimate = estimate(&request, SD15_F32);
        estimate.device_bytes + estimate.host_bytes
    }

    #[test]
    fn ordinary_runs_fit_a_small_machine_and_huge_ones_do_not() {
        let eight_gib = 8 << 30;
        assert!(check_fits(needs(512, 512, 1), eight_gib).is_ok());
        assert!(check_fits(needs(768, 768, 2), eight_gib).is_ok());
        let message = check_fits(needs(4096, 4096, 64), eight_gib)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("needs about"), "{message}");
        assert!(message.contains("8.0 GiB is available"), "{message}");
        assert!(needs(4096, 4096, 64) > 1 << 40);
    }

    #[test]
    fn grows_with_size_and_batch_but_the_decode_not_with_the_batch() {
        assert_eq!(needs(1024, 1024, 1), 4 * needs(512, 512, 1));
        assert!(needs(512, 512, 4) > needs(512, 512, 1));
        let device_bytes = |batch| {
            let request = Request {
                width: 768,
                height: 768,
                batch,
                ..Request::default()
            };
            estimate(&request, SD15_F32).device_bytes
        };
        // The full-resolution decode sets the device peak of small batches, one image at a time.
        assert_eq!(device_bytes(2), device_bytes(1));
        assert!(device_bytes(8) > device_bytes(1));
    }

    #[test]
    fn reads_mem_available() {
        let meminfo = "MemTotal:       32 kB\nMemAvailable:   23310728 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(23_310_728 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }
}
