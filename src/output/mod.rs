//! Saved results: PNG files carrying their settings (an A1111-style `parameters`
//! text and the whole request as JSON), written atomically.

pub mod exif;
pub mod format;
pub mod grid;
pub mod masks;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
         IP-Adapter weight: {}, Negative IP-Adapter weight: {}, Image prompts: {}, Negative image prompts: {}, Version: {}",
        request.steps,
        request.cfg,
        request.seed,
        request.width,
        request.height,
        request.ip_weight,
        request.negative_ip_weight,
        request.images.iter().filter(|i| i.enabled).count(),
        request.negative_images.iter().filter(|i| i.enabled).count(),
        crate::version::VERSION_LINE,
    ));
    if request.sampler.uses_eta() {
        text.push_str(&format!(", Eta: {}", request.eta));
    }
    if !request.family.is_sd15() {
        text.push_str(&format!(
            ", Model family: {}",
            request.family.display_name()
        ));
    }
    let masks = |side: &[crate::pipeline::ImagePrompt]| {
        side.iter()
            .filter(|image| image.enabled && image.active_mask().is_some())
            .count()
    };
    if request.has_masks() {
        text.push_str(&format!(
            ", Image masks: {}, Negative image masks: {}",
            masks(&request.images),
            masks(&request.negative_images)
        ));
    }
    let method = request.method_text();
    if !method.is_empty() {
        text.push_str(&format!(", {method}"));
    }
    let loras = crate::weights::lora::choice::settings_text(&request.loras);
    if !loras.is_empty() {
        text.push_str(&format!(", {loras}"));
    }
    // Only a draft decode is named: results decoded by the VAE read as they always did.
    if !request.final_decode.is_vae() {
        text.push_str(&format!(
            ", Decode: {}",
            request.final_decode.display_name()
        ));
    }
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

/// Refuses to replace what exists at `path` and is not a regular file: renaming over a
/// device node, a FIFO, a folder or a symbolic link would destroy it.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(()),
        Ok(metadata) => Err(MinusError::Refused {
            path: path.to_path_buf(),
            message: format!(
                "is {}; Minus only writes over regular files (choose another output path)",
                crate::files::kind(&metadata)
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MinusError::io(path, e)),
    }
}

