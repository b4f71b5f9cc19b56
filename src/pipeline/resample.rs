//! Pillow's 8-bit resize (bicubic, or Lanczos for masks), computed only where it is
//! looked at.
//!
//! The prompt image is fitted to 224×224, but the full resize it stands for can be huge:
//! a 1×60000 picture center-cropped becomes 224×13,440,000 before the crop, and padded it
//! becomes a 60000×60000 canvas. Every output pixel of Pillow's resize depends only on its
//! own window of input pixels, so the wanted region is computed directly, and the white
//! padding enters as a sum of weights instead of as pixels. Integer sums do not depend on
//! their order, so the result is bit for bit what the full resize gives.

use std::ops::Range;

use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Rounding term every accumulator starts from.
const ROUNDING: i64 = 1 << (PRECISION_BITS - 1);
/// The padding colour.
const WHITE: u8 = 255;

/// An RGB image placed at (`left`, `top`) on a white canvas of `width × height`;
/// the canvas itself is never allocated.
#[derive(Debug, Clone, Copy)]
pub struct Canvas<'a> {
    pub image: &'a RgbImage,
    pub width: usize,
    pub height: usize,
    pub left: usize,
    pub top: usize,
}

impl<'a> Canvas<'a> {
    /// The image alone, without padding.
    pub fn of(image: &'a RgbImage) -> Self {
        Self {
            image,
            width: image.width() as usize,
            height: image.height() as usize,
            left: 0,
            top: 0,
        }
    }

    fn columns(&self) -> Range<usize> {
        self.left..self.left + self.image.width() as usize
    }

    fn rows(&self) -> Range<usize> {
        self.top..self.top + self.image.height() as usize
    }
}

/// A rectangle of the resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

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

/// Pillow's `lanczos_filter`: a sinc windowed by a three times wider sinc.
fn lanczos(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// The Pillow resampling filters Minus uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BICUBIC`, what CLIP's image processor uses.
    Bicubic,
    /// `Image.LANCZOS`, what diffusers' mask processor uses.
    Lanczos,
}

impl Filter {
    /// How far the kernel reaches, in input pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Bicubic => bicubic(x),
            Self::Lanczos => lanczos(x),
        }
    }
}

/// The input pixels output pixel `index` reads (its filter window), and their
/// fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i64>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` for one output pixel of an `in_size → out_size` pass.
    fn new(in_size: usize, out_size: usize, index: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let center = (index as f64 + 0.5) * scale;
        let start = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (start..end.max(start))
            .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = raw.iter().sum();
        let weights = raw
            .iter()
            .map(|w| {
                let normalized = if total != 0.0 { w / total } else { *w };
                let scaled = normalized * f64::from(1u32 << PRECISION_BITS);
                (if scaled < 0.0 {
                    scaled - 0.5
                } else {
                    scaled + 0.5
                }) as i32 as i64
            })
            .collect();
        Self { start, weights }
    }

    fn end(&self) -> usize {
        self.start + self.weights.len()
    }

    /// The taps that fall on `span` (as indices into `weights`), and the summed
    /// weight of the others, which fall on the white padding.
    fn split(&self, span: &Range<usize>) -> (Range<usize>, i64) {
        let first = span.start.clamp(self.start, self.end()) - self.start;
        let last = span.end.clamp(self.start, self.end()) - self.start;
        let inside = first..last.max(first);
        let white = self.weights[..inside.start].iter().sum::<i64>()
            + self.weights[inside.end..].iter().sum::<i64>();
        (inside, white)
    }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// How the horizontal pass makes each wanted column from a canvas row.
enum Columns {
    /// The width does not change: Pillow skips the pass, columns are copied.
    Copy(Range<usize>),
    /// Resampled: per wanted column, its window, the taps on the image and the white weight.
    Resample(Vec<(Taps, Range<usize>, i64)>),
}

impl Columns {
    fn new(canvas: &Canvas, out_width: usize, wanted: Range<usize>, filter: Filter) -> Self {
        if out_width == canvas.width {
            return Self::Copy(wanted);
        }
        let span = canvas.columns();
        Self::Resample(
            wanted
                .map(|x| {
                    let window = Taps::new(canvas.width, out_width, x, filter);
                    let (inside, white) = window.split(&span);
                    (window, inside, white)
                })
                .collect(),
        )
    }

