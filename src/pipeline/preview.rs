//! Cheap live previews: predicted clean latents → RGB with SD 1.5's linear factors.

use candle_core::{DType, Tensor};
use image::RgbImage;

/// Rows are latent channels, columns R, G, B.
const LATENT_RGB_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// Upscale from latent to pixel resolution.
const LATENT_SCALE: u32 = 8;

/// Converts the first item of `latents` `[batch, 4, h, w]` into an RGB image of
/// `8h × 8w` pixels (nearest-neighbour upscaled).
pub fn latents_to_rgb(latents: &Tensor) -> candle_core::Result<RgbImage> {
    let first = latents.get(0)?.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    let (height, width) = (first[0].len(), first[0][0].len());
    let mut small = RgbImage::new(width as u32, height as u32);
    for (x, y, pixel) in small.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            let value: f32 = (0..4)
                .map(|k| first[k][y][x] * LATENT_RGB_FACTORS[k][c])
                .sum();
            pixel[c] = ((value.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        }
    }
    Ok(image::imageops::resize(
        &small,
        width as u32 * LATENT_SCALE,
        height as u32 * LATENT_SCALE,
        image::imageops::FilterType::Nearest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn maps_factors_and_upscales() -> candle_core::Result<()> {
        // Latent channel 0 = 1 everywhere: RGB = first factor row.
        let mut values = vec![0f32; 4 * 2 * 3];
        values[..6].fill(1.0);
        let latents = Tensor::from_vec(values, (1, 4, 2, 3), &Device::Cpu)?;
        let rgb = latents_to_rgb(&latents)?;
        assert_eq!(rgb.dimensions(), (24, 16));
        let expected = LATENT_RGB_FACTORS[0].map(|f| ((f + 1.0) * 127.5).round() as u8);
        assert_eq!(rgb.get_pixel(23, 15).0, expected);
        Ok(())
    }
}
