//! One-line fields of the settings column: a label, a text edit that keeps its
//! focus, and for paths a Browse... button.

use std::path::PathBuf;

use super::browse::{PathField, PickKind, browse_button};

/// A labelled single-line text field.
pub fn text_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    tooltip: &str,
) -> egui::Response {
    ui.horizontal(|ui| {
        ui.label(label);
        text_edit(ui, label, value, tooltip)
    })
    .inner
}

/// A text edit filling the rest of the row, with an id fixed by `label`.
fn text_edit(ui: &mut egui::Ui, label: &str, value: &mut String, tooltip: &str) -> egui::Response {
    // A fixed id keeps the focus while typing even when the column above changes
    // (the download offer disappears as soon as a model path is set).
    let edit = egui::TextEdit::singleline(value).id_salt(("path", label));
    ui.add(edit.desired_width(f32::INFINITY))
        .on_hover_text(tooltip)
}

/// What happened to a path field this frame.
pub struct PathEdit {
    /// The text edit (changed, lost focus, ...).
    pub response: egui::Response,
    /// The Browse... button asked for this dialog.
    pub browse: Option<PickKind>,
}

/// A labelled path field with a Browse... button for `field`.
pub fn path_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    tooltip: &str,
    field: PathField,
) -> PathEdit {
    ui.horizontal(|ui| {
        ui.label(label);
        // Right to left, so the button keeps its size and the text edit fills what is
        // left (a width computed from the button would grow the column every frame).
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let browse = browse_button(ui, field, label);
            let response = text_edit(ui, label, value, tooltip);
            PathEdit { response, browse }
        })
        .inner
    })
    .inner
}

/// A path field that may be left empty (unset).
pub fn optional_path_field(
    ui: &mut egui::Ui,
    label: &str,
    path: &mut Option<PathBuf>,
    tooltip: &str,
    field: PathField,
) -> PathEdit {
    let mut text = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let edit = path_field(ui, label, &mut text, tooltip, field);
    if edit.response.changed() {
        let text = text.trim();
        *path = (!text.is_empty()).then(|| PathBuf::from(text));
    }
    edit
}