/// Creates a new temporary file beside `path`; `create_new` never follows a link
/// or reuses a file someone else put there.
fn create_temp_beside(dir: &Path, path: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((file, temp)),
            // Left over from a crashed run with the same process id: try the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename,
/// so a full disk or a crash never leaves a half-written image under the final name.
/// Anything at `path` that is not a regular file is left alone, with an error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    check_replaceable(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| MinusError::io(dir, e))?;
    let (mut file, temp) = create_temp_beside(dir, path).map_err(|e| MinusError::io(path, e))?;
    let result = (|| {
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

/// Largest settings text Minus inflates from a PNG; its own are a few KiB.
pub const MAX_SETTINGS_TEXT_BYTES: usize = 4 << 20;
/// Largest total of text and other metadata chunks read from a PNG (still compressed).
const MAX_PNG_METADATA_BYTES: usize = 4 * MAX_SETTINGS_TEXT_BYTES;

/// Reads the request embedded in a PNG written by Minus: `Ok(None)` when there is
/// none, `Err` with a note for the user when there is one Minus will not use
/// (too large, corrupt, or with settings that do not validate).
pub fn read_settings(png_bytes: &[u8]) -> std::result::Result<Option<Request>, String> {
    let decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(png_bytes),
        png::Limits {
            bytes: MAX_PNG_METADATA_BYTES,
        },
    );
    let reader = match decoder.read_info() {
        Ok(reader) => reader,
        Err(png::DecodingError::LimitsExceeded) => {
            return Err(format!(
                "settings ignored: the PNG's text chunks exceed {} MiB",
                MAX_PNG_METADATA_BYTES >> 20
            ));
        }
        // Not a PNG, or a broken one: decoding the image reports that.
        Err(_) => return Ok(None),
    };
    let info = reader.info();
    let json = if let Some(chunk) = info.utf8_text.iter().find(|c| c.keyword == REQUEST_KEY) {
        let mut chunk = chunk.clone();
        chunk
            .decompress_text_with_limit(MAX_SETTINGS_TEXT_BYTES)
            .and_then(|()| chunk.get_text())
            .map_err(|e| {
                format!(
                    "settings ignored: the `{REQUEST_KEY}` text is over {} MiB or corrupt ({e})",
                    MAX_SETTINGS_TEXT_BYTES >> 20
                )
            })?
    } else if let Some(chunk) = info
        .uncompressed_latin1_text
        .iter()
        .find(|c| c.keyword == REQUEST_KEY)
    {
        chunk.text.clone()
    } else {
        return Ok(None);
    };
    let request: Request = serde_json::from_str(&json)
        .map_err(|e| format!("settings ignored: they cannot be read ({e})"))?;
    request
        .validate()
        .map_err(|e| format!("settings ignored: {e}"))?;
    Ok(Some(request))
}

/// The request embedded in a PNG, if there is one Minus can use.
#[cfg(any(test, feature = "test-support"))]
pub fn read_request(png_bytes: &[u8]) -> Option<Request> {
    read_settings(png_bytes).ok().flatten()
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
    fn the_settings_line_gives_eta_only_for_tcd() {
        use crate::schedulers::SamplerKind;
        let text = |sampler| {
            let request = Request {
                sampler,
                eta: 0.45,
                ..Request::default()
            };
            parameters_text(&request, "m")
        };
        assert!(text(SamplerKind::Tcd).contains("Sampler: TCD, "));
        assert!(text(SamplerKind::Tcd).contains(", Eta: 0.45"));
        assert!(text(SamplerKind::Lcm).contains("Sampler: LCM, "));
        assert!(!text(SamplerKind::Lcm).contains("Eta"));
        assert!(!text(SamplerKind::Ddim).contains("Eta"));
    }

    #[test]
    fn a_taesd_decode_is_named_in_the_settings_and_read_back() -> Result<()> {
        use crate::pipeline::FinalDecode;
        let vae = Request::default();
        assert!(!parameters_text(&vae, "m").contains("Decode"));
        let json = serde_json::to_string(&vae).expect("json");
        assert!(!json.contains("final_decode"), "{json}");
        let taesd = Request {
            final_decode: FinalDecode::Taesd,
            ..Request::default()
        };
        let text = parameters_text(&taesd, "m");
        assert!(text.ends_with(", Decode: TAESD"), "{text}");
        let bytes = encode_png(&RgbImage::new(2, 2), &taesd, "m")?;
        let restored = read_request(&bytes).expect("settings");
        assert_eq!(restored.final_decode, FinalDecode::Taesd);
        assert_eq!(restored, taesd);
        Ok(())
    }

    #[test]
    fn the_settings_line_counts_the_masks_that_are_on() {
        use crate::pipeline::{ImagePrompt, MaskFile};
        let masked = |on: bool| ImagePrompt {
            mask: Some(MaskFile::new("/m.png")),
            mask_enabled: on,
            ..ImagePrompt::new("/a.png")
        };
        let mut request = Request {
            images: vec![masked(true), masked(false), ImagePrompt::new("/b.png")],
            negative_images: vec![masked(true)],
            ..Request::default()
        };
        let text = parameters_text(&request, "m");
        assert!(
            text.contains(", Image masks: 1, Negative image masks: 1"),
            "{text}"
        );
        request.images[0].mask_enabled = false;
        request.negative_images.clear();
        assert!(!parameters_text(&request, "m").contains("masks"));
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

    /// A PNG whose `minus-request` iTXt chunk is compressed and inflates to `text`.
    fn png_with_compressed_request(text: String) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 1, 1);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().expect("header");
        let mut chunk = png::text_metadata::ITXtChunk::new(REQUEST_KEY, text);
        chunk.compressed = true;
        writer.write_text_chunk(&chunk).expect("text chunk");
        writer.write_image_data(&[0, 0, 0]).expect("pixels");
        writer.finish().expect("finish");
        bytes
    }

    #[test]
    fn a_settings_text_that_inflates_too_far_is_ignored_with_a_note() {
        let bomb = png_with_compressed_request(" ".repeat(64 << 20));
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let note = read_settings(&bomb).expect_err("over the limit");
        assert!(note.contains("over 4 MiB"), "{note}");
        assert_eq!(read_request(&bomb), None);
        let small = serde_json::to_string(&Request::default()).expect("json");
        assert_eq!(
            read_settings(&png_with_compressed_request(small)),
            Ok(Some(Request::default()))
        );
    }

    #[test]
    fn settings_that_do_not_validate_are_ignored_with_a_note() -> Result<()> {
        let request = Request {
            ip_weight: 1e300,
            ..Request::default()
        };
        let bytes = encode_png(&RgbImage::new(2, 2), &request, "test")?;
        let note = read_settings(&bytes).expect_err("refused");
        assert!(
            note.contains("image prompt weight must be a number"),
            "{note}"
        );
        let json = serde_json::to_string(&Request::default()).expect("json");
        let broken = png_with_compressed_request(json.replace("1.0", "null"));
        let note = read_settings(&broken).expect_err("refused");
        assert!(note.contains("cannot be read"), "{note}");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn never_replaces_what_is_not_a_regular_file() {
        let dir = crate::scratch::ScratchDir::new("output-replace");
        let fifo = dir.join("fifo.png");
        let link = dir.join("link.png");
        let target = dir.join("target.png");
        let folder = dir.join("folder.png");
        for path in [&fifo, &link, &target] {
            let _ = std::fs::remove_file(path);
        }
        std::fs::create_dir_all(&folder).expect("folder");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .expect("mkfifo")
                .success()
        );
        std::fs::write(&target, b"keep").expect("target");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for (path, what) in [
            (&fifo, "a FIFO"),
            (&link, "a symbolic link"),
            (&folder, "a folder"),
        ] {
            let message = write_atomic(path, b"png").expect_err("refused").to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(what), "{message}");
        }
        use std::os::unix::fs::FileTypeExt;
        let fifo_type = std::fs::symlink_metadata(&fifo).expect("fifo").file_type();
        assert!(fifo_type.is_fifo());
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(std::fs::read(&target).expect("target"), b"keep");
        // A regular file is replaced, and no temporary file is left beside it.
        write_atomic(&target, b"new").expect("regular file replaced");
        assert_eq!(std::fs::read(&target).expect("target"), b"new");
        let leftovers = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
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
