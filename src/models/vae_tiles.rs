//! Decoding very large latents in overlapping tiles, so the VAE's full-resolution
//! activations stay those of a 512² image whatever the picture's size.
//!
//! Each tile is decoded alone and the tiles are blended with weights that ramp
//! across the overlap. Unlike the per-image split this is not exact: GroupNorm's
//! statistics and the mid-block attention see one tile, not the picture. It is used
//! above [`TILED_ABOVE_LATENT_PIXELS`], where a whole decode would take gigabytes,
//! where the memory left would not hold a whole decode ([`DecodeCost`],
//! [`plan_decode`]), and when a whole decode runs out of device memory
//! ([`decode_as_planned`]): a run's steps are not lost to its last part.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use super::layers::attention_scores_bytes;
use crate::device::memory::is_out_of_memory;

/// Latent side of a tile (512 pixels).
pub const TILE_LATENTS: usize = 64;
/// Latents neighbouring tiles share at least (128 pixels).
pub const OVERLAP_LATENTS: usize = 16;
/// Images of more latent pixels than this (1024² pixels) decode in tiles.
pub const TILED_ABOVE_LATENT_PIXELS: usize = 128 * 128;
/// Pixels per latent along each axis.
const SCALE: usize = 8;
/// Full-resolution tensors of the decoder's widest channel count alive at once: the
/// upsampled input, a normalised copy, a convolution's output.
const FULL_RES_LIVE_TENSORS: u64 = 3;
/// What candle's GPU convolution adds, in the same units: the im2col matrix of a
/// 3×3 kernel (9 copies of the input) and the matrix product before its copy into
/// the output's layout. The CPU's convolutions work in bounded bands instead.
const GPU_CONV_EXTRA_TENSORS: u64 = 10;
/// f32 values per picture pixel the blended tiles add up in (three colours and a weight).
const TILE_SUM_VALUES: u64 = 4;
/// f32 copies of one decoded tile alive while it is weighted and added.
const TILE_IMAGE_COPIES: u64 = 4;

/// How one image is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePlan {
    /// In one pass.
    Whole,
    /// In blended tiles of [`TILE_LATENTS`].
    Tiles,
}

/// The memory a VAE decode of one image takes beyond the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCost {
    /// Channels of the decoder's widest full-resolution tensors (256 in SD 1.5's VAE).
    pub full_res_channels: u64,
    /// The activations' number format.
    pub dtype: DType,
    /// Whether the decode runs on the CPU (bounded convolutions) or a GPU.
    pub on_cpu: bool,
}

impl DecodeCost {
    /// The cost of a decoder of `full_res_channels` on `device` in `dtype`.
    pub fn on(device: &Device, dtype: DType, full_res_channels: usize) -> Self {
        Self {
            full_res_channels: full_res_channels as u64,
            dtype,
            on_cpu: device.is_cpu(),
        }
    }

    /// Peak bytes of a whole decode of `height × width` latents: the full-resolution
    /// part, or the mid block's attention over every latent pixel where that is more.
    pub fn whole_bytes(&self, height: usize, width: usize) -> u64 {
        let latent_pixels = (height * width) as u64;
        let pixels = latent_pixels * (SCALE * SCALE) as u64;
        let extra = if self.on_cpu {
            0
        } else {
            GPU_CONV_EXTRA_TENSORS
        };
        let full_res = pixels
            * self.full_res_channels
            * (FULL_RES_LIVE_TENSORS + extra)
            * self.dtype.size_in_bytes() as u64;
        let scores = latent_pixels * latent_pixels;
        full_res.max(attention_scores_bytes(scores, self.dtype, self.on_cpu))
    }

