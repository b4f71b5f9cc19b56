//! Single-file SD 1.5 checkpoints (`.safetensors` / `.ckpt` as A1111 and ComfyUI
//! use them) and single-file VAEs, split into diffusers-named components.

use std::path::Path;

use candle_core::DType;

use super::TensorFile;
use super::ldm::{
    TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, extract_component, unet_key_map, vae_key_map,
};
use super::pickle::load_weights_file;
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;
use crate::{MinusError, Result};

/// The components of a single-file checkpoint, with diffusers key names.
pub struct CheckpointParts {
    pub unet: TensorFile,
    pub text_encoder: TensorFile,
    /// `None` when the checkpoint carries no VAE (a separate one must be given).
    pub vae: Option<TensorFile>,
}

fn bad(path: &Path, message: &str) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads a single-file checkpoint (float tensors cast to `dtype`, in host memory)
/// and splits it into UNet, text encoder and VAE.
pub fn load_checkpoint(
    path: &Path,
    unet: &UNetConfig,
    vae: &VaeConfig,
    dtype: DType,
) -> Result<CheckpointParts> {
    let file = load_weights_file(path, dtype)?;
    if file.keys().any(|k| k.starts_with("conditioner.embedders.")) {
        return Err(bad(
            path,
            "this is an SDXL checkpoint; Minus needs an SD 1.5 model",
        ));
    }
    let first_unet_key = format!("{UNET_PREFIX}input_blocks.0.0.weight");
    if !file.contains(&first_unet_key) {
        return Err(bad(
            path,
            "not an SD 1.5 checkpoint (no `model.diffusion_model.*` UNet tensors)",
        ));
    }
    let tensors = file.tensors();
    let component = |prefix: &str, map| -> Result<TensorFile> {
        let renamed = extract_component(tensors, prefix, map).map_err(|e| file.load_error(e))?;
        Ok(TensorFile::from_tensors(path, renamed))
    };
    let unet_map = unet_key_map(unet);
    let vae_map = vae_key_map(vae.block_out_channels.len(), vae.layers_per_block);
    let has_vae = file.keys().any(|k| k.starts_with(VAE_PREFIX));
    Ok(CheckpointParts {
        unet: component(UNET_PREFIX, Some(&unet_map))?,
        text_encoder: component(TEXT_PREFIX, None)?,
        vae: if has_vae {
            Some(component(VAE_PREFIX, Some(&vae_map))?)
        } else {
            None
        },
    })
}

/// Reads a VAE weights file in diffusers names, LDM names, or LDM names under the
/// checkpoint prefix (a VAE extracted from, or meant for, a single file).
pub fn load_vae_file(path: &Path, vae: &VaeConfig, dtype: DType) -> Result<TensorFile> {
    let file = load_weights_file(path, dtype)?;
    if file.contains("decoder.mid_block.resnets.0.norm1.weight") {
        return Ok(file);
    }
    let prefix = if file.keys().any(|k| k.starts_with(VAE_PREFIX)) {
        VAE_PREFIX
    } else if file.contains("decoder.mid.block_1.norm1.weight") {
        ""
    } else {
        return Err(bad(path, "not a VAE file (no decoder tensors)"));
    };
    let map = vae_key_map(vae.block_out_channels.len(), vae.layers_per_block);
    let renamed =
        extract_component(file.tensors(), prefix, Some(&map)).map_err(|e| file.load_error(e))?;
    Ok(TensorFile::from_tensors(path, renamed))
}
