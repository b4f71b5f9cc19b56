//! Short jobs run on their own threads so the window never waits: file dialogs,
//! the clipboard, saving copies and grids, opening the output folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};
use image::RgbImage;
use sha2::{Digest, Sha256};

use super::loader::{Loader, Target};
use super::messages::{Message, MessageSource, Messages};
use crate::output::{grid::labelled_row, save_plain_png};
use crate::pipeline::preprocess::load_rgb;

/// Extensions the image decoder reads.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "bmp", "PNG"];

/// What a background task tells the window.
enum Notice {
    /// Something to show.
    Show(Message),
    /// An attempt of `source` begun at `started` succeeded, with a word for the user
    /// if there is one.
    Succeeded {
        source: MessageSource,
        started: Instant,
        said: Option<String>,
    },
}

/// How a background task ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// It succeeded, and the window says so.
    Said(String),
    /// It succeeded, and what it did shows by itself.
    Quietly,
    /// Nothing to report: a dialog was cancelled, or another part reports the outcome.
    Nothing,
}

/// Reports from background tasks to the window.
#[derive(Clone)]
pub struct Notices {
    sender: Sender<Notice>,
    receiver: Receiver<Notice>,
    ctx: egui::Context,
}

impl Notices {
    /// A channel that wakes `ctx` on every notice.
    pub fn new(ctx: &egui::Context) -> Self {
        let (sender, receiver) = unbounded();
        Self {
            sender,
            receiver,
            ctx: ctx.clone(),
        }
    }

    fn post(&self, notice: Notice) {
        // The receiver lives as long as the window.
        let _ = self.sender.send(notice);
        self.ctx.request_repaint();
    }

    /// Something a background thread calls to have the window look at its answer.
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let ctx = self.ctx.clone();
        move || ctx.request_repaint()
    }

    /// Puts everything posted since the last call into `messages`.
    pub fn deliver(&self, messages: &mut Messages) {
        for notice in self.receiver.try_iter() {
            match notice {
                Notice::Show(message) => messages.push(message),
                Notice::Succeeded {
                    source,
                    started,
                    said,
                } => {
                    messages.succeeded(source, started);
                    if let Some(text) = said {
                        messages.push(Message::info(source, text));
                    }
                }
            }
        }
    }
}

/// Runs `task` on a named thread; its outcome reaches the messages as from `source`.
pub fn spawn(
    notices: &Notices,
    source: MessageSource,
    name: &str,
    task: impl FnOnce() -> Result<Done, String> + Send + 'static,
) {
    let thread_notices = notices.clone();
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name(format!("minus-{name}"))
        .spawn(move || {
            let notice = match task() {
                Ok(Done::Nothing) => return,
                Ok(Done::Quietly) => Notice::Succeeded {
                    source,
                    started,
                    said: None,
                },
                Ok(Done::Said(text)) => Notice::Succeeded {
                    source,
                    started,
                    said: Some(text),
                },
                Err(error) => Notice::Show(Message::error(source, error)),
            };
            thread_notices.post(notice);
        });
    if let Err(error) = spawned {
        let text = format!("cannot start a background task: {error}");
        notices.post(Notice::Show(Message::error(source, text)));
    }
}

/// Where a gallery image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Memory(Arc<RgbImage>),
    File(PathBuf),
}

impl ImageSource {
    fn load(&self) -> Result<RgbImage, String> {
        match self {
            Self::Memory(image) => Ok((**image).clone()),
            // Bounded like every input: size on disk, pixels and decoded bytes.
            Self::File(path) => load_rgb(path).map_err(|e| e.to_string()),
        }
    }
}

/// Opens the system file dialog and loads the picked images into `target`.
pub fn pick_images(notices: &Notices, loader: &Loader, target: Target) {
    let loader = loader.clone();
    spawn(notices, MessageSource::Files, "file-dialog", move || {
        let picked = rfd::FileDialog::new()
            .add_filter("Images", &IMAGE_EXTENSIONS)
            .pick_files();
        if let Some(paths) = picked {
            loader.load(paths, target);
        }
        // The loader reports each file.
        Ok(Done::Nothing)
    });
}

