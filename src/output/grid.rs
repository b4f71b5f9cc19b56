//! Comparison grids: results side by side, each under its label, as one image.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// Height of the label strip above each image, in pixels.
const LABEL_HEIGHT_PX: u32 = 28;
/// Gap between cells, in pixels.
const GAP_PX: u32 = 8;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const TEXT: [f32; 3] = [230.0, 230.0, 230.0];

/// Lays `cells` (label, image) out in one row, each with its label drawn above it
/// with `font` (TrueType/OpenType bytes). Images of different sizes are top-aligned.
pub fn labelled_row(cells: &[(String, &RgbImage)], font: &[u8]) -> Result<RgbImage, String> {
    let font = FontRef::try_from_slice(font).map_err(|e| format!("unusable font: {e}"))?;
    // Each cell is as wide as its image or its label, whichever is wider.
    let widths: Vec<u32> = cells
        .iter()
        .map(|(label, image)| image.width().max(text_width(&font, label)))
        .collect();
    let width = widths.iter().map(|w| w + GAP_PX).sum::<u32>() + GAP_PX;
    let height = cells
        .iter()
        .map(|(_, image)| image.height())
        .max()
        .unwrap_or(0)
        + LABEL_HEIGHT_PX
        + 2 * GAP_PX;
    let mut grid = RgbImage::from_pixel(width.max(1), height.max(1), BACKGROUND);
    let mut x = GAP_PX;
    for ((label, image), cell_width) in cells.iter().zip(widths) {
        draw_text(&mut grid, &font, label, x, GAP_PX, cell_width);
        let top = i64::from(GAP_PX + LABEL_HEIGHT_PX);
        image::imageops::replace(&mut grid, *image, i64::from(x), top);
        x += cell_width + GAP_PX;
    }
    Ok(grid)
}

fn label_scale() -> PxScale {
    PxScale::from(LABEL_HEIGHT_PX as f32 * 0.7)
}

/// Width of `text` in pixels at the label size.
fn text_width(font: &FontRef, text: &str) -> u32 {
    let scaled = font.as_scaled(label_scale());
    text.chars()
        .map(|c| scaled.h_advance(scaled.glyph_id(c)))
        .sum::<f32>()
        .ceil() as u32
}

/// Draws `text` with its top-left at (`x`, `y`), clipped to `max_width` pixels.
fn draw_text(target: &mut RgbImage, font: &FontRef, text: &str, x: u32, y: u32, max_width: u32) {
    let scale = label_scale();
    let scaled = font.as_scaled(scale);
    let mut caret = 0.0f32;
    for ch in text.chars() {
        let glyph_id = scaled.glyph_id(ch);
        let glyph =
            glyph_id.with_scale_and_position(scale, ab_glyph::point(caret, scaled.ascent()));
        caret += scaled.h_advance(glyph_id);
        let Some(outlined) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, coverage| {
            let px = bounds.min.x as i64 + i64::from(gx);
            let py = bounds.min.y as i64 + i64::from(gy);
            if px < 0 || py < 0 || px as u32 >= max_width {
                return;
            }
            let (tx, ty) = (x + px as u32, y + py as u32);
            if tx >= target.width() || ty >= target.height() {
                return;
            }
            let pixel = target.get_pixel_mut(tx, ty);
            for c in 0..3 {
                let blended = f32::from(pixel[c]) * (1.0 - coverage) + TEXT[c] * coverage;
                pixel[c] = blended.round() as u8;
            }
        });
    }
}

// The test borrows egui's built-in font.
#[cfg(all(test, feature = "gui"))]
mod tests {
    use super::*;

    #[test]
    fn lays_out_cells_with_labels() -> Result<(), String> {
        let fonts = egui::FontDefinitions::default();
        let data = fonts.font_data.get("Hack").ok_or("no default font")?;
        let font_bytes: &[u8] = (*data.font).as_ref();
        let font = FontRef::try_from_slice(font_bytes).map_err(|e| e.to_string())?;
        let a = RgbImage::from_pixel(20, 10, Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(30, 16, Rgb([0, 0, 255]));
        let long = "negative 1.5".to_string();
        let grid = labelled_row(&[("a".to_string(), &a), (long.clone(), &b)], font_bytes)?;
        // The long label widens its cell beyond the 30-pixel image.
        let long_width = text_width(&font, &long);
        assert!(long_width > 30);
        assert_eq!(grid.width(), GAP_PX + 20 + GAP_PX + long_width + GAP_PX);
        assert_eq!(grid.height(), 16 + LABEL_HEIGHT_PX + 2 * GAP_PX);
        let image_top = GAP_PX + LABEL_HEIGHT_PX;
        assert_eq!(*grid.get_pixel(GAP_PX, image_top), Rgb([255, 0, 0]));
        assert_eq!(
            *grid.get_pixel(2 * GAP_PX + 20, image_top),
            Rgb([0, 0, 255])
        );
        // Some label pixels were drawn.
        let label_strip_lit = (0..grid.width())
            .flat_map(|x| (GAP_PX..image_top).map(move |y| (x, y)))
            .any(|(x, y)| grid.get_pixel(x, y)[0] > 100);
        assert!(label_strip_lit);
        Ok(())
    }
}
