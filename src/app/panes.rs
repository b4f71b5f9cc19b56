//! The two image-prompt panes: thumbnails with a weight, an on/off toggle, a mask and a
//! remove button.

use std::path::PathBuf;

use egui::{Color32, RichText, TextureHandle};

use super::mask_view::MaskView;
use super::settings::SavedPromptImage;
use super::texture;
use crate::pipeline::preprocess::FitMode;
use crate::pipeline::{ImagePrompt, MaskFile};

/// What a pane asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneAction {
    None,
    /// Open the file dialog for this pane.
    Add,
    /// Paste an image from the clipboard into this pane.
    Paste,
    /// Open the mask editor for the image at this index.
    EditMask(usize),
}

/// One image in a pane.
pub struct PaneImage {
    pub path: PathBuf,
    pub weight: f64,
    pub enabled: bool,
    /// Where the image acts (a grayscale picture, white = here; none: everywhere).
    pub mask: Option<MaskFile>,
    /// Off: the mask is kept, the image acts everywhere.
    pub mask_enabled: bool,
    /// `None` until the background loader has decoded it.
    pub thumbnail: Option<TextureHandle>,
    /// The mask as read for the thumbnail's overlay and the editor.
    pub mask_view: MaskView,
}

impl PaneImage {
    /// A new image with weight 1, enabled.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            weight: 1.0,
            enabled: true,
            mask: None,
            mask_enabled: true,
            thumbnail: None,
            mask_view: MaskView::default(),
        }
    }

    /// Restores a remembered image.
    pub fn from_saved(saved: &SavedPromptImage) -> Self {
        Self {
            weight: saved.weight,
            enabled: saved.enabled,
            mask: saved.mask.clone(),
            mask_enabled: saved.mask_enabled,
            ..Self::new(saved.path.clone())
        }
    }

    /// An image of a restored request, with its weight and on/off state.
    pub fn from_prompt(prompt: &ImagePrompt) -> Self {
        Self {
            weight: prompt.weight,
            enabled: prompt.enabled,
            mask: prompt.mask.clone(),
            mask_enabled: prompt.mask_enabled,
            ..Self::new(prompt.path.clone())
        }
    }

    /// What is remembered between launches.
    pub fn saved(&self) -> SavedPromptImage {
        SavedPromptImage {
            path: self.path.clone(),
            weight: self.weight,
            enabled: self.enabled,
            mask: self.mask.clone(),
            mask_enabled: self.mask_enabled,
        }
    }
}

/// A warning shown beside a pane's title.
#[derive(Debug, Clone, Copy)]
pub struct PaneMark {
    pub text: &'static str,
    pub tooltip: &'static str,
}

/// The negative pane's mark at CFG ≤ 1, where its images act through a half that
/// guidance leaves out (CFG 1) or follows (below 1).
pub const NEEDS_GUIDANCE: PaneMark = PaneMark {
    text: "needs CFG > 1",
    tooltip: "Negative images work through classifier-free guidance: at CFG 1 they have \
              no effect, below 1 they pull the picture towards themselves. Raise CFG above 1.",
};

/// A pane of prompt images (positive or negative).
pub struct Pane {
    pub title: &'static str,
    pub tooltip: &'static str,
    pub images: Vec<PaneImage>,
}

impl Pane {
    /// The images as prompts for a request (switched-off ones marked, so they are kept
    /// in the saved settings but not used).
    pub fn prompts(&self) -> Vec<ImagePrompt> {
        self.images
            .iter()
            .map(|image| ImagePrompt {
                weight: image.weight,
                enabled: image.enabled,
                mask: image.mask.clone(),
                mask_enabled: image.mask_enabled,
                ..ImagePrompt::new(image.path.clone())
            })
            .collect()
    }

    /// Replaces the images by those of a restored request; they wait for their
    /// thumbnails, and the returned paths are for the loader.
    pub fn restore(&mut self, prompts: &[ImagePrompt]) -> Vec<PathBuf> {
        self.images = prompts.iter().map(PaneImage::from_prompt).collect();
        prompts.iter().map(|p| p.path.clone()).collect()
    }

