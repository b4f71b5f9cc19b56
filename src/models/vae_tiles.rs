//! Decoding very large latents in overlapping tiles, so the VAE's full-resolution
//! activations stay those of a 512² image whatever the picture's size.
//!
//! Each tile is decoded alone and the tiles are blended with weights that ramp
//! across the overlap. Unlike the per-image split this is not exact: GroupNorm's
//! statistics and the mid-block attention see one tile, not the picture. It is used
//! only above [`TILED_ABOVE_LATENT_PIXELS`], where a whole decode would not fit.

use std::ops::Range;

use candle_core::{DType, Tensor};

/// Latent side of a tile (512 pixels).
pub const TILE_LATENTS: usize = 64;
/// Latents neighbouring tiles share at least (128 pixels).
pub const OVERLAP_LATENTS: usize = 16;
/// Images of more latent pixels than this (1024² pixels) decode in tiles.
pub const TILED_ABOVE_LATENT_PIXELS: usize = 128 * 128;
/// Pixels per latent along each axis.
const SCALE: usize = 8;

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
    use super::*;
    use candle_core::Device;

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
}
