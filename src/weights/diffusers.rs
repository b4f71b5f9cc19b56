//! Locating the parts of a diffusers pipeline folder and an image encoder folder.

use std::path::{Path, PathBuf};

use candle_core::DType;

use super::TensorFile;
use crate::{MinusError, Result};

/// The weight-file stems diffusers uses, in the order they are tried.
const WEIGHT_STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];
/// The variants tried, in order, for a run in each dtype: the file already in the
/// run's format first (half the bytes to read and no cast for an f16 run), then the
/// plain file.
fn variants(dtype: DType) -> [&'static str; 3] {
    match dtype {
        DType::F16 => [".fp16", "", ".bf16"],
        DType::BF16 => [".bf16", "", ".fp16"],
        _ => ["", ".fp16", ".bf16"],
    }
}

/// Finds the safetensors weights file of one component folder (`unet/`, `vae/`, ...)
/// for a run in `dtype`.
pub fn find_weights_file(component_dir: &Path, dtype: DType) -> Result<PathBuf> {
    if !component_dir.is_dir() {
        return Err(MinusError::BadWeights {
            path: component_dir.to_path_buf(),
            message: "folder not found (expected a diffusers model folder)".to_string(),
        });
    }
    for variant in variants(dtype) {
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

/// Loads `config.json` path and weights (float tensors cast to `dtype`, in host
/// memory) of a component folder.
pub fn load_component(component_dir: &Path, dtype: DType) -> Result<Component> {
    let weights_path = find_weights_file(component_dir, dtype)?;
    let config_path = component_dir.join("config.json");
    if !config_path.is_file() {
        return Err(MinusError::BadConfig {
            path: config_path,
            message: "file not found".to_string(),
        });
    }
    Ok(Component {
        config_path,
        weights: TensorFile::load_safetensors(&weights_path, dtype)?,
    })
}
