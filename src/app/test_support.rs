//! Read access to the window's state for the UI tests (feature `test-support`,
//! never in a release build).

use std::sync::Arc;

use super::sweep::Sweep;
use super::{Message, MinusApp, PathPicker, Settings};
use crate::engine::LoadedModels;
use crate::pipeline::PreviewKind;
use crate::weights::hub::Hub;

impl MinusApp {
    /// The settings for direct changes.
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Number of images in the positive and the negative pane.
    pub fn pane_counts(&self) -> (usize, usize) {
        (self.positive.images.len(), self.negative.images.len())
    }

    /// The rectangles of the positive and the negative pane in the last frame.
    pub fn pane_rects(&self) -> [egui::Rect; 2] {
        self.pane_rects
    }

    /// Number of finished results in the gallery.
    pub fn gallery_len(&self) -> usize {
        self.results.gallery.len()
    }

    /// Notices, warnings and errors currently shown, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.shown().cloned().collect()
    }

    /// Number of frames drawn so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether a job is running or queued.
    pub fn is_busy(&self) -> bool {
        self.results.running.is_some() || !self.results.queued.is_empty()
    }

    /// Steps reported by the running job (0 when idle).
    pub fn running_step(&self) -> usize {
        self.results.running.as_ref().map_or(0, |job| job.step)
    }

    /// How the running job's last preview was drawn (`None` before its first step).
    pub fn running_preview_kind(&self) -> Option<PreviewKind> {
        self.results.running.as_ref()?.preview_kind
    }

    /// Replaces the hub (tests point it at a stand-in server).
    pub fn set_hub(&mut self, hub: Hub) {
        self.downloads.hub = hub;
    }

    /// What the engine has loaded, as the window lists it.
    pub fn loaded_models(&self) -> Option<&LoadedModels> {
        self.model_status.loaded.as_ref()
    }

    /// Answers Browse... with `picker` instead of the system dialog.
    pub fn set_path_picker(&mut self, picker: Arc<dyn PathPicker>) {
        self.browser.set_picker(picker);
    }

    /// Whether models are being downloaded.
    pub fn is_downloading(&self) -> bool {
        self.downloads.progress.is_some()
    }

    /// The labels of the sweep grid's cells.
    pub fn sweep_labels(&self) -> Vec<String> {
        let cells = self.results.sweep.iter().flat_map(|sweep| &sweep.cells);
        cells.map(|cell| cell.label.clone()).collect()
    }

    /// The sweep grid's pictures, in order (`None` while a cell's run is not done).
    pub fn sweep_images(&self) -> Vec<Option<std::sync::Arc<image::RgbImage>>> {
        let cells = self.results.sweep.iter().flat_map(|sweep| &sweep.cells);
        cells
            .map(|cell| cell.image.as_ref().map(|(image, _)| image.clone()))
            .collect()
    }

    /// Whether the sweep grid is complete (every run finished).
    pub fn sweep_complete(&self) -> bool {
        self.results.sweep.as_ref().is_some_and(Sweep::is_complete)
    }

    /// How many pixels the open mask editor has painted, and of how many (`None`
    /// while it is closed).
    pub fn mask_editor_coverage(&self) -> Option<(usize, usize)> {
        let canvas = self.mask_editor.as_ref()?.canvas();
        let [width, height] = canvas.size();
        Some((canvas.on_count(), width * height))
    }

    /// The mask of image `index` of the positive (or negative) pane: its file, whether
    /// it is on, and how many pixels its overlay shows (`None` until it is read).
    pub fn pane_mask(
        &self,
        negative: bool,
        index: usize,
    ) -> Option<(std::path::PathBuf, bool, Option<usize>)> {
        let pane = if negative {
            &self.negative
        } else {
            &self.positive
        };
        let image = pane.images.get(index)?;
        let shown = image.mask_view.canvas().map(|c| c.on_count());
        Some((image.mask.as_ref()?.path.clone(), image.mask_enabled, shown))
    }
}
