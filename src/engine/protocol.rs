//! The typed messages between the UI and the engine thread.

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;

use crate::device::{DTypeChoice, DeviceChoice};
use crate::pipeline::{PreviewKind, Request};
use crate::weights::ModelPaths;
use crate::weights::hub::Hub;

/// Identifies one queued generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// Where and how to load models.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSettings {
    pub paths: ModelPaths,
    pub device: DeviceChoice,
    /// `None` for the device's default.
    pub dtype: Option<DTypeChoice>,
}

/// UI → engine.
#[derive(Debug, Clone)]
pub enum Command {
    /// Load (or switch) models; queued jobs wait for it.
    LoadModels(LoadSettings),
    /// Queue a generation; its images are saved into `output_dir` when given.
    Generate {
        job: JobId,
        request: Request,
        output_dir: Option<PathBuf>,
    },
    /// Cancel a queued or running job.
    Cancel(JobId),
    /// How step previews are drawn from now on (the running job's next step included).
    SetPreview(PreviewKind),
    /// Download the first-run defaults (model, VAE, image encoder, `adapter`) from `hub`.
    DownloadDefaults { hub: Hub, adapter: String },
    /// Stop a running download (what is on disk is resumed next time).
    CancelDownload,
    /// Stop the thread.
    Shutdown,
}

/// Engine → UI.
#[derive(Debug, Clone)]
pub enum Event {
    ModelsLoading,
    ModelsLoaded {
        elapsed_secs: f64,
        device: String,
    },
    ModelsFailed {
        error: String,
    },
    /// Bytes of `file` (of catalogue entry `name`) on disk so far.
    ModelProgress {
        name: String,
        file: String,
        bytes: u64,
        total: Option<u64>,
        bytes_per_sec: f64,
    },
    /// Every default is in the cache; these paths load them.
    DownloadsReady {
        paths: ModelPaths,
    },
    DownloadFailed {
        error: String,
    },
    Queued {
        job: JobId,
    },
    Started {
        job: JobId,
    },
    Step {
        job: JobId,
        /// 1-based count of finished steps.
        step: usize,
        total: usize,
        preview: Arc<RgbImage>,
        /// How `preview` was drawn (the latent colours when TAESD is not loaded).
        preview_kind: PreviewKind,
        elapsed_secs: f64,
    },
    Finished {
        job: JobId,
        images: Vec<Arc<RgbImage>>,
        /// The request as run (image hashes filled in).
        request: Box<Request>,
        /// Where each image was saved, or why it could not be.
        saved: Vec<Result<PathBuf, String>>,
        elapsed_secs: f64,
    },
    Failed {
        job: JobId,
        error: String,
    },
    Cancelled {
        job: JobId,
    },
}
