//! One-line fields of the settings column: a label, a text edit that keeps its
//! focus, and for paths a Browse... button.

use std::path::PathBuf;

use super::browse::{BROWSE_TEXT, PathField, PickKind, browse_button};

/// A labelled single-line text field.
pub fn text_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    tooltip: &str,
) -> egui::Response {
    ui.horizontal(|ui| {
        let name = ui.label(label);
        let edit = text_edit(label, value).desired_width(f32::INFINITY);
        ui.add(edit).labelled_by(name.id).on_hover_text(tooltip)
    })
    .inner
}

/// A single-line text edit with an id fixed by `label`.
fn text_edit<'a>(label: &str, value: &'a mut String) -> egui::TextEdit<'a> {
    // A fixed id keeps the focus while typing even when the column above changes
    // (the download offer disappears once the first model path is entered).
    egui::TextEdit::singleline(value).id_salt(("path", label))
}

/// A drop-down choosing one of `options`, each shown by `name`; the response is
/// marked changed when the choice changes.
pub fn choice_field<T: Copy + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    options: impl IntoIterator<Item = T>,
    name: impl Fn(T) -> &'static str,
) -> egui::Response {
    let mut changed = false;
    let mut response = egui::ComboBox::from_label(label)
        .selected_text(name(*value))
        .show_ui(ui, |ui| {
            for option in options {
                changed |= ui.selectable_value(value, option, name(option)).changed();
            }
        })
        .response;
    if changed {
        response.mark_changed();
    }
    response
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
        let name = ui.label(label);
        // The text edit is added before its button, so Tab follows reading order (field,
        // its Browse..., the next row's field) with the button at the right: both get
        // rects cut from the row, so neither can widen the column.
        let row = ui.available_rect_before_wrap();
        let height = ui.spacing().interact_size.y;
        let gap = ui.spacing().item_spacing.x;
        let button_width = browse_button_width(ui);
        let edit_width = (row.width() - button_width - gap).max(MIN_EDIT_WIDTH);
        let edit_rect = egui::Rect::from_min_size(row.min, egui::vec2(edit_width, height));
        let button_rect = egui::Rect::from_min_size(
            egui::pos2(edit_rect.max.x + gap, row.min.y),
            egui::vec2(button_width, height),
        );
        let response = ui
            .put(edit_rect, text_edit(label, value))
            .labelled_by(name.id)
            .on_hover_text(tooltip);
        let browse = ui
            .scope_builder(
                egui::UiBuilder::new()
                    .max_rect(button_rect)
                    .layout(egui::Layout::left_to_right(egui::Align::Center)),
                |ui| browse_button(ui, field, label),
            )
            .inner;
        PathEdit { response, browse }
    })
    .inner
}

/// The narrowest a path's text edit gets in a narrow column.
const MIN_EDIT_WIDTH: f32 = 60.0;

/// The width of a Browse... button: its text and the button padding on both sides.
fn browse_button_width(ui: &egui::Ui) -> f32 {
    let text = egui::WidgetText::from(BROWSE_TEXT).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Button,
    );
    text.size().x + 2.0 * ui.spacing().button_padding.x
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

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    use super::choice_field;

    /// The value and whether the last frame's response said it changed.
    #[derive(Default)]
    struct Choice {
        value: u8,
        changed: bool,
    }

    #[test]
    fn a_new_choice_sets_the_value_and_marks_the_response_changed() {
        let name = |option: u8| ["zero", "one", "two"][usize::from(option)];
        let mut harness = Harness::new_ui_state(
            |ui, choice: &mut Choice| {
                let response = choice_field(ui, "Number", &mut choice.value, 0..3, name);
                choice.changed |= response.changed();
            },
            Choice::default(),
        );
        harness.run();
        assert!(!harness.state().changed);
        harness
            .get_by_role_and_label(egui::accesskit::Role::ComboBox, "Number")
            .click();
        harness.run();
        harness.get_by_label("two").click();
        harness.run();
        assert_eq!(harness.state().value, 2);
        assert!(harness.state().changed);
    }
}
