//! cubiq's noised negative: the prompt images, warped, flipped and drowned in noise,
//! as what the unconditioned side should move away from.
//!
//! This follows `image_add_noise` of cubiq's ComfyUI_IPAdapter_plus before his
//! rewrite (`IPAdapterPlus.py` at the parent of commit 643cb81): torchvision's
//! `ElasticTransform(alpha=75, sigma=3.5·noise)`, `RandomVerticalFlip(p=1)`,
//! `RandomHorizontalFlip(p=1)`, then `image + (0.25·(1 − noise) + 0.05)·randn_like(image)`,
//! and ComfyUI's `clip_preprocess` (clamp to 8 bits, CLIP normalisation). It acts on
//! the square crop of our own preprocessing. Where cubiq reseeds torch's global
//! generator with 0, we use a torch-compatible CPU generator seeded with the run's
//! seed (a generator of its own, not the latents' one), so each seed gives its own
//! noise and the Python reference (`tests/tools/make_cubiq_cases.py`, which runs
//! torchvision's transforms) draws the same numbers: the x then y displacement fields
//! (`torch.rand`, one `u32` per value), one `torch.rand(1)` for each flip (the flips
//! draw it to compare with p = 1, so both always flip), then the Gaussian noise of
//! every image in turn. `randn_like` on the permuted
//! (non-contiguous) view takes torch's serial path: one double-precision Box–Muller
//! value per element, in memory (channel-major) order.

use image::RgbImage;

use super::preprocess::{CLIP_MEAN, CLIP_STD};
use crate::rng::TorchRng;
use crate::schedulers::linspace_f32;

/// Strength of the elastic warp (torchvision's `alpha`), as cubiq set it.
const ELASTIC_ALPHA: f32 = 75.0;

/// CLIP `pixel_values` `[3, size, size]` of each square image (all the same size),
/// noised by `noise` in (0, 1] with the generator seeded by `seed`.
pub fn noised_pixel_values(squares: &[RgbImage], noise: f64, seed: u64) -> Vec<Vec<f32>> {
    let Some(first) = squares.first() else {
        return Vec::new();
    };
    let (width, height) = (first.width() as usize, first.height() as usize);
    let mut rng = TorchRng::new(seed);
    let sigma = noise * 3.5;
    // torchvision scales the x field by the width and the y field by the height.
    let dx = displacement(&mut rng, width, height, sigma, width);
    let dy = displacement(&mut rng, width, height, sigma, height);
    // RandomVerticalFlip, then RandomHorizontalFlip: each draws its coin before flipping.
    for _flip in 0..2 {
        rng.rand_f32();
    }
    let grid_x = identity_grid(width);
    let grid_y = identity_grid(height);
    let amount = (0.25 * (1.0 - noise) + 0.05) as f32;
    squares
        .iter()
        .map(|square| {
            let plane = width * height;
            let mut out = vec![0f32; 3 * plane];
            for c in 0..3 {
                let channel: Vec<f32> = square.pixels().map(|p| f32::from(p[c]) / 255.0).collect();
                for y in 0..height {
                    for x in 0..width {
                        // Both flips: output (y, x) reads the warp at (H-1-y, W-1-x).
                        let (sy, sx) = (height - 1 - y, width - 1 - x);
                        let i = sy * width + sx;
                        let gx = grid_x[sx] + dx[i];
                        let gy = grid_y[sy] + dy[i];
                        out[c * plane + y * width + x] =
                            warp_sample(&channel, width, height, gx, gy);
                    }
                }
            }
            for (c, values) in out.chunks_exact_mut(plane).enumerate() {
                let (mean, std) = (CLIP_MEAN[c] as f32, CLIP_STD[c] as f32);
                for value in values {
                    let noised = *value + amount * rng.randn_serial();
                    let quantized = (255.0 * noised).clamp(0.0, 255.0).round_ties_even() / 255.0;
                    *value = (quantized - mean) / std;
                }
            }
            out
        })
        .collect()
}

/// One field of torchvision's `ElasticTransform.get_params`: uniform in [-1, 1),
/// Gaussian-blurred when `sigma` > 0, times `alpha / divisor`.
fn displacement(
    rng: &mut TorchRng,
    width: usize,
    height: usize,
    sigma: f64,
    divisor: usize,
) -> Vec<f32> {
    let field: Vec<f32> = (0..width * height)
        .map(|_| rng.rand_f32() * 2.0 - 1.0)
        .collect();
    let field = if sigma > 0.0 {
        let mut size = (8.0 * sigma + 1.0) as usize;
        if size.is_multiple_of(2) {
            size += 1;
        }
        gaussian_blur(&field, width, height, size, sigma as f32)
    } else {
        field
    };
    field
        .into_iter()
        .map(|d| d * ELASTIC_ALPHA / divisor as f32)
        .collect()
}

