//! Saving a result in the format its file name asks for: PNG (with the full settings),
//! JPEG or lossless WebP (with the A1111 `parameters` text in EXIF).

use std::path::Path;

use image::{ImageEncoder, RgbImage};

use super::{encode_png, exif, parameters_text, write_atomic};
use crate::pipeline::Request;
use crate::{MinusError, Result};

/// JPEG quality of saved results.
const JPEG_QUALITY: u8 = 95;

/// The formats results are saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// PNG with the `parameters` text and the whole request (settings can be restored).
    Png,
    /// JPEG with the `parameters` text as EXIF UserComment.
    Jpeg,
    /// Lossless WebP with the `parameters` text as EXIF UserComment.
    WebP,
}

impl SaveFormat {
    /// The format named by `path`'s extension; unknown or missing extensions are refused.
    pub fn from_path(path: &Path) -> Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("png") => Ok(Self::Png),
            Some("jpg" | "jpeg") => Ok(Self::Jpeg),
            Some("webp") => Ok(Self::WebP),
            _ => Err(MinusError::Refused {
                path: path.to_path_buf(),
                message: "unknown image format: name the file .png, .jpg, .jpeg or .webp"
                    .to_string(),
            }),
        }
    }
}

/// Encodes `image` in `format` with as much of the settings as the format carries.
pub fn encode(
    image: &RgbImage,
    request: &Request,
    model_name: &str,
    format: SaveFormat,
) -> Result<Vec<u8>> {
    let exif = || exif::user_comment(&parameters_text(request, model_name));
    let mut bytes = Vec::new();
    let (width, height) = image.dimensions();
    let color = image::ExtendedColorType::Rgb8;
    // Both encoders take EXIF; a text too long for it is left out.
    let encoded = match format {
        SaveFormat::Png => return encode_png(image, request, model_name),
        SaveFormat::Jpeg => {
            let mut encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
            let _ = exif().map(|exif| encoder.set_exif_metadata(exif));
            encoder.write_image(image.as_raw(), width, height, color)
        }
        SaveFormat::WebP => {
            let mut encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut bytes);
            let _ = exif().map(|exif| encoder.set_exif_metadata(exif));
            encoder.write_image(image.as_raw(), width, height, color)
        }
    };
    encoded.map_err(|e| MinusError::InvalidRequest(format!("{format:?} encoding failed: {e}")))?;
    Ok(bytes)
}

/// Saves one result at `path` in the format its extension names.
pub fn save_result(
    path: &Path,
    image: &RgbImage,
    request: &Request,
    model_name: &str,
) -> Result<()> {
    let format = SaveFormat::from_path(path)?;
    write_atomic(path, &encode(image, request, model_name, format)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_extension_gets_its_own_format() -> Result<()> {
        let image = RgbImage::from_pixel(16, 8, image::Rgb([200, 30, 40]));
        let request = Request::default();
        for (name, expected) in [
            ("a.png", image::ImageFormat::Png),
            ("a.JPG", image::ImageFormat::Jpeg),
            ("a.jpeg", image::ImageFormat::Jpeg),
            ("a.webp", image::ImageFormat::WebP),
        ] {
            let format = SaveFormat::from_path(Path::new(name))?;
            let bytes = encode(&image, &request, "m", format)?;
            assert_eq!(image::guess_format(&bytes).ok(), Some(expected), "{name}");
            let decoded = image::load_from_memory(&bytes)
                .map_err(|e| MinusError::InvalidRequest(e.to_string()))?;
            assert_eq!(decoded.width(), 16, "{name}");
            if format != SaveFormat::Png {
                let needle: Vec<u8> = "Steps: 25"
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect();
                assert!(
                    bytes.windows(needle.len()).any(|w| w == needle),
                    "{name}: no settings"
                );
            }
        }
        for name in ["a.gif", "a", "a.png.txt"] {
            let error = SaveFormat::from_path(Path::new(name)).expect_err("refused");
            assert!(
                error.to_string().contains("unknown image format"),
                "{error}"
            );
        }
        Ok(())
    }
}
