//! The pixels of a mask being drawn: one byte a pixel at the output's size (255 = the
//! image acts there), with the editor's brush, eraser, rectangle, invert and clear.

use image::{GrayImage, ImageEncoder};

use crate::models::unet::RegionMask;

/// Where the image acts, in the mask's pixels.
pub const ON: u8 = 255;
/// Where it does not.
pub const OFF: u8 = 0;

/// A mask at the output's size, drawn in pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskCanvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl MaskCanvas {
    /// An empty mask (the image acts nowhere until painted).
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![OFF; width * height],
        }
    }

    /// A mask read from a file, already fitted and thresholded to the output.
    pub fn from_region(region: &RegionMask) -> Self {
        let pixels = region
            .values
            .iter()
            .map(|&v| if v >= 0.5 { ON } else { OFF })
            .collect();
        Self {
            width: region.width,
            height: region.height,
            pixels,
        }
    }

    /// Width and height in pixels.
    pub fn size(&self) -> [usize; 2] {
        [self.width, self.height]
    }

    /// The value at pixel (`x`, `y`).
    #[cfg(test)]
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// How many pixels are on.
    pub fn on_count(&self) -> usize {
        self.pixels.iter().filter(|&&v| v == ON).count()
    }

    /// Sets every pixel within `radius` of the segment `from`–`to` (a brush or eraser
    /// stroke between two pointer positions, so a fast drag leaves no gaps).
    pub fn stroke(&mut self, from: [f32; 2], to: [f32; 2], radius: f32, value: u8) {
        let radius = radius.max(0.5);
        let (lo, hi) = (
            [from[0].min(to[0]) - radius, from[1].min(to[1]) - radius],
            [from[0].max(to[0]) + radius, from[1].max(to[1]) + radius],
        );
        let Some((xs, ys)) = self.clip(lo, hi) else {
            return;
        };
        let segment = [to[0] - from[0], to[1] - from[1]];
        let length_squared = segment[0] * segment[0] + segment[1] * segment[1];
        for y in ys {
            for x in xs.clone() {
                let centre = [x as f32 + 0.5, y as f32 + 0.5];
                let along = if length_squared > 0.0 {
                    (((centre[0] - from[0]) * segment[0] + (centre[1] - from[1]) * segment[1])
                        / length_squared)
                        .clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let nearest = [from[0] + along * segment[0], from[1] + along * segment[1]];
                let (dx, dy) = (centre[0] - nearest[0], centre[1] - nearest[1]);
                if dx * dx + dy * dy <= radius * radius {
                    self.pixels[y * self.width + x] = value;
                }
            }
        }
    }

    /// Sets every pixel whose centre lies in the rectangle with corners `a` and `b`.
    pub fn fill_rect(&mut self, a: [f32; 2], b: [f32; 2], value: u8) {
        // Pixel i's centre is i + 0.5: the first inside is ceil(lo - 0.5), the last
        // floor(hi - 0.5).
        let inside = |lo: f32, hi: f32, size: usize| {
            let first = (lo - 0.5).ceil().max(0.0);
            let last = (hi - 0.5).floor();
            (last >= first && first < size as f32)
                .then(|| first as usize..(last as usize + 1).min(size))
        };
        let xs = inside(a[0].min(b[0]), a[0].max(b[0]), self.width);
        let ys = inside(a[1].min(b[1]), a[1].max(b[1]), self.height);
        let (Some(xs), Some(ys)) = (xs, ys) else {
            return;
        };
        for y in ys {
            self.pixels[y * self.width..][xs.clone()].fill(value);
        }
    }

    /// The pixel ranges (x, y) from `lo` to `hi` rounded outwards, within the mask.
    fn clip(
        &self,
        lo: [f32; 2],
        hi: [f32; 2],
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let range = |lo: f32, hi: f32, size: usize| {
            let start = lo.floor().max(0.0) as usize;
            let end = (hi.ceil().max(0.0) as usize).saturating_add(1).min(size);
            (start < end).then_some(start..end)
        };
        Some((
            range(lo[0], hi[0], self.width)?,
            range(lo[1], hi[1], self.height)?,
        ))
    }

    /// On becomes off and off on.
    pub fn invert(&mut self) {
        for pixel in &mut self.pixels {
            *pixel = ON - *pixel;
        }
    }

    /// Everything off.
    pub fn clear(&mut self) {
        self.pixels.fill(OFF);
    }

    /// The mask as an overlay: `colour` where it is on, transparent elsewhere.
    pub fn overlay(&self, colour: egui::Color32) -> egui::ColorImage {
        let transparent = egui::Color32::TRANSPARENT;
        let pixels = self
            .pixels
            .iter()
            .map(|&v| if v == ON { colour } else { transparent })
            .collect();
        egui::ColorImage::new(self.size(), pixels)
    }

    /// The mask as an 8-bit grayscale PNG, the form the pipeline reads back.
    pub fn to_png(&self) -> Result<Vec<u8>, String> {
        let (width, height) = (self.width as u32, self.height as u32);
        let image = GrayImage::from_raw(width, height, self.pixels.clone())
            .ok_or_else(|| "the mask's pixels do not fill its size".to_string())?;
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(image.as_raw(), width, height, image::ExtendedColorType::L8)
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(canvas: &MaskCanvas) -> Vec<String> {
        let [w, h] = canvas.size();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| if canvas.at(x, y) == ON { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_stroke_paints_a_capsule_and_the_eraser_takes_it_back() {
        let mut canvas = MaskCanvas::new(8, 5);
        canvas.stroke([1.5, 2.5], [6.5, 2.5], 1.2, ON);
        assert_eq!(
            rows(&canvas),
            ["........", ".######.", "########", ".######.", "........"]
        );
        canvas.stroke([1.5, 2.5], [1.5, 2.5], 1.2, OFF);
        assert_eq!(
            rows(&canvas),
            ["........", "..#####.", "...#####", "..#####.", "........"]
        );
    }

    #[test]
    fn rectangles_invert_and_clear() {
        let mut canvas = MaskCanvas::new(6, 4);
        canvas.fill_rect([4.0, 3.0], [1.0, 1.0], ON);
        assert_eq!(rows(&canvas), ["......", ".###..", ".###..", "......"]);
        canvas.invert();
        assert_eq!(rows(&canvas), ["######", "#...##", "#...##", "######"]);
        canvas.clear();
        assert_eq!(canvas.on_count(), 0);
    }

    #[test]
    fn strokes_and_rectangles_outside_the_mask_change_nothing() {
        let mut canvas = MaskCanvas::new(4, 4);
        canvas.stroke([-20.0, -20.0], [-10.0, -30.0], 3.0, ON);
        canvas.fill_rect([10.0, 10.0], [20.0, 20.0], ON);
        canvas.stroke([f32::NAN, 1.0], [2.0, 2.0], 1.0, ON);
        assert_eq!(canvas.on_count(), 0);
    }

    #[test]
    fn the_png_reads_back_as_the_same_region() {
        let mut canvas = MaskCanvas::new(16, 8);
        canvas.fill_rect([0.0, 0.0], [8.0, 8.0], ON);
        let png = canvas.to_png().unwrap();
        let path = std::path::Path::new("drawn.png");
        let region = crate::pipeline::masks::read_mask(path, &png, 16, 8).unwrap();
        assert_eq!(MaskCanvas::from_region(&region), canvas);
    }
}
