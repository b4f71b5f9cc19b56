//! The typed messages between the UI and the engine thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::device::{DTypeChoice, DeviceChoice};
use crate::models::family::ModelFamily;
use crate::pipeline::{Models, Phase, PreviewKind, Request};
use crate::weights::ModelPaths;
use crate::weights::catalogue::Catalogue;
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

/// What the engine has loaded, named for the window's at-a-glance list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedModels {
    /// The model's folder or file name.
    pub model: String,
    /// SD 1.5 or SDXL, as the model's files say.
    pub family: ModelFamily,
    /// The separate VAE's name, `None` when the model's own is used.
    pub vae: Option<String>,
    /// The adapter's catalogue label ("Plus", ...) or file name; `None` without one.
    pub adapter: Option<String>,
    pub image_encoder: Option<String>,
    /// "cpu", "cuda:0", ...
    pub device: String,
    /// "f32", "f16" or "bf16".
    pub dtype: String,
    /// TAESD loaded for previews; without it they use the latent colour map.
    pub taesd: bool,
    /// The LoRAs merged in: each one's name and strength.
    pub loras: Vec<(String, f64)>,
}

impl LoadedModels {
    /// Names what `paths` loaded as `models` on `device`.
    pub fn describe(paths: &ModelPaths, device: &str, models: &Models) -> Self {
        let adapter = paths.ip_adapter.as_deref().map(|path| {
            let label = Catalogue::built_in().ok().and_then(|c| {
                c.adapter_for_file(path)
                    .map(|e| e.display_name().to_string())
            });
            label.unwrap_or_else(|| file_name(path))
        });
        Self {
            model: file_name(&paths.model),
            family: models.family,
            vae: paths.vae.as_deref().map(file_name),
            adapter,
            image_encoder: paths.image_encoder.as_deref().map(file_name),
            device: device.to_string(),
            dtype: format!("{:?}", models.dtype).to_lowercase(),
            taesd: models.taesd.is_some(),
            loras: paths
                .loras
                .iter()
                .map(|lora| (lora.name(), lora.strength))
                .collect(),
        }
    }
}

/// The last part of `path` (a folder's or a file's name).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
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
    /// Download the catalogue entries `names` (e.g. the first-run defaults, or one
    /// adapter) from `hub` into its cache, beside the queue.
    Download { hub: Hub, names: Vec<String> },
    /// Stop a running download (what is on disk is resumed next time).
    CancelDownload,
    /// The window has shown the last step's preview: the next step may take one.
    PreviewShown,
    /// Stop the thread.
    Shutdown,
}

/// Engine → UI.
#[derive(Debug, Clone)]
pub enum Event {
    ModelsLoading,
    ModelsLoaded {
        elapsed_secs: f64,
        loaded: LoadedModels,
        /// Why the run is on the CPU although `auto` found a GPU, if it is.
        fallback: Option<String>,
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
    /// Every file of these catalogue entries is in the hub cache.
    Downloaded {
        names: Vec<String>,
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
    /// The running job entered a stage outside its denoising steps.
    Phase {
        job: JobId,
        phase: Phase,
    },
    Step {
        job: JobId,
        /// 1-based count of finished steps.
        step: usize,
        total: usize,
        /// The step's preview and how it was drawn (the latent colours when TAESD is
        /// not loaded); `None` while the window has not shown the last preview: taking
        /// one waits for the device and, on Metal, frees its pooled buffers.
        preview: Option<(Arc<RgbImage>, PreviewKind)>,
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