/// Takes an image from the clipboard and pastes it into `target` (the Paste buttons).
/// Its problems are about getting a prompt image, so they go once one loads.
pub fn paste_image(notices: &Notices, loader: &Loader, target: Target, pasted_dir: PathBuf) {
    let loader = loader.clone();
    spawn(notices, MessageSource::Files, "paste", move || {
        let mut clipboard = arboard::Clipboard::new().map_err(|e| format!("clipboard: {e}"))?;
        let data = clipboard
            .get_image()
            .map_err(|_| "the clipboard holds no image".to_string())?;
        let size = [data.width, data.height];
        store_pasted(&loader, target, &pasted_dir, size, data.bytes.into_owned())
    });
}

/// Pastes RGBA pixels the window already has (Ctrl+V, which egui turns into an image
/// paste event) into `target`.
pub fn paste_pixels(
    notices: &Notices,
    loader: &Loader,
    target: Target,
    pasted_dir: PathBuf,
    image: &egui::ColorImage,
) {
    let loader = loader.clone();
    let size = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
    spawn(notices, MessageSource::Files, "paste", move || {
        store_pasted(&loader, target, &pasted_dir, size, rgba)
    });
}

/// Stores pasted pixels as PNG in `pasted_dir` (prompts refer to files) and loads
/// them into `target`.
fn store_pasted(
    loader: &Loader,
    target: Target,
    pasted_dir: &Path,
    [width, height]: [usize; 2],
    rgba: Vec<u8>,
) -> Result<Done, String> {
    let rgba = image::RgbaImage::from_raw(width as u32, height as u32, rgba)
        .ok_or("the pasted image has an unexpected size")?;
    let rgb = crate::pipeline::preprocess::to_rgb(&image::DynamicImage::ImageRgba8(rgba));
    let name = hex::encode(&Sha256::digest(rgb.as_raw())[..8]);
    let path = pasted_dir.join(format!("pasted-{name}.png"));
    save_plain_png(&path, &rgb).map_err(|e| e.to_string())?;
    loader.load(vec![path], target);
    // The loader reports the stored file.
    Ok(Done::Nothing)
}

/// Puts an image on the clipboard.
pub fn copy_image(notices: &Notices, source: ImageSource) {
    copy_image_with(notices, source, set_clipboard_image);
}

