//! Turning `RgbImage`s into egui textures and fitted image widgets.

use egui::{TextureFilter, TextureHandle, TextureOptions};
use image::RgbImage;

/// Filtering for previews, which are shown at any size: linear when enlarged (a
/// latent colour map has one pixel per 8×8 of the picture), mipmapped when shrunk.
pub const SMOOTH: TextureOptions =
    TextureOptions::LINEAR.with_mipmap_mode(Some(TextureFilter::Linear));

/// Uploads an RGB image as a texture.
pub fn upload(ctx: &egui::Context, name: &str, image: &RgbImage) -> TextureHandle {
    let size = [image.width() as usize, image.height() as usize];
    let color = egui::ColorImage::from_rgb(size, image.as_raw());
    ctx.load_texture(name, color, TextureOptions::LINEAR)
}

/// A texture shrunk to fit a `max_side` square, keeping its aspect ratio.
pub fn fitted(texture: &TextureHandle, max_side: f32) -> egui::Image<'static> {
    let size = texture.size_vec2();
    let scale = max_side / size.x.max(size.y).max(1.0);
    egui::Image::new((texture.id(), size * scale))
}

/// A downscaled copy for thumbnails (at most `max_side` pixels a side).
pub fn thumbnail(image: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if w.max(h) <= max_side {
        return image.clone();
    }
    let scale = max_side as f32 / w.max(h) as f32;
    let (tw, th) = (
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    image::imageops::thumbnail(image, tw, th)
}
