//! A rough estimate of the memory one run needs, checked before any work starts: on
//! the CPU an allocation that fails aborts the process, and on a GPU one that fails
//! after the last step loses the run, so a request that cannot fit (say 4096×4096,
//! 64 images, or 1024² on a small card) is refused with the numbers instead.
//!
//! The estimate follows where the peak is today: attention and the CPU's convolutions
//! work in bounded slices, so what grows with the request is the activations: the
//! UNet's at its first level (with candle's im2col matrices and the attention slice
//! on a GPU), the VAE's at full resolution (one image at a time, in tiles where a
//! whole one would not fit: see [`crate::models::vae_tiles`]), and the conversion of
//! the decoded batch to 8-bit images. TAESD's previews and the image encoder (224²
//! inputs) stay below the VAE's peak, so they are not counted. The weights are
//! already loaded when memory is measured, so they are not counted either.

use candle_core::{DType, Device, DeviceLocation};

use super::models::Models;
use super::request::Request;
use crate::device::memory::Available;
use crate::models::layers::attention_scores_bytes;
use crate::models::vae_tiles::DecodeCost;
use crate::{MinusError, Result};

/// Live activations of the UNet's first level, in units of its channel count, per
/// latent pixel and sample: the three skip connections kept for the up path, the hidden
/// state, normalised copies, q/k/v, the attention output and GEGLU's 8× and 4× widths.
const UNET_LIVE_CHANNEL_MULTIPLES: u64 = 24;
/// What candle's GPU convolution adds at the UNet's first level, in the same units: the
/// im2col matrix of a 3×3 kernel over the up path's widest input (three times the
/// level's channels: its own, the skip connection and the level below's).
const UNET_GPU_CONV_CHANNEL_MULTIPLES: u64 = 9 * 3;
/// Attention heads at the UNet's first level (SD 1.5's 8).
const UNET_FIRST_LEVEL_HEADS: u64 = 8;
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

/// The sizes of the networks that set the peak, and where they run.
#[derive(Debug, Clone, Copy)]
pub struct NetworkSizes {
    /// Channels of the UNet's first level (320 in SD 1.5).
    pub unet_channels: u64,
    /// The activations' number format.
    pub dtype: DType,
    /// Whether the run is on the CPU (bounded convolutions) or a GPU.
    pub on_cpu: bool,
    /// The VAE decode's memory, which also knows the dtype and the device.
    pub decode: DecodeCost,
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
            dtype: models.dtype,
            on_cpu: models.device.is_cpu(),
            decode: models.vae.decode_cost(&models.device, models.vae.dtype()),
        }
    }
}

/// Estimates the memory `request` needs with networks of `sizes`.
pub fn estimate(request: &Request, sizes: NetworkSizes) -> Estimate {
    let batch = request.batch as u64;
    let pixels = request.width as u64 * request.height as u64;
    let latent_pixels = pixels / 64;
    // Both CFG halves go through the UNet together.
    let samples = 2 * batch;
    let gpu_conv = if sizes.on_cpu {
        0
    } else {
        UNET_GPU_CONV_CHANNEL_MULTIPLES
    };
    let unet_activations = samples
        * latent_pixels
        * sizes.unet_channels
        * (UNET_LIVE_CHANNEL_MULTIPLES + gpu_conv)
        * sizes.dtype.size_in_bytes() as u64;
    let scores = samples * UNET_FIRST_LEVEL_HEADS * latent_pixels * latent_pixels;
    let unet = unet_activations + attention_scores_bytes(scores, sizes.dtype, sizes.on_cpu);
    let vae = sizes
        .decode
        .least_bytes(request.height / 8, request.width / 8);
    Estimate {
        device_bytes: unet.max(vae),
        host_bytes: batch * pixels * 3 * (4 * DECODED_F32_COPIES + 1),
    }
}

/// Refuses an estimate over `limit_bytes`, naming both, and the GPU where it is one
/// (`None`: the system's memory).
pub fn check_fits(needed_bytes: u64, limit_bytes: u64, gpu: Option<&str>) -> Result<()> {
    if needed_bytes <= limit_bytes {
        return Ok(());
    }
    let (memory, there) = match gpu {
        Some(gpu) => (format!("memory on the {gpu}"), " there"),
        None => ("memory".to_string(), ""),
    };
    Err(MinusError::InvalidRequest(format!(
        "this run needs about {} of {memory} and {} is available{there}: use a smaller size or fewer images per run",
        gib(needed_bytes),
        gib(limit_bytes)
    )))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Refuses `needs` where `available` cannot hold it: on shared memory (the CPU,
/// Apple silicon) both parts in the host's memory and the device's part within the
/// GPU's own limit; on a GPU with memory of its own, each part in its own memory.
/// What is not known refuses nothing.
pub fn check_available(needs: Estimate, available: Available, gpu: &str) -> Result<()> {
    if let Some(device_bytes) = available.device_bytes {
        check_fits(needs.device_bytes, device_bytes, Some(gpu))?;
    }
    let Some(host_bytes) = available.host_bytes else {
        return Ok(());
    };
    let host_needs = if available.shared {
        needs.device_bytes + needs.host_bytes
    } else {
        needs.host_bytes
    };
    check_fits(host_needs, host_bytes, None)
}

/// The GPU's name in messages.
fn gpu_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cuda { gpu_id } => format!("GPU (cuda:{gpu_id})"),
        DeviceLocation::Metal { .. } => "GPU (Metal)".to_string(),
        DeviceLocation::Cpu => "CPU".to_string(),
    }
}