    /// Draws the pane, with `mark` (a warning) beside its title; returns its rectangle
    /// (for routing dropped files) and the action asked for.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        drop_hovered: bool,
        fit: FitMode,
        mark: Option<PaneMark>,
    ) -> (egui::Rect, PaneAction) {
        let mut action = PaneAction::None;
        let stroke = if drop_hovered {
            egui::Stroke::new(2.0, Color32::LIGHT_BLUE)
        } else {
            ui.visuals().widgets.noninteractive.bg_stroke
        };
        let frame = egui::Frame::group(ui.style()).stroke(stroke);
        let rect = frame
            .show(ui, |ui| {
                // The pane fills its column whatever it holds: a frame sized by its
                // content would shrink to the thumbnails once there are any.
                ui.set_min_width(ui.available_width());
                ui.set_min_height(150.0);
                let card_width = (ui.available_width() - 8.0).clamp(MIN_CARD_WIDTH, CARD_WIDTH);
                action = self.header_ui(ui, mark);
                if self.images.is_empty() {
                    ui.label(RichText::new("Drop images here").weak());
                }
                let mut remove = None;
                egui::ScrollArea::horizontal()
                    .id_salt(self.title)
                    .auto_shrink([false, true])
                    .show(ui, |ui| {
                        ui.horizontal(|ui| {
                            for (i, image) in self.images.iter_mut().enumerate() {
                                match image_card(ui, image, (self.title, i), card_width, fit) {
                                    CardAction::None => {}
                                    CardAction::Remove => remove = Some(i),
                                    CardAction::EditMask => action = PaneAction::EditMask(i),
                                }
                            }
                        });
                    });
                if let Some(i) = remove {
                    self.images.remove(i);
                }
            })
            .response
            .rect;
        (rect, action)
    }

    /// The title with the Add... and Paste buttons.
    fn header_ui(&self, ui: &mut egui::Ui, mark: Option<PaneMark>) -> PaneAction {
        let mut action = PaneAction::None;
        ui.horizontal(|ui| {
            ui.label(RichText::new(self.title).strong())
                .on_hover_text(self.tooltip);
            if let Some(mark) = mark {
                ui.label(RichText::new(mark.text).color(ui.visuals().warn_fg_color))
                    .on_hover_text(mark.tooltip);
            }
            let add_name = format!("add to {}", self.title);
            if named_button(ui, "Add...", "Choose image files", add_name).clicked() {
                action = PaneAction::Add;
            }
            let paste_tip =
                "Paste an image from the clipboard (Ctrl+V pastes into the image prompt)";
            let paste_name = format!("paste into {}", self.title);
            if named_button(ui, "Paste", paste_tip, paste_name).clicked() {
                action = PaneAction::Paste;
            }
        });
        action
    }
}

/// Width of an image card (thumbnail and controls) in a pane with room for it.
const CARD_WIDTH: f32 = 110.0;
/// The narrowest card: a pane narrower than this scrolls instead.
const MIN_CARD_WIDTH: f32 = 60.0;

/// What a click on an image card asks for.
enum CardAction {
    None,
    Remove,
    EditMask,
}

/// Draws one image (the `index`th of `pane`) with its controls, `width` wide.
fn image_card(
    ui: &mut egui::Ui,
    image: &mut PaneImage,
    (pane, index): (&str, usize),
    width: f32,
    fit: FitMode,
) -> CardAction {
    let mut action = CardAction::None;
    ui.vertical(|ui| {
        ui.set_width(width);
        let name = image
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &image.thumbnail {
            Some(texture) => {
                let tint = if image.enabled {
                    Color32::WHITE
                } else {
                    Color32::from_gray(90)
                };
                let shown = ui
                    .add(texture::fitted(texture, 100.0).tint(tint))
                    .on_hover_text(image.path.display().to_string());
                fit_overlay(ui, shown.rect, fit);
                if image.mask_enabled
                    && let Some(mask) = image.mask_view.texture()
                {
                    let uv = egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0));
                    ui.painter()
                        .image(mask.id(), shown.rect, uv, Color32::WHITE);
                }
            }
            None => {
                ui.spinner();
            }
        }
        ui.label(RichText::new(name).small());
        ui.add(
            egui::Slider::new(&mut image.weight, 0.0..=2.0)
                .text("w")
                .max_decimals(2),
        )
        .on_hover_text("Relative weight of this image among the images of this pane");
        ui.horizontal(|ui| {
            ui.checkbox(&mut image.enabled, "on")
                .on_hover_text("Use this image in the next run");
            let tip = "Remove this image from the pane";
            let name = format!("remove {pane} {index}");
            if named_button(ui, "Remove", tip, name).clicked() {
                action = CardAction::Remove;
            }
        });
        if mask_ui(ui, image, (pane, index)) {
            action = CardAction::EditMask;
        }
    });
    action
}

/// The Mask... button and, once there is a mask, its on/off box; returns true when
/// the editor should open.
fn mask_ui(ui: &mut egui::Ui, image: &mut PaneImage, (pane, index): (&str, usize)) -> bool {
    ui.horizontal(|ui| {
        let tip = "Draw or load where this image acts (white = here; it is fitted to the \
                   output size)";
        let name = format!("mask {pane} {index}");
        let edit = named_button(ui, "Mask...", tip, name).clicked();
        if let Some(mask) = &image.mask {
            let tip = format!("{}: off, the image acts everywhere", mask.path.display());
            ui.checkbox(&mut image.mask_enabled, "mask")
                .on_hover_text(tip);
        }
        edit
    })
    .inner
}

/// A small button with a tooltip, known to screen readers (and the tests) as `name`:
/// each pane has its own Add..., Paste and Remove buttons.
fn named_button(ui: &mut egui::Ui, text: &str, tip: &str, name: String) -> egui::Response {
    let button = ui.small_button(text).on_hover_text(tip);
    button.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, name.clone()));
    button
}

/// Shows how a non-square image becomes square: the kept square for crop, the
/// padded square for pad; squash uses the whole image.
fn fit_overlay(ui: &egui::Ui, rect: egui::Rect, fit: FitMode) {
    let side = rect.width().min(rect.height());
    let longest = rect.width().max(rect.height());
    if (rect.width() - rect.height()).abs() < 1.0 {
        return;
    }
    let stroke = egui::Stroke::new(1.5, Color32::YELLOW);
    let square = match fit {
        FitMode::Crop => egui::Rect::from_center_size(rect.center(), egui::vec2(side, side)),
        FitMode::Pad => egui::Rect::from_center_size(rect.center(), egui::vec2(longest, longest)),
        FitMode::Squash => return,
    };
    ui.painter()
        .rect_stroke(square, 0.0, stroke, egui::StrokeKind::Inside);
}