    /// The wanted columns of canvas row `row` after the horizontal pass, RGB interleaved.
    fn row(&self, canvas: &Canvas, row: usize, out: &mut Vec<u8>) {
        out.clear();
        let on_image = canvas.rows().contains(&row);
        let pixel = |column: usize| {
            if on_image && canvas.columns().contains(&column) {
                let x = (column - canvas.left) as u32;
                canvas.image.get_pixel(x, (row - canvas.top) as u32).0
            } else {
                [WHITE; 3]
            }
        };
        match self {
            Self::Copy(columns) => columns.clone().for_each(|x| out.extend(pixel(x))),
            Self::Resample(windows) => {
                for (window, inside, white) in windows {
                    let mut acc = [ROUNDING + i64::from(WHITE) * white; 3];
                    if on_image {
                        for k in inside.clone() {
                            let rgb = pixel(window.start + k);
                            for c in 0..3 {
                                acc[c] += i64::from(rgb[c]) * window.weights[k];
                            }
                        }
                    } else {
                        // A white row: the image taps are white too.
                        let weight: i64 = window.weights[inside.clone()].iter().sum();
                        acc.iter_mut().for_each(|a| *a += i64::from(WHITE) * weight);
                    }
                    out.extend(acc.map(clip8));
                }
            }
        }
    }
}

/// The `region` of `canvas` resized to `out_width × out_height` with Pillow's 8-bit
/// bicubic (horizontal pass, then vertical, each rounded to 8 bits). Memory and time
/// grow with the region and the image, never with the canvas or the full output.
pub fn resize_region(
    canvas: &Canvas,
    out_width: usize,
    out_height: usize,
    region: Region,
) -> RgbImage {
    resize_region_with(canvas, (out_width, out_height), region, Filter::Bicubic)
}

/// [`resize_region`] with Pillow's `filter`.
pub fn resize_region_with(
    canvas: &Canvas,
    (out_width, out_height): (usize, usize),
    region: Region,
    filter: Filter,
) -> RgbImage {
    let columns = Columns::new(canvas, out_width, region.x..region.x + region.width, filter);
    let mut out = RgbImage::new(region.width as u32, region.height as u32);
    let mut row = Vec::with_capacity(3 * region.width);
    if out_height == canvas.height {
        for (y, dst) in out.chunks_exact_mut(3 * region.width.max(1)).enumerate() {
            columns.row(canvas, region.y + y, &mut row);
            dst.copy_from_slice(&row);
        }
        return out;
    }
    let windows: Vec<Taps> = (region.y..region.y + region.height)
        .map(|y| Taps::new(canvas.height, out_height, y, filter))
        .collect();
    // Rows off the image are all the same white row: they enter each sum once, weighted.
    columns.row(canvas, usize::MAX, &mut row);
    let white_row = row.clone();
    let image_rows = canvas.rows();
    let mut acc: Vec<i64> = windows
        .iter()
        .flat_map(|window| {
            let (_, white) = window.split(&image_rows);
            white_row
                .iter()
                .map(move |&v| ROUNDING + i64::from(v) * white)
        })
        .collect();
    // Each image row is made once and added to every output row whose window holds it;
    // windows only move forward, so the first of them is tracked as rows go by.
    let first_needed = windows.first().map_or(0, |w| w.start);
    let last_needed = windows.last().map_or(0, Taps::end);
    let mut first = 0;
    let stride = 3 * region.width;
    for r in image_rows.start.max(first_needed)..image_rows.end.min(last_needed) {
        while first < windows.len() && windows[first].end() <= r {
            first += 1;
        }
        columns.row(canvas, r, &mut row);
        for (j, window) in windows.iter().enumerate().skip(first) {
            if window.start > r {
                break;
            }
            let weight = window.weights[r - window.start];
            for (a, &v) in acc[j * stride..(j + 1) * stride].iter_mut().zip(&row) {
                *a += i64::from(v) * weight;
            }
        }
    }
    for (dst, a) in out.iter_mut().zip(&acc) {
        *dst = clip8(*a);
    }
    out
}

/// Pillow's `Image.resize(..., BICUBIC)` of a whole 8-bit RGB image.
#[cfg(any(test, feature = "test-support"))]
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let region = Region {
        x: 0,
        y: 0,
        width: width as usize,
        height: height as usize,
    };
    resize_region(&Canvas::of(image), width as usize, height as usize, region)
}

