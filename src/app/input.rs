//! Images coming in: files dropped on the window, pasted, or read by the loader,
//! and settings restored from a dropped PNG.

use std::path::PathBuf;

use egui::Key;
use image::RgbImage;

use super::MinusApp;
use super::loader::{Loaded, Target};
use super::messages::{Message, MessageSource};
use super::panes::{Pane, PaneImage};
use super::results::GalleryEntry;
use super::{tasks, texture};
use crate::pipeline::Request;

impl MinusApp {
    /// Puts images the loader has read into their pane or the gallery.
    pub(super) fn handle_loaded_files(&mut self, ctx: &egui::Context) {
        for loaded in self.loader.poll() {
            self.take_loaded(loaded, ctx);
        }
    }

    /// Places one read file, or says why it could not be read.
    fn take_loaded(&mut self, loaded: Loaded, ctx: &egui::Context) {
        let Loaded {
            target,
            path,
            result,
            note,
            requested,
        } = loaded;
        let (image, request) = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                // A remembered image that is gone or broken leaves its pane.
                for pane in [&mut self.positive, &mut self.negative] {
                    pane.images
                        .retain(|i| i.path != path || i.thumbnail.is_some());
                }
                if target != Target::Gallery {
                    self.messages
                        .push(Message::error(MessageSource::Files, error));
                }
                return;
            }
        };
        self.messages.succeeded(MessageSource::Files, requested);
        if let Some(note) = note {
            self.messages
                .push(Message::warning(MessageSource::Files, note));
        }
        match (target, request) {
            (Target::Window, Some(request)) => {
                if self.restore(request) {
                    self.messages.succeeded(MessageSource::Restore, requested);
                    let text = format!("Settings restored from {}", path.display());
                    self.messages
                        .push(Message::info(MessageSource::Restore, text));
                }
            }
            (Target::Gallery, request) => {
                let thumb = texture::thumbnail(&image, 512);
                self.results.gallery.insert(
                    0,
                    GalleryEntry {
                        texture: texture::upload(ctx, &path.display().to_string(), &thumb),
                        image: None,
                        request,
                        path: Some(path),
                        compare: false,
                    },
                );
            }
            (Target::Negative, _) => self.show_in_pane(Target::Negative, path, &image, ctx),
            (Target::Positive | Target::Window, _) => {
                self.show_in_pane(Target::Positive, path, &image, ctx);
            }
        }
    }

    /// Gives the image its pane's thumbnail: the waiting entry's (an image remembered
    /// from the last session), or a new entry's.
    fn show_in_pane(
        &mut self,
        target: Target,
        path: PathBuf,
        image: &RgbImage,
        ctx: &egui::Context,
    ) {
        let pane = self.pane_mut(target);
        let thumbnail = texture::upload(
            ctx,
            &path.display().to_string(),
            &texture::thumbnail(image, 200),
        );
        let waiting = pane
            .images
            .iter_mut()
            .find(|i| i.path == path && i.thumbnail.is_none());
        let entry = match waiting {
            Some(entry) => entry,
            None => {
                pane.images.push(PaneImage::new(path));
                let last = pane.images.len() - 1;
                &mut pane.images[last]
            }
        };
        entry.thumbnail = Some(thumbnail);
    }

    /// The pane images for `target` go to: the negative pane, or else the image prompt.
    pub(super) fn pane_mut(&mut self, target: Target) -> &mut Pane {
        if target == Target::Negative {
            &mut self.negative
        } else {
            &mut self.positive
        }
    }

    /// Applies a saved request (the panes take its images with their weights); returns
    /// false, with a message and nothing changed, when the request is invalid.
    pub(super) fn restore(&mut self, request: Request) -> bool {
        if let Err(error) = request.validate() {
            let text = format!("Settings not restored: {error}");
            self.messages
                .push(Message::error(MessageSource::Restore, text));
            return false;
        }
        let positive = self.positive.restore(&request.images);
        let negative = self.negative.restore(&request.negative_images);
        self.loader.load(positive, Target::Positive);
        self.loader.load(negative, Target::Negative);
        self.restore_loras(request.loras.clone());
        let loaded = self.loaded_family();
        if self.model_status.loaded.is_some() && request.family != loaded {
            let text = format!(
                "This picture was made with an {} model; the loaded model is {}: load an {} model to make it again",
                request.family.display_name(),
                loaded.display_name(),
                request.family.display_name()
            );
            self.messages
                .push(Message::warning(MessageSource::Restore, text));
        }
        self.settings.request = request;
        self.settings.random_seed = false;
        true
    }

    /// Sends files dropped this frame to the pane under the pointer, or the window.
    pub(super) fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let (dropped, pointer) =
            ctx.input(|i| (i.raw.dropped_files.clone(), i.pointer.latest_pos()));
        if dropped.is_empty() {
            return;
        }
        let paths: Vec<PathBuf> = dropped
            .iter()
            .map(|file| file.path().to_path_buf())
            .collect();
        if self.drop_on_mask_editor(pointer, &paths, ctx) {
            return;
        }
        let target = match pointer {
            Some(pos) if self.pane_rects[0].contains(pos) => Target::Positive,
            Some(pos) if self.pane_rects[1].contains(pos) => Target::Negative,
            _ => Target::Window,
        };
        self.loader.load(paths, target);
    }

    /// Ctrl+V pastes the clipboard's image into the image prompt. egui hands an image-only
    /// clipboard over as an image paste event; with text on the clipboard too, Ctrl+V
    /// outside a text field reads the image from the clipboard itself.
    pub(super) fn handle_paste(&mut self, ctx: &egui::Context) {
        let images: Vec<_> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::PasteImage(image) => Some(image.clone()),
                    _ => None,
                })
                .collect()
        });
        for image in &images {
            tasks::paste_pixels(
                &self.notices,
                &self.loader,
                Target::Positive,
                pasted_dir(),
                image,
            );
        }
        if !images.is_empty() {
            return;
        }
        let typing = ctx.memory(|m| m.focused().is_some());
        let paste_pressed = ctx.input(|i| {
            i.events.iter().any(|e| {
                matches!(e, egui::Event::Paste(_))
                    || matches!(e, egui::Event::Key { key: Key::V, pressed: true, modifiers, .. } if modifiers.command)
            })
        });
        if paste_pressed && !typing {
            tasks::paste_image(&self.notices, &self.loader, Target::Positive, pasted_dir());
        }
    }
}

/// Where pasted images are stored (prompts refer to files).
pub(super) fn pasted_dir() -> PathBuf {
    data_dir().join("pasted")
}

/// Minus's own data folder: pasted images, and masks drawn while no results folder is set.
pub(super) fn data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "Minus")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("minus"))
}
