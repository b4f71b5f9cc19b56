//! Short jobs run on their own threads so the window never waits: file dialogs,
//! the clipboard, saving copies and grids, opening the output folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, unbounded};
use image::RgbImage;
use sha2::{Digest, Sha256};

use super::loader::{Loader, Target};
use crate::output::{grid::labelled_row, save_plain_png};

/// Extensions the image decoder reads.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "bmp", "PNG"];

/// Messages from background tasks to the window (shown like errors, dismissable).
#[derive(Clone)]
pub struct Notices {
    sender: Sender<String>,
    receiver: Receiver<String>,
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

    fn post(&self, message: String) {
        // The receiver lives as long as the window.
        let _ = self.sender.send(message);
        self.ctx.request_repaint();
    }

    /// Something a background thread calls to have the window look at its answer.
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let ctx = self.ctx.clone();
        move || ctx.request_repaint()
    }

    /// Everything posted since the last call.
    pub fn poll(&self) -> Vec<String> {
        self.receiver.try_iter().collect()
    }
}

/// Runs `task` on a named thread, posting its error (if any) as a notice.
pub fn spawn(
    notices: &Notices,
    name: &str,
    task: impl FnOnce() -> Result<Option<String>, String> + Send + 'static,
) {
    let thread_notices = notices.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("minus-{name}"))
        .spawn(move || match task() {
            Ok(Some(done)) => thread_notices.post(done),
            Ok(None) => {}
            Err(error) => thread_notices.post(error),
        });
    if let Err(error) = spawned {
        notices.post(format!("cannot start a background task: {error}"));
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
            Self::File(path) => image::open(path)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("{}: {e}", path.display())),
        }
    }
}

/// Opens the system file dialog and loads the picked images into `target`.
pub fn pick_images(notices: &Notices, loader: &Loader, target: Target) {
    let loader = loader.clone();
    spawn(notices, "file-dialog", move || {
        let picked = rfd::FileDialog::new()
            .add_filter("Images", &IMAGE_EXTENSIONS)
            .pick_files();
        if let Some(paths) = picked {
            loader.load(paths, target);
        }
        Ok(None)
    });
}

/// Takes an image from the clipboard and pastes it into `target` (the Paste buttons).
pub fn paste_image(notices: &Notices, loader: &Loader, target: Target, pasted_dir: PathBuf) {
    let loader = loader.clone();
    spawn(notices, "paste", move || {
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
    spawn(notices, "paste", move || {
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
) -> Result<Option<String>, String> {
    let rgba = image::RgbaImage::from_raw(width as u32, height as u32, rgba)
        .ok_or("the pasted image has an unexpected size")?;
    let rgb = crate::pipeline::preprocess::to_rgb(&image::DynamicImage::ImageRgba8(rgba));
    let name = hex::encode(&Sha256::digest(rgb.as_raw())[..8]);
    let path = pasted_dir.join(format!("pasted-{name}.png"));
    save_plain_png(&path, &rgb).map_err(|e| e.to_string())?;
    loader.load(vec![path], target);
    Ok(None)
}

/// Puts an image on the clipboard.
pub fn copy_image(notices: &Notices, source: ImageSource) {
    spawn(notices, "copy", move || {
        let image = source.load()?;
        let rgba = image::DynamicImage::ImageRgb8(image).to_rgba8();
        let data = arboard::ImageData {
            width: rgba.width() as usize,
            height: rgba.height() as usize,
            bytes: rgba.into_raw().into(),
        };
        let mut clipboard = arboard::Clipboard::new().map_err(|e| format!("clipboard: {e}"))?;
        clipboard
            .set_image(data)
            .map_err(|e| format!("clipboard: {e}"))?;
        Ok(Some("Image copied".to_string()))
    });
}

/// Asks where to save and writes a copy (with the settings when the source is a saved PNG).
pub fn save_as(notices: &Notices, source: ImageSource) {
    spawn(notices, "save-as", move || {
        let Some(target) = rfd::FileDialog::new()
            .add_filter("PNG", &["png"])
            .save_file()
        else {
            return Ok(None);
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
        Ok(Some(format!("Saved {}", target.display())))
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
    if let Err(error) = std::process::Command::new(opener).arg(dir).spawn() {
        notices.post(format!("cannot open {}: {error}", dir.display()));
    }
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
    spawn(notices, "save-grid", move || {
        let font = font.ok_or("no font to draw the labels")?;
        let refs: Vec<(String, &RgbImage)> =
            cells.iter().map(|(l, i)| (l.clone(), i.as_ref())).collect();
        let grid = labelled_row(&refs, &font)?;
        let path = dir.join(format!("{stem}.png"));
        save_plain_png(&path, &grid).map_err(|e| e.to_string())?;
        Ok(Some(format!("Grid saved to {}", path.display())))
    });
}

/// Lists the model files of a ComfyUI/A1111 folder into `found`.
pub fn scan_models_dir(
    notices: &Notices,
    dir: PathBuf,
    found: Sender<Vec<crate::weights::local::LocalModel>>,
) {
    let wake = notices.waker();
    spawn(notices, "scan-models", move || {
        let models = crate::weights::local::scan(&dir).map_err(|e| e.to_string())?;
        if models.is_empty() {
            return Ok(Some(format!("No model files found in {}", dir.display())));
        }
        // The window owns the receiver for as long as it lives.
        let _ = found.send(models);
        wake();
        Ok(None)
    });
}