/// torchvision's `gaussian_blur` of one plane: a `size × size` kernel (outer product
/// of the normalised 1-D Gaussian), reflect padding.
fn gaussian_blur(plane: &[f32], width: usize, height: usize, size: usize, sigma: f32) -> Vec<f32> {
    let half = (size / 2) as isize;
    let pdf: Vec<f32> = (0..size)
        .map(|i| {
            let x = (i as isize - half) as f32 / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f32 = pdf.iter().sum();
    let kernel: Vec<f32> = pdf.iter().map(|p| p / total).collect();
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let folded = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        folded.clamp(0, n - 1) as usize
    };
    let mut out = vec![0f32; width * height];
    for y in 0..height {
        for x in 0..width {
            let mut sum = 0f32;
            for (ky, wy) in kernel.iter().enumerate() {
                let sy = reflect(y as isize + ky as isize - half, height);
                for (kx, wx) in kernel.iter().enumerate() {
                    let sx = reflect(x as isize + kx as isize - half, width);
                    sum += wy * wx * plane[sy * width + sx];
                }
            }
            out[y * width + x] = sum;
        }
    }
    out
}

/// `torch.linspace((1 - n)/n, (n - 1)/n, n)` in float32, as torch computes it.
fn identity_grid(n: usize) -> Vec<f32> {
    let start = ((1.0 - n as f64) / n as f64) as f32;
    let end = ((n as f64 - 1.0) / n as f64) as f32;
    linspace_f32(start, end, n)
}

/// `grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)` at the
/// normalised point (`gx`, `gy`), times the same sample of a plane of ones: torchvision's
/// fill of 0 samples such a mask beside the image and multiplies by it, which darkens
/// the points that fall partly outside (and moves the others by a rounding at most).
fn warp_sample(plane: &[f32], width: usize, height: usize, gx: f32, gy: f32) -> f32 {
    let ix = (gx + 1.0) * (width as f32 / 2.0) - 0.5;
    let iy = (gy + 1.0) * (height as f32 / 2.0) - 0.5;
    let (x0, y0) = (ix.floor(), iy.floor());
    let (fx, fy) = (ix - x0, iy - y0);
    let inside = |x: f32, y: f32| x >= 0.0 && y >= 0.0 && x < width as f32 && y < height as f32;
    let (north, south) = (1.0 - fy, fy);
    let (west, east) = (1.0 - fx, fx);
    let corners = [
        (x0, y0, north * west),
        (x0 + 1.0, y0, north * east),
        (x0, y0 + 1.0, south * west),
        (x0 + 1.0, y0 + 1.0, south * east),
    ];
    let (mut value, mut mask) = (0f32, 0f32);
    for (x, y, weight) in corners {
        if inside(x, y) {
            value += plane[y as usize * width + x as usize] * weight;
            mask += weight;
        }
    }
    value * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_grid_is_symmetric_pixel_centres() {
        let grid = identity_grid(4);
        assert_eq!(grid, [-0.75, -0.25, 0.25, 0.75]);
    }

    #[test]
    fn blur_keeps_a_constant_plane() {
        let plane = vec![0.5f32; 20 * 12];
        let blurred = gaussian_blur(&plane, 20, 12, 9, 1.2);
        assert!(blurred.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    fn gradient_square() -> RgbImage {
        RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, 7])
        })
    }

    /// What torch 2.15 and torchvision 0.29 give for this square (noise 0.5, seed 1),
    /// through `image_add_noise` and `clip_preprocess` of tests/tools/make_cubiq_cases.py:
    /// it pins the draws (both fields, the two flips' coins, then the noise) and the warp,
    /// whose corner pixels fall partly outside. One 8-bit level is 0.014 here.
    #[test]
    fn matches_torchvision_on_a_small_square() {
        let values = noised_pixel_values(&[gradient_square()], 0.5, 1);
        let expected = [
            (0, [1.302604, 1.930336, 1.638368, 1.171218]),
            (
                2 * 256 + 15 * 16 + 12,
                [-1.48022, -1.48022, -0.299954, -0.726556],
            ),
        ];
        for (start, want) in expected {
            let got = &values[0][start..start + 4];
            let close = got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4);
            assert!(close, "at {start}: {got:?} vs {want:?}");
        }
    }

    #[test]
    fn noise_depends_on_the_seed_and_stays_normalised() {
        let square = gradient_square();
        let a = noised_pixel_values(std::slice::from_ref(&square), 0.5, 1);
        let b = noised_pixel_values(std::slice::from_ref(&square), 0.5, 2);
        assert_eq!(a[0].len(), 3 * 16 * 16);
        assert_ne!(a, b);
        // Clamped to 8-bit pixels before normalisation, like ComfyUI's preprocessing.
        for (c, values) in a[0].chunks_exact(16 * 16).enumerate() {
            let (low, high) = (
                -CLIP_MEAN[c] / CLIP_STD[c],
                (1.0 - CLIP_MEAN[c]) / CLIP_STD[c],
            );
            let within = |v: &f32| (low - 1e-5..=high + 1e-5).contains(&f64::from(*v));
            assert!(values.iter().all(within));
        }
    }
}
