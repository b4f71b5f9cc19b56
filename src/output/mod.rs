//! Saved results: PNG files carrying their settings (an A1111-style `parameters`
//! text and the whole request as JSON), written atomically.

pub mod grid;

use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::pipeline::Request;
use crate::{MinusError, Result};

/// PNG text keyword of the A1111-style settings line.
pub const PARAMETERS_KEY: &str = "parameters";
/// PNG text keyword of the machine-readable request.
pub const REQUEST_KEY: &str = "minus-request";

/// The A1111 `parameters` text for a request (prompt, negative prompt, settings line).
pub fn parameters_text(request: &Request, model_name: &str) -> String {
    let mut text = request.prompt.clone();
    if !request.negative_prompt.is_empty() {
        text.push_str(&format!("\nNegative prompt: {}", request.negative_prompt));
    }
    let sampler = if request.karras && request.sampler.supports_karras() {
        format!("{} Karras", request.sampler.display_name())
    } else {
        request.sampler.display_name().to_string()
    };
    text.push_str(&format!(
        "\nSteps: {}, Sampler: {sampler}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {model_name}, \
         IP-Adapter weight: {}, Negative IP-Adapter weight: {}, Image prompts: {}, Negative image prompts: {}",
        request.steps,
        request.cfg,
        request.seed,
        request.width,
        request.height,
        request.ip_weight,
        request.negative_ip_weight,
        request.images.len(),
        request.negative_images.len(),
    ));
    text
}

/// Encodes `image` as PNG with the request embedded.
pub fn encode_png(image: &RgbImage, request: &Request, model_name: &str) -> Result<Vec<u8>> {
    let json = serde_json::to_string(request).map_err(|e| MinusError::Encoding {
        what: "settings".to_string(),
        message: e.to_string(),
    })?;
    let mut bytes = Vec::new();
    let encode_error = |e: png::EncodingError| MinusError::Encoding {
        what: "PNG".to_string(),
        message: e.to_string(),
    };
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_itxt_chunk(
                PARAMETERS_KEY.to_string(),
                parameters_text(request, model_name),
            )
            .map_err(encode_error)?;
        encoder
            .add_itxt_chunk(REQUEST_KEY.to_string(), json)
            .map_err(encode_error)?;
        let mut writer = encoder.write_header().map_err(encode_error)?;
        writer
            .write_image_data(image.as_raw())
            .map_err(encode_error)?;
        writer.finish().map_err(encode_error)?;
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename,
/// so a full disk or a crash never leaves a half-written image under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| MinusError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        // Best effort: the temporary file is useless now; the error that matters is `e`.
        let _ = std::fs::remove_file(&temp);
        return Err(MinusError::io(path, e));
    }
    Ok(())
}

/// Saves one result as PNG with its settings.
pub fn save_png(path: &Path, image: &RgbImage, request: &Request, model_name: &str) -> Result<()> {
    write_atomic(path, &encode_png(image, request, model_name)?)
}

/// Saves an image as PNG without settings (grids, copies).
pub fn save_plain_png(path: &Path, image: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| MinusError::Encoding {
            what: "PNG".to_string(),
            message: e.to_string(),
        })?;
    write_atomic(path, &bytes)
}

/// Reads the request embedded in a PNG written by Minus, if any.
pub fn read_request(png_bytes: &[u8]) -> Option<Request> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let reader = decoder.read_info().ok()?;
    let info = reader.info();
    let from_itxt = info
        .utf8_text
        .iter()
        .find(|chunk| chunk.keyword == REQUEST_KEY)
        .and_then(|chunk| chunk.get_text().ok());
    let from_text = || {
        info.uncompressed_latin1_text
            .iter()
            .find(|chunk| chunk.keyword == REQUEST_KEY)
            .map(|chunk| chunk.text.clone())
    };
    let json = from_itxt.or_else(from_text)?;
    serde_json::from_str(&json).ok()
}

/// Seconds since the Unix epoch, for unique, sortable file names of saved results.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The file names of a run's images: `stem.png` for one image, `stem-<i>.png` for several.
pub fn numbered_paths(output: &Path, count: usize) -> Vec<PathBuf> {
    if count <= 1 {
        return vec![output.to_path_buf()];
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "minus".into());
    let ext = output
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    (0..count)
        .map(|i| output.with_file_name(format!("{stem}-{i}.{ext}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_request_round_trips() -> Result<()> {
        let request = Request {
            prompt: "a house in winter ❄".to_string(),
            seed: 99,
            ..Request::default()
        };
        let image = RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        let bytes = encode_png(&image, &request, "test")?;
        assert_eq!(read_request(&bytes), Some(request));
        let decoded = image::load_from_memory(&bytes)
            .map_err(|e| MinusError::InvalidRequest(e.to_string()))?;
        assert_eq!(decoded.to_rgb8(), image);
        Ok(())
    }

    #[test]
    fn plain_png_has_no_request() {
        let mut bytes = Vec::new();
        RgbImage::new(2, 2)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .expect("a plain PNG encodes");
        assert!(!bytes.is_empty());
        assert_eq!(read_request(&bytes), None);
    }

    #[test]
    fn numbers_batch_files() {
        let paths = numbered_paths(Path::new("out/cat.png"), 2);
        assert_eq!(
            paths,
            [
                PathBuf::from("out/cat-0.png"),
                PathBuf::from("out/cat-1.png")
            ]
        );
        assert_eq!(
            numbered_paths(Path::new("cat.png"), 1),
            [PathBuf::from("cat.png")]
        );
    }
}
