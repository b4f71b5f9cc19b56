//! Locating the parts of a diffusers pipeline folder and an image encoder folder.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::TensorFile;
use crate::{MinusError, Result};

/// The weight-file stems diffusers uses, in the order they are tried.
const WEIGHT_STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];
/// Variants tried after the plain file.
const VARIANTS: [&str; 3] = ["", ".fp16", ".bf16"];

/// Finds the safetensors weights file of one component folder (`unet/`, `vae/`, ...).
pub fn find_weights_file(component_dir: &Path) -> Result<PathBuf> {
    if !component_dir.is_dir() {
        return Err(MinusError::BadWeights {
            path: component_dir.to_path_buf(),
            message: "folder not found (expected a diffusers model folder)".to_string(),
        });
    }
    for variant in VARIANTS {
        for stem in WEIGHT_STEMS {
            let candidate = component_dir.join(format!("{stem}{variant}.safetensors"));
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(MinusError::BadWeights {
        path: component_dir.to_path_buf(),
        message: "no `.safetensors` weights file in this folder".to_string(),
    })
}

/// A component folder's `config.json` and its weights.
pub struct Component {
    pub config_path: PathBuf,
    pub weights: TensorFile,
}

/// Loads `config.json` path and weights of a component folder.
pub fn load_component(component_dir: &Path, device: &Device) -> Result<Component> {
    let weights_path = find_weights_file(component_dir)?;
    let config_path = component_dir.join("config.json");
    if !config_path.is_file() {
        return Err(MinusError::BadConfig {
            path: config_path,
            message: "file not found".to_string(),
        });
    }
    Ok(Component {
        config_path,
        weights: TensorFile::load_safetensors(&weights_path, device)?,
    })
}
