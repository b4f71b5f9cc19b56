//! Prompt-image preprocessing, bit-compatible with `CLIPImageProcessor` on
//! Pillow (alpha onto white, 8-bit fixed-point bicubic, center crop, normalise).

use std::path::Path;

use image::{DynamicImage, RgbImage};

use super::resample::{Canvas, Region, resize_region};
use crate::choices::named_choices;
use crate::files::{MAX_IMAGE_FILE_BYTES, read_regular_file};
use crate::{MinusError, Result};

/// CLIP's per-channel normalisation mean.
pub const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel normalisation standard deviation.
pub const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

named_choices! {
    /// How a non-square prompt image is made square for the image encoder.
    #[derive(Default)]
    pub enum FitMode {
        /// Resize the short side, then cut the middle square (what the reference does).
        #[default]
        Crop = "crop",
        /// Pad the short side with white to a square first: nothing is cut off.
        Pad = "pad",
        /// Stretch to a square: nothing is cut off, proportions change.
        Squash = "squash",
    }
}

/// Largest width or height of an image Minus decodes.
pub const MAX_IMAGE_SIDE_PX: u32 = 1 << 16;
/// Largest buffer an image decoder may allocate.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// Reads an image file into 8-bit RGB (alpha composited onto white, gray replicated).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = read_regular_file(path, MAX_IMAGE_FILE_BYTES)?;
    decode_rgb(&bytes).map_err(|message| MinusError::BadImage {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes encoded image bytes (PNG, JPEG, WebP, BMP) into 8-bit RGB, refusing images
/// whose size or decoded buffer is beyond Minus's limits before decoding them.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    Ok(to_rgb(&decode_bounded(bytes)?))
}

/// Decodes encoded image bytes as they are stored (alpha kept), within Minus's limits.
pub fn decode_bounded(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE_PX);
    limits.max_image_height = Some(MAX_IMAGE_SIDE_PX);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "image too large (at most {MAX_IMAGE_SIDE_PX} pixels a side and {} MiB decoded): {e}",
            MAX_DECODED_BYTES >> 20
        ),
        other => other.to_string(),
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err("the image has no pixels".to_string());
    }
    Ok(image)
}

/// Converts any decoded image to RGB the way transformers does with Pillow.
pub fn to_rgb(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = composite_on_white(u32::from(src[c]), alpha);
        }
    }
    out
}

/// Pillow's `alpha_composite` of one channel over opaque white (7-bit fixed point).
fn composite_on_white(value: u32, alpha: u32) -> u8 {
    if alpha == 0 {
        return 255;
    }
    let mixed = 128 * (value * alpha + 255 * (255 - alpha)) + (0x80 << 7);
    let divided = ((mixed >> 8) + mixed) >> 8;
    (divided >> 7).min(255) as u8
}

/// Preprocesses an RGB image into CLIP `pixel_values`, `[3, size, size]` row-major.
#[cfg(any(test, feature = "test-support"))]
pub fn clip_pixel_values(image: &RgbImage, size: usize, fit: FitMode) -> Vec<f32> {
    normalize(&clip_square(image, size, fit))
}

/// The `size × size` square the image encoder sees, before normalisation.
/// Only the part of the image that survives the fit is resampled, so memory stays
/// that of a `size × size` image whatever the aspect ratio.
pub fn clip_square(image: &RgbImage, size: usize, fit: FitMode) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let whole = Region {
        x: 0,
        y: 0,
        width: size,
        height: size,
    };
    match fit {
        FitMode::Crop => {
            // The short side becomes `size` (long side `int(size*long/short)`), then the
            // middle square is kept, as `CLIPImageProcessor` does.
            let (new_w, new_h) = if w <= h {
                (size, size * h / w.max(1))
            } else {
                (size * w / h.max(1), size)
            };
            let middle = Region {
                x: new_w.saturating_sub(size) / 2,
                y: new_h.saturating_sub(size) / 2,
                ..whole
            };
            resize_region(&Canvas::of(image), new_w, new_h, middle)
        }
        FitMode::Pad => {
            let side = w.max(h);
            let canvas = Canvas {
                image,
                width: side,
                height: side,
                left: (side - w) / 2,
                top: (side - h) / 2,
            };
            resize_region(&canvas, size, size, whole)
        }
        FitMode::Squash => resize_region(&Canvas::of(image), size, size, whole),
    }
}

/// CLIP `pixel_values` `[3, h, w]` of an 8-bit image: `(v/255 − mean) / std`.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            let scaled = f64::from(pixel[c]) * (1.0 / 255.0);
            out[c * w * h + i] = ((scaled - CLIP_MEAN[c]) / CLIP_STD[c]) as f32;
        }
    }
    out
}