    /// Peak bytes of a tiled decode: one tile's whole decode, the tile in f32 while
    /// it is blended, and the picture's f32 sums.
    pub fn tiled_bytes(&self, height: usize, width: usize) -> u64 {
        let (rows, cols) = (height.min(TILE_LATENTS), width.min(TILE_LATENTS));
        let tile_pixels = (SCALE * SCALE * rows * cols) as u64;
        let pixels = (SCALE * SCALE * height * width) as u64;
        self.whole_bytes(rows, cols)
            + tile_pixels * 3 * 4 * TILE_IMAGE_COPIES
            + pixels * TILE_SUM_VALUES * 4
    }

    /// What decoding `height × width` latents needs at least, as [`plan_decode`]
    /// chooses: a whole decode where the picture is one tile, else a tiled one.
    pub fn least_bytes(&self, height: usize, width: usize) -> u64 {
        if height <= TILE_LATENTS && width <= TILE_LATENTS {
            self.whole_bytes(height, width)
        } else {
            self.tiled_bytes(height, width)
                .min(self.whole_bytes(height, width))
        }
    }
}

/// How to decode `height × width` latents with `available_bytes` left (`None`:
/// unknown): whole, unless the picture is above [`TILED_ABOVE_LATENT_PIXELS`] or a
/// whole decode would not fit, and it is larger than one tile.
pub fn plan_decode(
    height: usize,
    width: usize,
    cost: &DecodeCost,
    available_bytes: Option<u64>,
) -> DecodePlan {
    if height <= TILE_LATENTS && width <= TILE_LATENTS {
        return DecodePlan::Whole;
    }
    let too_large = height * width > TILED_ABOVE_LATENT_PIXELS;
    let would_not_fit =
        available_bytes.is_some_and(|bytes| cost.whole_bytes(height, width) > bytes);
    if too_large || would_not_fit {
        DecodePlan::Tiles
    } else {
        DecodePlan::Whole
    }
}

/// Decodes one image's `latents` `[1, c, h, w]` with `decode` as `plan` says; a whole
/// decode that runs out of device memory is done again in tiles (where the picture is
/// larger than one, so that tiles need less).
pub fn decode_as_planned(
    latents: &Tensor,
    plan: DecodePlan,
    decode: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let (_, _, height, width) = latents.dims4()?;
    let one_tile = height <= TILE_LATENTS && width <= TILE_LATENTS;
    if plan == DecodePlan::Whole {
        match decode(latents) {
            Err(error) if !one_tile && is_out_of_memory(&error) => {}
            whole => return whole,
        }
    }
    decode_in_tiles(latents, TILE_LATENTS, OVERLAP_LATENTS, decode)
}

/// Tile starts along an axis of `len` latents: tiles of `tile` that share at least
/// `overlap` with their neighbours, the last one ending at `len`.
fn tile_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(overlap).max(1);
    let mut starts: Vec<usize> = (0..)
        .map(|i| i * stride)
        .take_while(|&start| start + tile < len)
        .collect();
    starts.push(len - tile);
    starts
}

/// Blend weights of one tile along an axis, `[len]` pixels: ramping up over `ramp`
/// pixels where a tile comes before, down where one comes after, else 1. Never 0,
/// so every pixel has weight.
fn ramp_weights(len: usize, ramp: usize, before: bool, after: bool) -> Vec<f32> {
    let step = 1.0 / (ramp + 1) as f32;
    (0..len)
        .map(|i| {
            let up = if before { (i + 1) as f32 * step } else { 1.0 };
            let down = if after { (len - i) as f32 * step } else { 1.0 };
            up.min(down).min(1.0)
        })
        .collect()
}

