//! Live previews of the image being denoised: TAESD's decode of the predicted clean
//! latents when TAESD is loaded, else a colour map of them with SD 1.5's linear factors.

use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::generate::to_images;
use crate::models::taesd::TaesdDecoder;
use crate::{MinusError, Result};

/// How a step's preview is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreviewKind {
    /// TAESD's picture (the latent colour map when TAESD is not loaded).
    #[default]
    Taesd,
    /// The latent colour map: nearly free, one pixel per latent.
    LatentColours,
}

impl PreviewKind {
    /// Both kinds, in the order the window offers them.
    pub const ALL: [Self; 2] = [Self::Taesd, Self::LatentColours];

    /// The name the window shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Taesd => "TAESD",
            Self::LatentColours => "Latent colours",
        }
    }
}

/// Rows are latent channels, columns R, G, B.
const LATENT_RGB_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// Converts the first item of `latents` `[batch, 4, h, w]` into an RGB image of
/// `w × h` pixels; the window enlarges it with linear filtering.
pub fn latents_to_rgb(latents: &Tensor) -> candle_core::Result<RgbImage> {
    let first = latents.get(0)?.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    let (height, width) = (first[0].len(), first[0][0].len());
    let mut rgb = RgbImage::new(width as u32, height as u32);
    for (x, y, pixel) in rgb.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            let value: f32 = (0..4)
                .map(|k| first[k][y][x] * LATENT_RGB_FACTORS[k][c])
                .sum();
            pixel[c] = ((value.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        }
    }
    Ok(rgb)
}

/// TAESD's picture of the first item of `latents` (UNet latents, as the sampler
/// makes them), at full resolution, rounded as the final image is.
pub fn taesd_to_rgb(taesd: &TaesdDecoder, latents: &Tensor) -> Result<RgbImage> {
    let first = latents.narrow(0, 0, 1)?;
    let decoded = taesd.decode(&first.to_dtype(taesd.dtype())?)?;
    to_images(&decoded)?
        .into_iter()
        .next()
        .ok_or_else(|| MinusError::UnexpectedShape("TAESD decoded no image".to_string()))
}

/// The preview of `latents` as `kind` asks, and the kind actually drawn (the latent
/// colours when TAESD is asked for but not loaded).
pub fn render(
    latents: &Tensor,
    kind: PreviewKind,
    taesd: Option<&TaesdDecoder>,
) -> Result<(RgbImage, PreviewKind)> {
    match (kind, taesd) {
        (PreviewKind::Taesd, Some(taesd)) => Ok((taesd_to_rgb(taesd, latents)?, kind)),
        _ => Ok((latents_to_rgb(latents)?, PreviewKind::LatentColours)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn maps_factors_at_latent_resolution() -> candle_core::Result<()> {
        // Latent channel 0 = 1 everywhere: RGB = first factor row.
        let mut values = vec![0f32; 4 * 2 * 3];
        values[..6].fill(1.0);
        let latents = Tensor::from_vec(values, (1, 4, 2, 3), &Device::Cpu)?;
        let rgb = latents_to_rgb(&latents)?;
        assert_eq!(rgb.dimensions(), (3, 2));
        let expected = LATENT_RGB_FACTORS[0].map(|f| ((f + 1.0) * 127.5).round() as u8);
        assert_eq!(rgb.get_pixel(2, 1).0, expected);
        Ok(())
    }

    #[test]
    fn without_taesd_the_colour_map_is_drawn_and_said() -> Result<()> {
        let latents = Tensor::zeros((1, 4, 2, 3), DType::F32, &Device::Cpu)?;
        let (rgb, kind) = render(&latents, PreviewKind::Taesd, None)?;
        assert_eq!(kind, PreviewKind::LatentColours);
        assert_eq!(rgb.dimensions(), (3, 2));
        Ok(())
    }
}
