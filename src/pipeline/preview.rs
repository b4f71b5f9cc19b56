//! Live previews of the image being denoised: TAESD's decode of the predicted clean
//! latents when TAESD is loaded, else a colour map of them with the family's linear
//! factors.

use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::decoded::to_images;
use crate::models::family::ModelFamily;
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

/// A family's linear map from latents to colours: `factors` rows are latent channels,
/// columns R, G, B, then `bias` is added. The values are ComfyUI's fits
/// (`comfy/latent_formats.py`, `latent_rgb_factors` and `latent_rgb_factors_bias`).
struct LatentColours {
    factors: [[f32; 3]; 4],
    bias: [f32; 3],
}

const SD15_COLOURS: LatentColours = LatentColours {
    factors: [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    bias: [0.0; 3],
};

const SDXL_COLOURS: LatentColours = LatentColours {
    factors: [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ],
    bias: [0.1084, -0.0175, -0.0011],
};

fn latent_colours(family: ModelFamily) -> &'static LatentColours {
    match family {
        ModelFamily::Sd15 => &SD15_COLOURS,
        ModelFamily::Sdxl => &SDXL_COLOURS,
    }
}

/// Converts the first item of `latents` `[batch, 4, h, w]` of a `family` model into an
/// RGB image of `w × h` pixels; the window enlarges it with linear filtering.
pub fn latents_to_rgb(latents: &Tensor, family: ModelFamily) -> candle_core::Result<RgbImage> {
    let colours = latent_colours(family);
    let first = latents.get(0)?.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    let (height, width) = (first[0].len(), first[0][0].len());
    let mut rgb = RgbImage::new(width as u32, height as u32);
    for (x, y, pixel) in rgb.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            let value: f32 = (0..4)
                .map(|k| first[k][y][x] * colours.factors[k][c])
                .sum::<f32>()
                + colours.bias[c];
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

/// On the CPU, TAESD's preview decodes at most this many latent pixels (32×32, a
/// 256×256 picture that the window enlarges smoothly): at full size it would cost
/// about a sixth of a 512² CPU step, averaged down 2× it stays under 5%.
pub const CPU_PREVIEW_LATENT_PIXELS: usize = 32 * 32;

/// The first item of `latents`, averaged down on the CPU by the smallest whole factor
/// that brings it within [`CPU_PREVIEW_LATENT_PIXELS`] (GPUs decode it whole).
pub fn preview_latents(latents: &Tensor) -> candle_core::Result<Tensor> {
    let first = latents.narrow(0, 0, 1)?;
    let (_, _, height, width) = first.dims4()?;
    if !first.device().is_cpu() {
        return Ok(first);
    }
    let fits = |f: usize| (height / f) * (width / f) <= CPU_PREVIEW_LATENT_PIXELS;
    let factor = (1..=height.min(width)).find(|&f| fits(f)).unwrap_or(1);
    if factor == 1 {
        return Ok(first);
    }
    first.avg_pool2d(factor)
}

/// The preview of `latents` (of a `family` model) as `kind` asks, and the kind actually
/// drawn (the latent colours when TAESD is asked for but not loaded).
pub fn render(
    latents: &Tensor,
    kind: PreviewKind,
    taesd: Option<&TaesdDecoder>,
    family: ModelFamily,
) -> Result<(RgbImage, PreviewKind)> {
    match (kind, taesd) {
        (PreviewKind::Taesd, Some(taesd)) => {
            Ok((taesd_to_rgb(taesd, &preview_latents(latents)?)?, kind))
        }
        _ => Ok((latents_to_rgb(latents, family)?, PreviewKind::LatentColours)),
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
        let rgb = latents_to_rgb(&latents, ModelFamily::Sd15)?;
        assert_eq!(rgb.dimensions(), (3, 2));
        let expected = SD15_COLOURS.factors[0].map(|f| ((f + 1.0) * 127.5).round() as u8);
        assert_eq!(rgb.get_pixel(2, 1).0, expected);
        // SDXL's factors and bias: 0.3651 + 0.1084 etc.
        let rgb = latents_to_rgb(&latents, ModelFamily::Sdxl)?;
        assert_eq!(rgb.get_pixel(2, 1).0, [188, 179, 183]);
        Ok(())
    }

    #[test]
    fn cpu_previews_are_averaged_down_to_at_most_32_by_32_latents() -> candle_core::Result<()> {
        let shape_of = |h: usize, w: usize| -> candle_core::Result<Vec<usize>> {
            let latents = Tensor::ones((2, 4, h, w), DType::F32, &Device::Cpu)?;
            Ok(preview_latents(&latents)?.dims().to_vec())
        };
        assert_eq!(shape_of(12, 10)?, [1, 4, 12, 10]);
        assert_eq!(shape_of(32, 32)?, [1, 4, 32, 32]);
        assert_eq!(shape_of(64, 64)?, [1, 4, 32, 32]);
        assert_eq!(shape_of(96, 64)?, [1, 4, 32, 21]);
        assert_eq!(shape_of(4, 600)?, [1, 4, 2, 300]);
        let pooled = preview_latents(&Tensor::ones((1, 4, 64, 64), DType::F32, &Device::Cpu)?)?;
        assert_eq!(pooled.mean_all()?.to_scalar::<f32>()?, 1.0);
        Ok(())
    }

    #[test]
    fn without_taesd_the_colour_map_is_drawn_and_said() -> Result<()> {
        let latents = Tensor::zeros((1, 4, 2, 3), DType::F32, &Device::Cpu)?;
        let (rgb, kind) = render(&latents, PreviewKind::Taesd, None, ModelFamily::Sd15)?;
        assert_eq!(kind, PreviewKind::LatentColours);
        assert_eq!(rgb.dimensions(), (3, 2));
        Ok(())
    }
}
