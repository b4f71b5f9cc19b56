//! Single-file SD 1.5 and SDXL checkpoints (`.safetensors` / `.ckpt` as A1111 and
//! ComfyUI use them) and single-file VAEs, split into diffusers-named components.

use std::path::Path;

use candle_core::DType;

use super::TensorFile;
use super::ldm::{
    TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, extract_component, unet_key_map, vae_key_map,
};
use super::pickle::load_weights_file;
use super::sgm::{CONDITIONER_PREFIX, FIRST_TEXT_PREFIX, open_clip_text_encoder};
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;
use crate::{MinusError, Result};

/// The components of a single-file checkpoint, with diffusers key names.
pub struct CheckpointParts {
    pub unet: TensorFile,
    pub text_encoder: TensorFile,
    /// SDXL's second text encoder, in transformers' names; `None` for SD 1.5.
    pub text_encoder_2: Option<TensorFile>,
    /// `None` when the checkpoint carries no VAE (a separate one must be given).
    pub vae: Option<TensorFile>,
}

/// A single-file checkpoint read into host memory, before it is split.
pub struct Checkpoint {
    file: TensorFile,
    sdxl: bool,
}

fn bad(path: &Path, message: &str) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads a single-file checkpoint (float tensors cast to `dtype`, in host memory)
/// and tells SD 1.5 from SDXL by its text encoders' names.
pub fn read_checkpoint(path: &Path, dtype: DType) -> Result<Checkpoint> {
    let file = load_weights_file(path, dtype)?;
    let sdxl = file.keys().any(|k| k.starts_with(CONDITIONER_PREFIX));
    let first_unet_key = format!("{UNET_PREFIX}input_blocks.0.0.weight");
    if !file.contains(&first_unet_key) {
        return Err(bad(
            path,
            if sdxl {
                "an SDXL checkpoint without its UNet (no `model.diffusion_model.*` tensors)"
            } else {
                "not an SD 1.5 checkpoint (no `model.diffusion_model.*` UNet tensors)"
            },
        ));
    }
    Ok(Checkpoint { file, sdxl })
}

impl Checkpoint {
    /// Whether the file is an SDXL checkpoint (two text encoders).
    pub fn is_sdxl(&self) -> bool {
        self.sdxl
    }

    /// Splits the file into UNet, text encoder(s) and VAE; the file's tensors are
    /// freed with it.
    pub fn split(self, unet: &UNetConfig, vae: &VaeConfig) -> Result<CheckpointParts> {
        let file = &self.file;
        let path = file.path();
        let tensors = file.tensors();
        let component = |prefix: &str, map| -> Result<TensorFile> {
            let renamed =
                extract_component(tensors, prefix, map).map_err(|e| file.load_error(e))?;
            Ok(TensorFile::from_tensors(path, renamed))
        };
        let unet_map = unet_key_map(unet);
        let vae_map = vae_key_map(vae.block_out_channels.len(), vae.layers_per_block);
        let has_vae = file.keys().any(|k| k.starts_with(VAE_PREFIX));
        let (text_encoder, text_encoder_2) = if self.sdxl {
            let second = open_clip_text_encoder(file)?;
            (component(FIRST_TEXT_PREFIX, None)?, Some(second))
        } else {
            (component(TEXT_PREFIX, None)?, None)
        };
        Ok(CheckpointParts {
            unet: component(UNET_PREFIX, Some(&unet_map))?,
            text_encoder,
            text_encoder_2,
            vae: if has_vae {
                Some(component(VAE_PREFIX, Some(&vae_map))?)
            } else {
                None
            },
        })
    }
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
