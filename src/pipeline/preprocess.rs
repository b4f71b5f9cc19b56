//! Prompt-image preprocessing, bit-compatible with `CLIPImageProcessor` on
//! Pillow (alpha onto white, 8-bit fixed-point bicubic, center crop, normalise).

use std::path::Path;

use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::{MinusError, Result};

/// CLIP's per-channel normalisation mean.
pub const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel normalisation standard deviation.
pub const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How a non-square prompt image is made square for the image encoder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FitMode {
    /// Resize the short side, then cut the middle square (what the reference does).
    #[default]
    Crop,
    /// Pad the short side with white to a square first: nothing is cut off.
    Pad,
    /// Stretch to a square: nothing is cut off, proportions change.
    Squash,
}

impl FitMode {
    /// All modes, in menu order.
    pub const ALL: [Self; 3] = [Self::Crop, Self::Pad, Self::Squash];

    /// A short label for menus and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Pad => "pad",
            Self::Squash => "squash",
        }
    }
}

/// Reads an image file into 8-bit RGB (alpha composited onto white, gray replicated).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| MinusError::io(path, e))?;
    decode_rgb(&bytes).map_err(|message| MinusError::BadImage {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes encoded image bytes (PNG, JPEG, WebP, BMP) into 8-bit RGB.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let image = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    Ok(to_rgb(&image))
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
pub fn clip_pixel_values(image: &RgbImage, size: usize, fit: FitMode) -> Vec<f32> {
    let square = match fit {
        FitMode::Crop => {
            let resized = resize_short_side(image, size);
            center_crop(&resized, size)
        }
        FitMode::Pad => {
            let padded = pad_to_square(image);
            resize_bicubic(&padded, size as u32, size as u32)
        }
        FitMode::Squash => resize_bicubic(image, size as u32, size as u32),
    };
    normalize(&square)
}

fn resize_short_side(image: &RgbImage, short: usize) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (new_w, new_h) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    resize_bicubic(image, new_w as u32, new_h as u32)
}

fn center_crop(image: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let top = h.saturating_sub(size) / 2;
    let left = w.saturating_sub(size) / 2;
    image::imageops::crop_imm(image, left as u32, top as u32, size as u32, size as u32).to_image()
}

fn pad_to_square(image: &RgbImage) -> RgbImage {
    let side = image.width().max(image.height());
    let mut out = RgbImage::from_pixel(side, side, image::Rgb([255, 255, 255]));
    let left = (side - image.width()) / 2;
    let top = (side - image.height()) / 2;
    image::imageops::replace(&mut out, image, i64::from(left), i64::from(top));
    out
}

fn normalize(image: &RgbImage) -> Vec<f32> {
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

/// Fixed-point precision of Pillow's 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let raw: Vec<f64> = (0..count)
            .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|w| {
                let normalized = if total != 0.0 { w / total } else { *w };
                let scaled = normalized * f64::from(1u32 << PRECISION_BITS);
                (if scaled < 0.0 {
                    scaled - 0.5
                } else {
                    scaled + 0.5
                }) as i32
            })
            .collect();
        bounds.push((xmin, count));
        weights.push(fixed);
    }
    Coefficients { bounds, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One separable pass over RGB rows (`horizontal`) or columns.
fn resample_pass(image: &RgbImage, out_w: u32, out_h: u32, horizontal: bool) -> RgbImage {
    let (in_len, out_len) = if horizontal {
        (image.width() as usize, out_w as usize)
    } else {
        (image.height() as usize, out_h as usize)
    };
    let coeffs = coefficients(in_len, out_len);
    let mut out = RgbImage::new(out_w, out_h);
    for y in 0..out_h {
        for x in 0..out_w {
            let (index, fixed_by) = if horizontal { (x, y) } else { (y, x) };
            let (start, count) = coeffs.bounds[index as usize];
            let weights = &coeffs.weights[index as usize];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, weight) in weights.iter().enumerate().take(count) {
                let src = (start + k) as u32;
                let pixel = if horizontal {
                    image.get_pixel(src, fixed_by)
                } else {
                    image.get_pixel(fixed_by, src)
                };
                for c in 0..3 {
                    acc[c] += i64::from(pixel[c]) * i64::from(*weight);
                }
            }
            out.put_pixel(
                x,
                y,
                image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
            );
        }
    }
    out
}

/// Pillow's `Image.resize(..., BICUBIC)` on an 8-bit RGB image: horizontal pass,
/// then vertical, each rounded to 8 bits.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut current = image.clone();
    if width != current.width() {
        current = resample_pass(&current, width, current.height(), true);
    }
    if height != current.height() {
        current = resample_pass(&current, width, height, false);
    }
    current
}
