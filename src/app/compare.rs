//! Two results compared over the same area, split by a draggable line, with the
//! settings in which they differ.

use egui::{RichText, TextureHandle};

use super::texture;
use crate::pipeline::Request;

/// One side of a comparison: the picture and the settings it was made with, if known.
pub type Side<'a> = (&'a TextureHandle, Option<&'a Request>);

/// Draws `left` and `right` over one area `side` wide at most; `split` (0..1) is
/// where the line between them is, moved by the slider or by dragging.
pub fn compare_ui(ui: &mut egui::Ui, [left, right]: [Side<'_>; 2], split: &mut f32, side: f32) {
    ui.add(egui::Slider::new(split, 0.0..=1.0).text("split"));
    let size = texture::fitted(left.0, side)
        .size()
        .unwrap_or(egui::vec2(side, side));
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::drag());
    if let Some(pos) = response.interact_pointer_pos() {
        *split = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
    }
    let split_x = rect.left() + rect.width() * *split;
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    let painter = ui.painter_at(rect);
    painter.image(left.0.id(), rect, uv, egui::Color32::WHITE);
    let right_rect = egui::Rect::from_min_max(egui::pos2(split_x, rect.top()), rect.max);
    let right_uv = egui::Rect::from_min_max(egui::pos2(*split, 0.0), egui::pos2(1.0, 1.0));
    painter.image(right.0.id(), right_rect, right_uv, egui::Color32::WHITE);
    painter.vline(
        split_x,
        rect.y_range(),
        egui::Stroke::new(2.0, egui::Color32::WHITE),
    );
    let differences = match (left.1, right.1) {
        (Some(l), Some(r)) => settings_differences(l, r),
        _ => vec!["(settings unknown)".to_string()],
    };
    let listed = if differences.is_empty() {
        "none".to_string()
    } else {
        differences.join(", ")
    };
    ui.label(RichText::new(format!("Differences: {listed}")).small());
}

/// Names and values of the settings in which two requests differ.
pub fn settings_differences(a: &Request, b: &Request) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(key, value)| b.get(*key) != Some(*value))
        .map(|(key, value)| {
            let other = b.get(key).map(|v| v.to_string()).unwrap_or_default();
            format!("{key}: {value} vs {other}")
        })
        .collect()
}
