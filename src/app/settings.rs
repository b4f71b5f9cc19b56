//! Everything the window remembers between launches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::browse::PathField;
use super::sweep::SweepSettings;
use crate::device::DeviceChoice;
use crate::engine::LoadSettings;
use crate::pipeline::{MaskFile, PreviewKind, Request};
use crate::weights::ModelPaths;
use crate::weights::lora::LoraChoice;

/// The models chosen in the Models section, and where to run them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSettings {
    #[serde(flatten)]
    pub paths: ModelPaths,
    #[serde(deserialize_with = "device_or_auto")]
    pub device: DeviceChoice,
    /// A ComfyUI/A1111 install (or its `models` folder) to pick files from.
    pub models_dir: String,
    /// A folder of LoRA files to list (besides the install's `models/loras`).
    pub lora_dir: Option<PathBuf>,
}

impl ModelSettings {
    /// What the engine needs to load these models; `None` until a model is chosen.
    pub fn load_settings(&self) -> Option<LoadSettings> {
        self.paths.is_set().then(|| LoadSettings {
            paths: self.paths.clone(),
            device: self.device,
            dtype: None,
        })
    }
}

/// Earlier versions saved the device as free text: anything unknown means `auto`.
fn device_or_auto<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<DeviceChoice, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok(DeviceChoice::ALL
        .into_iter()
        .find(|choice| choice.name() == text.trim())
        .unwrap_or_default())
}

/// One prompt image in a pane, as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPromptImage {
    pub path: PathBuf,
    pub weight: f64,
    pub enabled: bool,
    /// Where the image acts (none: everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskFile>,
    #[serde(
        default = "crate::pipeline::request::yes",
        skip_serializing_if = "crate::pipeline::request::is_yes"
    )]
    pub mask_enabled: bool,
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
    /// How the live preview is drawn.
    pub preview: PreviewKind,
}

impl Settings {
    /// Puts a path chosen with Browse... into its field; true when it changes the
    /// models (so they reload).
    pub fn set_path(&mut self, field: PathField, path: PathBuf) -> bool {
        let paths = &mut self.models.paths;
        match field {
            PathField::Model => paths.model = path,
            PathField::Vae => paths.vae = Some(path),
            PathField::IpAdapter => paths.ip_adapter = Some(path),
            PathField::ImageEncoder => paths.image_encoder = Some(path),
            PathField::Lora => paths.loras.push(LoraChoice::new(path, 1.0)),
            PathField::LoraDir => {
                self.models.lora_dir = Some(path);
                return false;
            }
            PathField::ModelsDir => {
                self.models.models_dir = path.display().to_string();
                return false;
            }
            PathField::OutputDir => {
                self.output_dir = Some(path);
                return false;
            }
        }
        true
    }
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
            preview: PreviewKind::default(),
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
