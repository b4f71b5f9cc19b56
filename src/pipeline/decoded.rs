//! Decoder output (the VAE's, TAESD's) as 8-bit images: shared by the final decode and
//! the previews; and which decoder makes the final picture.

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::choices::named_choices;
use crate::{MinusError, Result};

named_choices! {
    /// The decoder that turns the final latents into the picture.
    #[derive(Default)]
    pub enum FinalDecode {
        /// The full VAE: the picture as SD 1.5 makes it.
        #[default]
        Vae = "vae",
        /// TAESD, the previews' tiny decoder: a draft in about a second on the CPU,
        /// softer in fine detail.
        Taesd = "taesd",
    }
}

impl FinalDecode {
    /// Whether this is the default (the full VAE): saved settings then leave it out.
    pub fn is_vae(&self) -> bool {
        *self == Self::Vae
    }

    /// How the settings text and the window's labels name this decoder.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Vae => "VAE",
            Self::Taesd => "TAESD",
        }
    }
}

/// Decoder output in [-1, 1] → 8-bit RGB images.
pub fn to_images(decoded: &Tensor) -> Result<Vec<RgbImage>> {
    let (batch, _, height, width) = decoded.dims4()?;
    let pixels = ((decoded.to_dtype(DType::F32)? + 1.0)? / 2.0)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.0)?
        .round()?
        .permute((0, 2, 3, 1))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per_image = height * width * 3;
    (0..batch)
        .map(|i| {
            let bytes: Vec<u8> = pixels[i * per_image..(i + 1) * per_image]
                .iter()
                .map(|v| *v as u8)
                .collect();
            RgbImage::from_raw(width as u32, height as u32, bytes).ok_or_else(|| {
                MinusError::UnexpectedShape("the decoded image has another size".to_string())
            })
        })
        .collect()
}