#[cfg(test)]
mod tests {
    //! The resampler checked against a straightforward reading of Pillow's code (the
    //! previous implementation): full canvas, full resize, then crop.

    use super::*;

    fn old_coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = 2.0 * filter_scale;
        (0..out_size)
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                let raw: Vec<f64> = (0..xmax.saturating_sub(xmin))
                    .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) / filter_scale))
                    .collect();
                let total: f64 = raw.iter().sum();
                let fixed = raw
                    .iter()
                    .map(|w| {
                        let scaled = (if total != 0.0 { w / total } else { *w })
                            * f64::from(1u32 << PRECISION_BITS);
                        (if scaled < 0.0 {
                            scaled - 0.5
                        } else {
                            scaled + 0.5
                        }) as i32
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect()
    }

    fn old_pass(image: &RgbImage, out_w: u32, out_h: u32, horizontal: bool) -> RgbImage {
        let (in_len, out_len) = if horizontal {
            (image.width() as usize, out_w as usize)
        } else {
            (image.height() as usize, out_h as usize)
        };
        let coeffs = old_coefficients(in_len, out_len);
        RgbImage::from_fn(out_w, out_h, |x, y| {
            let (index, fixed) = if horizontal { (x, y) } else { (y, x) };
            let (start, weights) = &coeffs[index as usize];
            let mut acc = [ROUNDING; 3];
            for (k, weight) in weights.iter().enumerate() {
                let src = (start + k) as u32;
                let pixel = if horizontal {
                    image.get_pixel(src, fixed)
                } else {
                    image.get_pixel(fixed, src)
                };
                for c in 0..3 {
                    acc[c] += i64::from(pixel[c]) * i64::from(*weight);
                }
            }
            image::Rgb(acc.map(clip8))
        })
    }

    fn old_resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
        let mut current = image.clone();
        if width != current.width() {
            current = old_pass(&current, width, current.height(), true);
        }
        if height != current.height() {
            current = old_pass(&current, width, height, false);
        }
        current
    }

    /// Deterministic noise with some flat areas, so both rounding directions occur.
    fn test_image(width: u32, height: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        RgbImage::from_fn(width, height, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if (x / 3 + y / 5) % 4 == 0 {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
            }
        })
    }

    const SHAPES: [(u32, u32); 10] = [
        (1, 1),
        (7, 300),
        (300, 7),
        (224, 224),
        (225, 223),
        (640, 427),
        (427, 640),
        (100, 100),
        (1, 500),
        (513, 2),
    ];

    #[test]
    fn whole_resizes_match_the_full_computation() {
        for (i, &(w, h)) in SHAPES.iter().enumerate() {
            let image = test_image(w, h, i as u32);
            for (out_w, out_h) in [(224, 224), (224, 301), (97, 224), (w, 50), (3, h)] {
                assert_eq!(
                    resize_bicubic(&image, out_w, out_h),
                    old_resize(&image, out_w, out_h),
                    "{w}x{h} -> {out_w}x{out_h}"
                );
            }
        }
    }

    #[test]
    fn regions_and_padding_match_the_full_computation() {
        for (i, &(w, h)) in SHAPES.iter().enumerate() {
            let image = test_image(w, h, 100 + i as u32);
            let side = w.max(h);
            let mut padded = RgbImage::from_pixel(side, side, image::Rgb([WHITE; 3]));
            let (left, top) = ((side - w) / 2, (side - h) / 2);
            image::imageops::replace(&mut padded, &image, i64::from(left), i64::from(top));
            let canvas = Canvas {
                image: &image,
                width: side as usize,
                height: side as usize,
                left: left as usize,
                top: top as usize,
            };
            for (out_w, out_h, region) in [
                (224, 224, (0, 0, 224, 224)),
                (300, 250, (38, 13, 224, 224)),
                (side, 224, (0, 0, side, 224)),
                (224, side, (0, 0, 224, side)),
            ] {
                let (x, y, rw, rh) = region;
                let expected =
                    image::imageops::crop_imm(&old_resize(&padded, out_w, out_h), x, y, rw, rh)
                        .to_image();
                let region = Region {
                    x: x as usize,
                    y: y as usize,
                    width: rw as usize,
                    height: rh as usize,
                };
                assert_eq!(
                    resize_region(&canvas, out_w as usize, out_h as usize, region),
                    expected,
                    "{w}x{h} padded to {side}, -> {out_w}x{out_h} at {region:?}"
                );
            }
        }
    }
}
