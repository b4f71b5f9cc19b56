//! Reading and decoding files off the UI thread: dropped prompt images, and the
//! saved results that make up the gallery.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};
use image::RgbImage;

use crate::files::{MAX_IMAGE_FILE_BYTES, read_regular_file};
use crate::output::read_settings;
use crate::pipeline::Request;
use crate::pipeline::preprocess::decode_rgb;

/// Where a loaded file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Positive,
    Negative,
    /// Dropped outside the panes: restore settings if it carries them, else a positive prompt.
    Window,
    /// A saved result found in the output folder.
    Gallery,
}

/// The image and its embedded request, or why the file could not be read.
pub type LoadResult = Result<(RgbImage, Option<Request>), String>;

/// A decoded file.
pub struct Loaded {
    pub target: Target,
    pub path: PathBuf,
    /// The image and its embedded request, or why it could not be read.
    pub result: LoadResult,
    /// Why embedded settings were not used (too large, corrupt, invalid), for the user.
    pub note: Option<String>,
    /// When the load was asked for: problems reported before then were about
    /// earlier attempts.
    pub requested: Instant,
}

/// Background file loading; results are polled every frame.
#[derive(Clone)]
pub struct Loader {
    sender: Sender<Loaded>,
    receiver: Receiver<Loaded>,
    repaint: egui::Context,
}

/// Reads and decodes one file; a settings text that cannot be used becomes a note and
/// the image is still shown.
fn read(path: &Path) -> (LoadResult, Option<String>) {
    let bytes = match read_regular_file(path, MAX_IMAGE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(error) => return (Err(error.to_string()), None),
    };
    let image = match decode_rgb(&bytes) {
        Ok(image) => image,
        Err(e) => return (Err(format!("{}: not an image ({e})", path.display())), None),
    };
    match read_settings(&bytes) {
        Ok(request) => (Ok((image, request)), None),
        Err(note) => (
            Ok((image, None)),
            Some(format!("{}: {note}", path.display())),
        ),
    }
}

impl Loader {
    /// A loader that wakes `ctx` when files are ready.
    pub fn new(ctx: &egui::Context) -> Self {
        let (sender, receiver) = unbounded();
        Self {
            sender,
            receiver,
            repaint: ctx.clone(),
        }
    }

    /// Loads `paths` on a background thread.
    pub fn load(&self, paths: Vec<PathBuf>, target: Target) {
        let sender = self.sender.clone();
        let ctx = self.repaint.clone();
        let requested = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("minus-file-loader".to_string())
            .spawn(move || {
                for path in paths {
                    let (result, note) = read(&path);
                    if sender
                        .send(Loaded {
                            target,
                            path,
                            result,
                            note,
                            requested,
                        })
                        .is_err()
                    {
                        break;
                    }
                    ctx.request_repaint();
                }
            });
        if let Err(error) = spawned {
            eprintln!("cannot start the file loader: {error}");
        }
    }

    /// Loads the newest saved results of `dir` (newest first).
    pub fn scan_gallery(&self, dir: &Path, limit: usize) {
        let (loader, dir) = (self.clone(), dir.to_path_buf());
        // Listing a large (or network) folder must not hold up the first frame.
        let spawned = std::thread::Builder::new()
            .name("minus-gallery-scan".to_string())
            .spawn(move || {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return;
                };
                let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
                    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
                    .collect();
                // Oldest first, so that inserting each at the front leaves the newest first.
                files.sort();
                let skip = files.len().saturating_sub(limit);
                loader.load(
                    files.into_iter().skip(skip).map(|(_, p)| p).collect(),
                    Target::Gallery,
                );
            });
        if let Err(error) = spawned {
            eprintln!("cannot start the gallery scan: {error}");
        }
    }

    /// Everything loaded since the last call.
    pub fn poll(&self) -> Vec<Loaded> {
        self.receiver.try_iter().collect()
    }
}
