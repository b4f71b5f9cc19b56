//! Decoder output (the VAE's, TAESD's) as 8-bit images: shared by the final decode and
//! the previews.

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::{MinusError, Result};

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
