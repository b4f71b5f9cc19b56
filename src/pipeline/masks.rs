//! Image prompt masks: a grayscale picture (white = the image applies there) fitted to
//! the output as diffusers' `IPAdapterMaskProcessor.preprocess` fits it
//! (diffusers 0.42.1, image_processor.py: `preprocess` 608-740 with the mask
//! processor's settings 1299-1316, `resize` 463-522, `binarize` 524-538).

use std::path::Path;

use image::RgbImage;

use super::preprocess::decode_bounded;
use super::resample::{Canvas, Filter, Region, resize_region_with};
use crate::models::unet::RegionMask;
use crate::{MinusError, Result};

/// Fits the decoded mask `bytes` of the file at `path` to `width × height`.
pub fn read_mask(path: &Path, bytes: &[u8], width: usize, height: usize) -> Result<RegionMask> {
    let image = decode_bounded(bytes).map_err(|message| MinusError::BadImage {
        path: path.to_path_buf(),
        message: format!("not a usable mask: {message}"),
    })?;
    // Pillow's `convert("L")` reads the colour under transparency as it is stored.
    Ok(fit_mask(&image.to_rgb8(), width, height))
}

/// The mask processor's steps on a Pillow image: resized to the output with Lanczos
/// first (Pillow skips a resize to the same size), then converted to 8-bit gray
/// (ITU-R 601-2 luma in Pillow's fixed point), then `v / 255` thresholded at 0.5,
/// which for 8-bit values is `v >= 128`.
pub fn fit_mask(image: &RgbImage, width: usize, height: usize) -> RegionMask {
    let whole = Region {
        x: 0,
        y: 0,
        width,
        height,
    };
    let resized = resize_region_with(&Canvas::of(image), (width, height), whole, Filter::Lanczos);
    let values = resized
        .pixels()
        .map(|pixel| {
            let [r, g, b] = pixel.0.map(u32::from);
            let luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
            if luma >= 128 { 1.0 } else { 0.0 }
        })
        .collect();
    RegionMask {
        width,
        height,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_levels_split_at_128_after_the_luma() {
        let levels = RgbImage::from_fn(4, 1, |x, _| {
            let v = [127, 128, 0, 255][x as usize];
            image::Rgb([v, v, v])
        });
        assert_eq!(fit_mask(&levels, 4, 1).values, [0.0, 1.0, 0.0, 1.0]);
        // Pure green is bright enough (luma 150), pure red is not (76).
        let colours = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb(if x == 0 { [0, 255, 0] } else { [255, 0, 0] })
        });
        assert_eq!(fit_mask(&colours, 2, 1).values, [1.0, 0.0]);
    }

    #[test]
    fn a_file_that_is_no_image_is_one_line_naming_it() {
        let message = read_mask(Path::new("/masks/left.png"), b"not an image", 8, 8)
            .expect_err("refused")
            .to_string();
        assert!(message.starts_with("/masks/left.png: "), "{message}");
        assert!(message.contains("not a usable mask"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
