//! Everything the window remembers between launches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::sweep::SweepSettings;
use crate::engine::LoadSettings;
use crate::pipeline::{ModelPaths, Request};

/// Model locations as typed in the Models section (empty = not set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSettings {
    pub model: String,
    pub vae: String,
    pub ip_adapter: String,
    pub image_encoder: String,
    /// `auto`, `cpu`, `cuda` or `metal`.
    pub device: String,
    /// A ComfyUI/A1111 install (or its `models` folder) to pick files from.
    pub models_dir: String,
}

impl ModelSettings {
    /// Fills the fields from loadable paths (e.g. the downloaded defaults).
    pub fn set_paths(&mut self, paths: &ModelPaths) {
        let text = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        self.model = paths.model.display().to_string();
        self.vae = text(&paths.vae);
        self.ip_adapter = text(&paths.ip_adapter);
        self.image_encoder = text(&paths.image_encoder);
    }

    /// What the engine needs to load these models; `None` until a model folder is set.
    pub fn load_settings(&self) -> Option<LoadSettings> {
        let optional = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        Some(LoadSettings {
            paths: ModelPaths {
                model: optional(&self.model)?,
                vae: optional(&self.vae),
                ip_adapter: optional(&self.ip_adapter),
                image_encoder: optional(&self.image_encoder),
                configs: None,
            },
            device: if self.device.is_empty() {
                "auto".to_string()
            } else {
                self.device.clone()
            },
            dtype: None,
        })
    }
}

/// One prompt image in a pane, as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPromptImage {
    pub path: PathBuf,
    pub weight: f64,
    pub enabled: bool,
}

/// The persisted state of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Generation settings (its image lists are rebuilt from the panes).
    pub request: Request,
    pub positive: Vec<SavedPromptImage>,
    pub negative: Vec<SavedPromptImage>,
    pub models: ModelSettings,
    /// Where results are saved automatically; `None` turns autosave off.
    pub output_dir: Option<PathBuf>,
    /// Draw a new seed for every run.
    pub random_seed: bool,
    /// The last sweep set up.
    pub sweep: SweepSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request: Request::default(),
            positive: Vec::new(),
            negative: Vec::new(),
            models: ModelSettings::default(),
            output_dir: default_output_dir(),
            random_seed: true,
            sweep: SweepSettings::default(),
        }
    }
}

/// `~/Pictures/Minus`, or the data folder where there is no pictures folder.
pub fn default_output_dir() -> Option<PathBuf> {
    let user = directories::UserDirs::new();
    let pictures = user
        .as_ref()
        .and_then(|u| u.picture_dir().map(|p| p.join("Minus")));
    pictures.or_else(|| {
        directories::ProjectDirs::from("", "", "Minus").map(|p| p.data_dir().join("results"))
    })
}

/// eframe storage key of [`Settings`].
pub const STORAGE_KEY: &str = "minus-settings";