/// Copies through `set_clipboard` (the system clipboard, or the tests' stand-in).
fn copy_image_with(
    notices: &Notices,
    source: ImageSource,
    set_clipboard: fn(arboard::ImageData<'static>) -> Result<(), String>,
) {
    spawn(notices, MessageSource::Clipboard, "copy", move || {
        let image = source.load()?;
        let rgba = image::DynamicImage::ImageRgb8(image).to_rgba8();
        set_clipboard(arboard::ImageData {
            width: rgba.width() as usize,
            height: rgba.height() as usize,
            bytes: rgba.into_raw().into(),
        })?;
        Ok(Done::Said("Image copied".to_string()))
    });
}

fn set_clipboard_image(data: arboard::ImageData<'static>) -> Result<(), String> {
    let mut clipboard = arboard::Clipboard::new().map_err(|e| format!("clipboard: {e}"))?;
    clipboard
        .set_image(data)
        .map_err(|e| format!("clipboard: {e}"))
}

/// Asks where to save and writes a copy (with the settings when the source is a saved PNG).
pub fn save_as(notices: &Notices, source: ImageSource) {
    spawn(notices, MessageSource::SaveAs, "save-as", move || {
        let Some(target) = rfd::FileDialog::new()
            .add_filter("PNG", &["png"])
            .save_file()
        else {
            return Ok(Done::Nothing);
        };
        match &source {
            ImageSource::File(path) => {
                let bytes =
                    crate::files::read_regular_file(path, crate::files::MAX_IMAGE_FILE_BYTES)
                        .map_err(|e| e.to_string())?;
                crate::output::write_atomic(&target, &bytes).map_err(|e| e.to_string())?;
            }
            ImageSource::Memory(image) => {
                save_plain_png(&target, image).map_err(|e| e.to_string())?
            }
        }
        Ok(Done::Said(format!("Saved {}", target.display())))
    });
}

/// Opens `dir` in the system file manager.
pub fn open_folder(notices: &Notices, dir: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    let started = Instant::now();
    let notice = match std::process::Command::new(opener).arg(dir).spawn() {
        Ok(_) => Notice::Succeeded {
            source: MessageSource::OpenFolder,
            started,
            said: None,
        },
        Err(error) => Notice::Show(Message::error(
            MessageSource::OpenFolder,
            format!("cannot open {}: {error}", dir.display()),
        )),
    };
    notices.post(notice);
}

/// Composes the labelled grid and saves it into `dir`.
pub fn save_grid(
    notices: &Notices,
    cells: Vec<(String, Arc<RgbImage>)>,
    dir: PathBuf,
    stem: String,
) {
    let fonts = egui::FontDefinitions::default();
    let font = fonts
        .font_data
        .get("Ubuntu-Light")
        .or_else(|| fonts.font_data.values().next())
        .map(|data| (*data.font).as_ref().to_vec());
    spawn(notices, MessageSource::Grid, "save-grid", move || {
        let font = font.ok_or("no font to draw the labels")?;
        let refs: Vec<(String, &RgbImage)> =
            cells.iter().map(|(l, i)| (l.clone(), i.as_ref())).collect();
        let grid = labelled_row(&refs, &font)?;
        let path = dir.join(format!("{stem}.png"));
        save_plain_png(&path, &grid).map_err(|e| e.to_string())?;
        Ok(Done::Said(format!("Grid saved to {}", path.display())))
    });
}

/// Lists the model files of a ComfyUI/A1111 folder into `found`.
pub fn scan_models_dir(
    notices: &Notices,
    dir: PathBuf,
    found: Sender<Vec<crate::weights::local::LocalModel>>,
) {
    let (thread_notices, source) = (notices.clone(), MessageSource::ModelsFolder);
    spawn(notices, source, "scan-models", move || {
        let models = crate::weights::local::scan(&dir).map_err(|e| e.to_string())?;
        if models.is_empty() {
            let text = format!("No model files found in {}", dir.display());
            let warning = Message::warning(source, text);
            thread_notices.post(Notice::Show(warning));
            return Ok(Done::Nothing);
        }
        // The window owns the receiver for as long as it lives.
        let _ = found.send(models);
        // The found files show in the Models section.
        Ok(Done::Quietly)
    });
}

#[cfg(test)]
mod tests {
    use super::super::messages::MessageKind;
    use super::*;

    /// Files the window loads (drops, Add..., restored settings) go through the bounded
    /// reader: a folder or a device is refused by kind, naming the path.
    #[test]
    fn a_dropped_path_that_is_not_a_regular_file_is_refused_by_kind() {
        let scratch = crate::scratch::ScratchDir::new("tasks-folder");
        let error = ImageSource::File(scratch.path().to_path_buf())
            .load()
            .err()
            .unwrap_or_default();
        assert!(error.contains("not a regular file (a folder)"), "{error}");
        assert!(
            error.contains(&scratch.path().display().to_string()),
            "{error}"
        );
    }

    /// Delivers notices into `messages` until one of `kind` is shown (or ten seconds pass).
    fn wait_for(notices: &Notices, messages: &mut Messages, kind: MessageKind) {
        let started = Instant::now();
        while !messages.shown().any(|m| m.kind == kind) {
            assert!(started.elapsed().as_secs() < 10, "{messages:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
            notices.deliver(messages);
        }
    }

    #[test]
    fn image_copied_is_a_notice_and_takes_the_failed_copy_away() {
        let notices = Notices::new(&egui::Context::default());
        let mut messages = Messages::default();
        let image = ImageSource::Memory(Arc::new(RgbImage::new(2, 2)));
        copy_image_with(&notices, image.clone(), |_| Err("clipboard: busy".into()));
        wait_for(&notices, &mut messages, MessageKind::Error);
        // A retry comes a moment after the failure it answers.
        std::thread::sleep(std::time::Duration::from_millis(2));
        copy_image_with(&notices, image, |_| Ok(()));
        wait_for(&notices, &mut messages, MessageKind::Info);
        let shown: Vec<_> = messages
            .shown()
            .map(|m| (m.kind, m.source, m.text.as_str()))
            .collect();
        assert_eq!(
            shown,
            [(MessageKind::Info, MessageSource::Clipboard, "Image copied")]
        );
    }
}