/// Decodes `latents` `[1, c, h, w]` tile by tile with `decode` (latents to
/// `[1, 3, 8h', 8w']` images) and blends the tiles into one image, in the latents' dtype.
pub fn decode_in_tiles(
    latents: &Tensor,
    tile: usize,
    overlap: usize,
    decode: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let (_, _, height, width) = latents.dims4()?;
    let device = latents.device();
    let mut sum = Tensor::zeros((1, 3, SCALE * height, SCALE * width), DType::F32, device)?;
    let mut weight_sum = Tensor::zeros((1, 1, SCALE * height, SCALE * width), DType::F32, device)?;
    let ramp = SCALE * overlap;
    for y in tile_starts(height, tile, overlap) {
        let rows = tile.min(height);
        for x in tile_starts(width, tile, overlap) {
            let cols = tile.min(width);
            let part = latents.narrow(2, y, rows)?.narrow(3, x, cols)?;
            let image = decode(&part)?.to_dtype(DType::F32)?;
            let wy = ramp_weights(SCALE * rows, ramp, y > 0, y + rows < height);
            let wx = ramp_weights(SCALE * cols, ramp, x > 0, x + cols < width);
            let weight = Tensor::from_vec(wy, (1, 1, SCALE * rows, 1), device)?
                .broadcast_mul(&Tensor::from_vec(wx, (1, 1, 1, SCALE * cols), device)?)?;
            let ys: Range<usize> = SCALE * y..SCALE * (y + rows);
            let xs: Range<usize> = SCALE * x..SCALE * (x + cols);
            let add = |total: &Tensor, channels: usize, value: &Tensor| {
                let ranges = [0..1, 0..channels, ys.clone(), xs.clone()];
                let current =
                    total
                        .narrow(2, ys.start, rows * SCALE)?
                        .narrow(3, xs.start, cols * SCALE)?;
                total.slice_assign(&ranges, &(current + value)?)
            };
            sum = add(&sum, 3, &image.broadcast_mul(&weight)?)?;
            weight_sum = add(&weight_sum, 1, &weight)?;
        }
    }
    sum.broadcast_div(&weight_sum)?.to_dtype(latents.dtype())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn tiles_cover_the_axis_and_overlap_their_neighbours() {
        assert_eq!(tile_starts(40, 64, 16), [0]);
        assert_eq!(tile_starts(64, 64, 16), [0]);
        assert_eq!(tile_starts(160, 64, 16), [0, 48, 96]);
        assert_eq!(tile_starts(150, 64, 16), [0, 48, 86]);
        for len in 65..300 {
            let starts = tile_starts(len, 64, 16);
            assert_eq!(starts[0], 0);
            assert_eq!(starts.last().map(|s| s + 64), Some(len));
            assert!(
                starts
                    .windows(2)
                    .all(|w| w[0] < w[1] && w[0] + 64 >= w[1] + 16)
            );
        }
    }

    /// A decoder that acts on each latent pixel alone (the first three channels,
    /// each latent pixel repeated 8×8): tiling must then change nothing.
    fn local_decoder(latents: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = latents.dims4()?;
        latents
            .narrow(1, 0, 3)?
            .upsample_nearest2d(SCALE * h, SCALE * w)
    }

    #[test]
    fn blending_tiles_of_a_local_decoder_gives_the_whole_image() -> candle_core::Result<()> {
        let latents = Tensor::randn(0f32, 1f32, (1, 4, 21, 30), &Device::Cpu)?;
        let whole = local_decoder(&latents)?;
        let tiled = decode_in_tiles(&latents, 8, 3, local_decoder)?;
        let off = (whole - tiled)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(off < 1e-5, "{off}");
        Ok(())
    }

    #[test]
    fn one_tile_is_the_plain_decode_bit_for_bit() -> candle_core::Result<()> {
        let latents = Tensor::randn(0f32, 1f32, (1, 4, 6, 5), &Device::Cpu)?;
        let whole = local_decoder(&latents)?.flatten_all()?.to_vec1::<f32>()?;
        let tiled = decode_in_tiles(&latents, 8, 3, local_decoder)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(
            whole
                .iter()
                .zip(&tiled)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        Ok(())
    }

    /// A decoder that runs out of memory on anything larger than a tile, as a small
    /// GPU would, recording the latent sizes it was given.
    fn small_gpu<'a>(
        calls: &'a RefCell<Vec<(usize, usize)>>,
    ) -> impl Fn(&Tensor) -> candle_core::Result<Tensor> + 'a {
        move |latents| {
            let (_, _, h, w) = latents.dims4()?;
            calls.borrow_mut().push((h, w));
            if h > TILE_LATENTS || w > TILE_LATENTS {
                return Err(candle_core::Error::Msg(
                    "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
                ));
            }
            local_decoder(latents)
        }
    }

    #[test]
    fn a_whole_decode_that_runs_out_of_memory_is_done_again_in_tiles() -> candle_core::Result<()> {
        let latents = Tensor::randn(0f32, 1f32, (1, 4, 80, 72), &Device::Cpu)?;
        let calls = RefCell::new(Vec::new());
        let image = decode_as_planned(&latents, DecodePlan::Whole, small_gpu(&calls))?;
        let calls = calls.into_inner();
        assert_eq!(calls[0], (80, 72), "the whole picture first");
        assert_eq!(calls[1..], [(64, 64); 4], "then four tiles");
        let off = (local_decoder(&latents)? - image)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(off < 1e-5, "{off}");
        Ok(())
    }

    #[test]
    fn other_errors_and_a_picture_of_one_tile_are_not_retried() -> candle_core::Result<()> {
        let calls = RefCell::new(Vec::new());
        let one_tile = Tensor::zeros((1, 4, 64, 64), DType::F32, &Device::Cpu)?;
        let out_of_memory = |_: &Tensor| -> candle_core::Result<Tensor> {
            calls.borrow_mut().push((64, 64));
            Err(candle_core::Error::Msg("CUBLAS_STATUS_ALLOC_FAILED".into()))
        };
        assert!(decode_as_planned(&one_tile, DecodePlan::Whole, out_of_memory).is_err());
        assert_eq!(calls.borrow().len(), 1);
        let large = Tensor::zeros((1, 4, 80, 80), DType::F32, &Device::Cpu)?;
        let broken = |_: &Tensor| -> candle_core::Result<Tensor> {
            calls.borrow_mut().push((80, 80));
            Err(candle_core::Error::Msg("shape mismatch".into()))
        };
        let error = decode_as_planned(&large, DecodePlan::Whole, broken).expect_err("fails");
        assert!(error.to_string().contains("shape mismatch"), "{error}");
        assert_eq!(calls.borrow().len(), 2);
        Ok(())
    }

    #[test]
    fn tiles_are_planned_where_a_whole_decode_would_not_fit() {
        const GIB: u64 = 1 << 30;
        let gpu = DecodeCost {
            full_res_channels: 256,
            dtype: DType::F16,
            on_cpu: false,
        };
        // 768²: about 3.9 GiB whole on a GPU in f16.
        let whole_bytes = gpu.whole_bytes(96, 96);
        assert!((3 * GIB..5 * GIB).contains(&whole_bytes), "{whole_bytes}");
        assert_eq!(
            plan_decode(96, 96, &gpu, Some(whole_bytes)),
            DecodePlan::Whole
        );
        assert_eq!(
            plan_decode(96, 96, &gpu, Some(whole_bytes - 1)),
            DecodePlan::Tiles
        );
        assert_eq!(plan_decode(96, 96, &gpu, None), DecodePlan::Whole);
        // One tile has nothing smaller to fall back to; above 1024² tiles always.
        assert_eq!(plan_decode(64, 64, &gpu, Some(0)), DecodePlan::Whole);
        assert_eq!(
            plan_decode(136, 136, &gpu, Some(u64::MAX)),
            DecodePlan::Tiles
        );
        // Tiles cost a 512² decode and the sums, far below the whole.
        assert!(gpu.tiled_bytes(96, 96) < whole_bytes / 2);
        assert_eq!(gpu.least_bytes(96, 96), gpu.tiled_bytes(96, 96));
        assert_eq!(gpu.least_bytes(64, 48), gpu.whole_bytes(64, 48));
        // The CPU's convolutions build no im2col matrix.
        let cpu = DecodeCost {
            on_cpu: true,
            ..gpu
        };
        assert!(4 * cpu.whole_bytes(96, 96) < whole_bytes);
    }
}
