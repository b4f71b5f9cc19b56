//! A pane image's mask as the window shows it: read from its file and fitted to the
//! output's size off the UI thread, then kept as pixels (for the editor) and as an
//! overlay texture (for the thumbnail).

use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use egui::{Color32, TextureHandle};

use super::mask_canvas::MaskCanvas;
use crate::files::{MAX_IMAGE_FILE_BYTES, read_regular_file};
use crate::pipeline::masks::read_mask;

/// The colour of a mask drawn over an image: where the image acts.
pub const MASK_COLOUR: Color32 = Color32::from_rgba_premultiplied(0, 110, 150, 150);

/// Which file at which output size the view shows.
type Key = (PathBuf, [usize; 2]);

enum State {
    Empty,
    Reading(Receiver<Result<MaskCanvas, String>>),
    Ready(MaskCanvas, TextureHandle),
    /// The file could not be read; it is not read again until the mask or size changes.
    Failed,
}

/// The mask of one pane image, as far as it has been read.
pub struct MaskView {
    key: Option<Key>,
    state: State,
}

impl Default for MaskView {
    fn default() -> Self {
        Self {
            key: None,
            state: State::Empty,
        }
    }
}

impl MaskView {
    /// Keeps the view on `mask` at `size` (width, height): starts reading a new file or
    /// size, takes a finished read, and returns why a read failed (once).
    pub fn update(
        &mut self,
        mask: Option<&Path>,
        size: [usize; 2],
        ctx: &egui::Context,
    ) -> Option<String> {
        let Some(path) = mask else {
            *self = Self::default();
            return None;
        };
        let key = (path.to_path_buf(), size);
        if self.key.as_ref() != Some(&key) {
            self.state = State::Reading(read_in_background(path, size, ctx));
            self.key = Some(key);
        }
        let State::Reading(answer) = &self.state else {
            return None;
        };
        match answer.try_recv() {
            Ok(Ok(canvas)) => {
                self.show(canvas, ctx);
                None
            }
            Ok(Err(error)) => {
                self.state = State::Failed;
                Some(error)
            }
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.state = State::Failed;
                Some(format!("{}: the mask reader stopped", path.display()))
            }
        }
    }

    /// Shows `canvas`, drawn in the editor and saved as `path`, without reading it again.
    pub fn set(&mut self, path: &Path, canvas: MaskCanvas, ctx: &egui::Context) {
        self.key = Some((path.to_path_buf(), canvas.size()));
        self.show(canvas, ctx);
    }

    fn show(&mut self, canvas: MaskCanvas, ctx: &egui::Context) {
        let texture = ctx.load_texture(
            "mask overlay",
            canvas.overlay(MASK_COLOUR),
            egui::TextureOptions::NEAREST,
        );
        self.state = State::Ready(canvas, texture);
    }

    /// The mask's pixels, once read.
    pub fn canvas(&self) -> Option<&MaskCanvas> {
        match &self.state {
            State::Ready(canvas, _) => Some(canvas),
            _ => None,
        }
    }

    /// The overlay texture, once read.
    pub fn texture(&self) -> Option<&TextureHandle> {
        match &self.state {
            State::Ready(_, texture) => Some(texture),
            _ => None,
        }
    }
}

/// Reads the mask file at `path` on its own thread, fitted to `size` as a run fits it.
pub fn read_in_background(
    path: &Path,
    [width, height]: [usize; 2],
    ctx: &egui::Context,
) -> Receiver<Result<MaskCanvas, String>> {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let (path, ctx) = (path.to_path_buf(), ctx.clone());
    let spawned = std::thread::Builder::new()
        .name("minus-mask-reader".to_string())
        .spawn(move || {
            let region = read_regular_file(&path, MAX_IMAGE_FILE_BYTES)
                .and_then(|bytes| read_mask(&path, &bytes, width, height));
            let _ = sender.send(
                region
                    .map(|r| MaskCanvas::from_region(&r))
                    .map_err(|e| e.to_string()),
            );
            ctx.request_repaint();
        });
    if let Err(error) = spawned {
        let (sender, failed) = crossbeam_channel::bounded(1);
        let _ = sender.send(Err(format!("cannot start the mask reader: {error}")));
        return failed;
    }
    receiver
}