/// Refuses `request` when it cannot fit the memory left to `models` (see
/// [`check_available`]).
pub fn check_request(models: &Models, request: &Request) -> Result<()> {
    let needs = estimate(request, NetworkSizes::of(models));
    let available = Available::probe(&models.device);
    check_available(needs, available, &gpu_name(&models.device))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// SD 1.5's UNet and VAE on `device` in `dtype`.
    fn sd15(dtype: DType, on_cpu: bool) -> NetworkSizes {
        NetworkSizes {
            unet_channels: 320,
            dtype,
            on_cpu,
            decode: DecodeCost {
                full_res_channels: 256,
                dtype,
                on_cpu,
            },
        }
    }

    fn left(host_bytes: Option<u64>, device_bytes: Option<u64>, shared: bool) -> Available {
        Available {
            host_bytes,
            device_bytes,
            shared,
        }
    }

    fn request(side: usize, batch: usize) -> Request {
        Request {
            width: side,
            height: side,
            batch,
            ..Request::default()
        }
    }

    fn needs(side: usize, batch: usize) -> u64 {
        let estimate = estimate(&request(side, batch), sd15(DType::F32, true));
        estimate.device_bytes + estimate.host_bytes
    }

    #[test]
    fn ordinary_runs_fit_a_small_machine_and_huge_ones_do_not() {
        let eight_gib = 8 * GIB;
        assert!(check_fits(needs(512, 1), eight_gib, None).is_ok());
        assert!(check_fits(needs(768, 2), eight_gib, None).is_ok());
        let message = check_fits(needs(4096, 64), eight_gib, None)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("needs about"), "{message}");
        assert!(message.contains("8.0 GiB is available"), "{message}");
        assert!(needs(4096, 64) > 1 << 40);
    }

    #[test]
    fn grows_with_size_and_batch_but_the_decode_not_with_the_batch() {
        // Above a tile the decode's part stays that of a tile; the UNet's grows.
        assert!(needs(1024, 1) > needs(512, 1));
        assert!(needs(2048, 1) > 3 * needs(1024, 1));
        assert!(needs(512, 4) > needs(512, 1));
        let device_bytes =
            |batch| estimate(&request(512, batch), sd15(DType::F32, true)).device_bytes;
        // The full-resolution decode sets the device peak of small batches, one image at a time.
        assert_eq!(device_bytes(2), device_bytes(1));
        assert!(device_bytes(8) > device_bytes(1));
    }

    #[test]
    fn a_gpu_counts_its_convolution_matrices_and_attention_slices() {
        let cpu = estimate(&request(512, 1), sd15(DType::F32, true)).device_bytes;
        let gpu = estimate(&request(512, 1), sd15(DType::F32, false)).device_bytes;
        assert!(gpu > 2 * cpu, "gpu {gpu}, cpu {cpu}");
        // A 1024² decode on a GPU in f16: about 4.5 GiB of im2col and 6.5 GiB in all,
        // more than an 8 GB card has left beside the weights; the tiled one is far less.
        let decode = sd15(DType::F16, false).decode;
        let whole = decode.whole_bytes(128, 128);
        assert!((6 * GIB..8 * GIB).contains(&whole), "{whole}");
        assert!(decode.least_bytes(128, 128) < 2 * GIB);
    }

    #[test]
    fn an_f16_run_on_the_cpu_needs_a_fifth_of_its_weights_at_most() {
        // The stand-in for a GPU's f16 run: full-size SD 1.5, ViT-H and Plus in f16
        // (3270 MiB), 256², 4 images. The attention's scores and their f32 copy once
        // took 640 MiB of it; the CPU's smaller slices keep them at 160 MiB.
        let weights_bytes = 3270 << 20;
        let needs = estimate(&request(256, 4), sd15(DType::F16, true));
        let run_bytes = needs.device_bytes + needs.host_bytes;
        assert!(5 * run_bytes <= weights_bytes, "{run_bytes}");
    }

    #[test]
    fn a_run_that_does_not_fit_the_gpu_is_refused_with_its_numbers() {
        // 1024², 8 images in f16 on a card with 4 GiB left: the UNet's activations alone
        // are more, whatever the decode does.
        let needs = estimate(&request(1024, 8), sd15(DType::F16, false));
        let card = left(Some(64 * GIB), Some(4 * GIB), false);
        let message = check_available(needs, card, "GPU (cuda:0)")
            .expect_err("refused")
            .to_string();
        let wanted = format!(
            "this run needs about {:.1} GiB of memory on the GPU (cuda:0) and 4.0 GiB is available there",
            needs.device_bytes as f64 / GIB as f64
        );
        assert!(message.contains(&wanted), "{message}");
        // One 512² image fits the same card, and the host part is checked on its own.
        let small = estimate(&request(512, 1), sd15(DType::F16, false));
        assert!(check_available(small, card, "GPU (cuda:0)").is_ok());
        let little_host = left(Some(GIB / 1024), Some(4 * GIB), false);
        let message = check_available(small, little_host, "GPU (cuda:0)")
            .expect_err("host refused")
            .to_string();
        assert!(
            message.contains("of memory and 0.0 GiB is available:"),
            "{message}"
        );
    }

    #[test]
    fn shared_memory_holds_both_parts_and_unknown_memory_refuses_nothing() {
        let needs = Estimate {
            device_bytes: 3 * GIB,
            host_bytes: 2 * GIB,
        };
        let unified = left(Some(4 * GIB), Some(16 * GIB), true);
        let message = check_available(needs, unified, "GPU (Metal)")
            .expect_err("5 GiB in 4")
            .to_string();
        assert!(
            message.contains("needs about 5.0 GiB of memory and 4.0 GiB"),
            "{message}"
        );
        let working_set = left(Some(64 * GIB), Some(2 * GIB), true);
        assert!(check_available(needs, working_set, "GPU (Metal)").is_err());
        assert!(check_available(needs, left(None, None, false), "GPU (cuda:0)").is_ok());
    }
}
