//! The window's masks: each pane image's mask read for its overlay, the mask editor
//! opened from a thumbnail, and a drawn mask kept as a file.

use std::path::PathBuf;

use super::input::data_dir;
use super::loader::Target;
use super::mask_canvas::MaskCanvas;
use super::mask_editor::{EditorAction, MaskEditor};
use super::messages::{Message, MessageSource};
use super::panes::PaneImage;
use super::{MinusApp, tasks};
use crate::output::masks::{drawn_mask_path, keep_drawn_mask};
use crate::pipeline::MaskFile;

impl MinusApp {
    /// The output's size, which masks are fitted to.
    fn mask_size(&self) -> [usize; 2] {
        [self.settings.request.width, self.settings.request.height]
    }

    /// The image at `target`, if it is still there.
    fn pane_image(&mut self, (target, index): (Target, usize)) -> Option<&mut PaneImage> {
        self.pane_mut(target).images.get_mut(index)
    }

    /// Keeps every pane image's mask view on its mask at the output's size.
    pub(super) fn update_mask_views(&mut self, ctx: &egui::Context) {
        let size = self.mask_size();
        let images = self.positive.images.iter_mut();
        for image in images.chain(self.negative.images.iter_mut()) {
            let path = image.mask.as_ref().map(|mask| mask.path.as_path());
            if let Some(error) = image.mask_view.update(path, size, ctx) {
                self.messages
                    .push(Message::error(MessageSource::Files, error));
            }
        }
    }

    /// Opens the editor on the mask of the image at `target` (an empty mask if it has
    /// none or it is not read yet), over the last result or else the image itself.
    pub(super) fn open_mask_editor(&mut self, target: (Target, usize)) {
        let size = self.mask_size();
        let last_result = self
            .results
            .gallery
            .first()
            .map(|entry| entry.texture.clone());
        let Some(image) = self.pane_image(target) else {
            return;
        };
        let canvas = image
            .mask_view
            .canvas()
            .filter(|canvas| canvas.size() == size)
            .cloned()
            .unwrap_or_else(|| MaskCanvas::new(size[0], size[1]));
        let name = image
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let background = last_result.or_else(|| image.thumbnail.clone());
        self.mask_editor = Some(MaskEditor::new(target, &name, canvas, background));
    }

    /// Draws the open editor and carries out what it asks for.
    pub(super) fn mask_editor_ui(&mut self, ctx: &egui::Context) {
        let Some(editor) = &mut self.mask_editor else {
            return;
        };
        match editor.ui(ctx) {
            EditorAction::None => {}
            EditorAction::Cancel => self.mask_editor = None,
            EditorAction::Failed(error) => {
                self.messages
                    .push(Message::error(MessageSource::Files, error));
            }
            EditorAction::Use(canvas) => {
                let target = editor.target;
                self.mask_editor = None;
                self.use_drawn_mask(target, canvas, ctx);
            }
        }
    }

    /// Gives the image at `target` the drawn mask, written as a PNG into the masks
    /// folder of the results (or of Minus's data folder when there is no results folder).
    fn use_drawn_mask(&mut self, target: (Target, usize), canvas: MaskCanvas, ctx: &egui::Context) {
        let bytes = match canvas.to_png() {
            Ok(bytes) => bytes,
            Err(error) => {
                let text = format!("the drawn mask could not be encoded: {error}");
                self.messages
                    .push(Message::error(MessageSource::Files, text));
                return;
            }
        };
        let dir = self.settings.output_dir.clone().unwrap_or_else(data_dir);
        let path = drawn_mask_path(&dir, &bytes);
        let Some(image) = self.pane_image(target) else {
            return;
        };
        image.mask = Some(MaskFile::new(&path));
        image.mask_enabled = true;
        image.mask_view.set(&path, canvas, ctx);
        tasks::spawn(
            &self.notices,
            MessageSource::Files,
            "mask-writer",
            move || {
                keep_drawn_mask(&dir, &bytes)
                    .map(|_| tasks::Done::Quietly)
                    .map_err(|e| format!("the drawn mask could not be saved: {e}"))
            },
        );
    }

    /// Whether a file dropped at `pointer` lands on the open editor (which then reads it).
    pub(super) fn drop_on_mask_editor(
        &mut self,
        pointer: Option<egui::Pos2>,
        paths: &[PathBuf],
        ctx: &egui::Context,
    ) -> bool {
        let Some(editor) = &mut self.mask_editor else {
            return false;
        };
        let (Some(pos), Some(path)) = (pointer, paths.first()) else {
            return false;
        };
        if !editor.rect.contains(pos) {
            return false;
        }
        editor.load(path, ctx);
        true
    }
}
