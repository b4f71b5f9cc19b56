//! Single-file checkpoints (A1111/ComfyUI), SD 1.5's LDM layout or SDXL's SGM one, with
//! built-in configs or those of a configs folder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::folder::{
    SDXL_PAD, force_zeros_for_empty_prompt, pad_token_id, sdxl_schedule, second_pad_token,
};
use super::lora_networks::SecondTextConfig;
use super::{
    CoreModels, LoraNetworks, SD15_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG,
    SDXL_TEXT_2_CONFIG, SDXL_TEXT_CONFIG, SDXL_UNET_CONFIG, SDXL_VAE_CONFIG, build_vae,
    component_config,
};
use crate::models::clip_text::ClipTextConfig;
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;
use crate::schedulers::NoiseSchedule;
use crate::weights::ModelPaths;
use crate::weights::single_file::read_checkpoint;
use crate::{MinusError, Result};

/// The configurations of a single file's networks.
struct SingleFileConfigs {
    unet: UNetConfig,
    vae: VaeConfig,
    text: ClipTextConfig,
    /// SDXL's second text encoder's; `None` for SD 1.5.
    text_2: Option<ClipTextConfig>,
}

impl SingleFileConfigs {
    /// From the `configs` folder (whichever family its UNet config is), or else the
    /// built-in ones of SDXL or SD 1.5.
    fn read(configs: Option<&Path>, sdxl: bool) -> Result<Self> {
        let [unet, vae, text] = if sdxl {
            [SDXL_UNET_CONFIG, SDXL_VAE_CONFIG, SDXL_TEXT_CONFIG]
        } else {
            [SD15_UNET_CONFIG, SD15_VAE_CONFIG, SD15_TEXT_CONFIG]
        };
        let unet: UNetConfig = component_config(configs, "unet", unet)?;
        let vae = component_config(configs, "vae", vae)?;
        let text = component_config(configs, "text_encoder", text)?;
        let text_2 = unet
            .is_sdxl()
            .then(|| component_config(configs, "text_encoder_2", SDXL_TEXT_2_CONFIG))
            .transpose()?;
        Ok(Self {
            unet,
            vae,
            text,
            text_2,
        })
    }
}

pub(super) fn load_single_file(
    paths: &ModelPaths,
    loras: &mut LoraNetworks,
    device: &Device,
    dtype: DType,
) -> Result<CoreModels> {
    let configs_dir = paths.configs.as_deref();
    // A configs folder is read before the (large) file, so a wrong one fails at once.
    let given = configs_dir
        .map(|dir| SingleFileConfigs::read(Some(dir), false))
        .transpose()?;
    let checkpoint = read_checkpoint(&paths.model, dtype)?;
    let sdxl = checkpoint.is_sdxl();
    let configs = match given {
        Some(configs) => configs,
        None => SingleFileConfigs::read(None, sdxl)?,
    };
    if let (Some(dir), true) = (configs_dir, configs.text_2.is_some() != sdxl) {
        return Err(family_mismatch(dir, &paths.model, sdxl));
    }
    let parts = checkpoint.split(&configs.unet, &configs.vae)?;
    let text_encoder = loras.text_encoder(parts.text_encoder, configs.text, device, dtype)?;
    let text_encoder_2 = match (parts.text_encoder_2, configs.text_2) {
        (Some(file), Some(text)) => {
            let pad_token = single_file_pad_token(configs_dir)?;
            let config = SecondTextConfig { text, pad_token };
            Some(loras.text_encoder_2(file, config, device, dtype)?)
        }
        _ => None,
    };
    let unet = loras.unet(parts.unet, configs.unet, device, dtype)?;
    let vae = match (&paths.vae, parts.vae) {
        (None, Some(vae)) => Some(build_vae(vae, &configs.vae, device, dtype)?),
        _ => None,
    };
    let (zero_empty_negative, schedule) = match (sdxl, configs_dir) {
        (false, _) => (false, NoiseSchedule::sd15()),
        (true, None) => (true, NoiseSchedule::sdxl()),
        (true, Some(dir)) => (force_zeros_for_empty_prompt(dir)?, sdxl_schedule(dir)?),
    };
    Ok(CoreModels {
        text_encoder,
        text_encoder_2,
        unet,
        vae,
        zero_empty_negative,
        schedule,
    })
}

/// The one-line error for a configs folder of the other family than the checkpoint.
fn family_mismatch(configs: &Path, checkpoint: &Path, sdxl: bool) -> MinusError {
    let [file, folder] = if sdxl {
        ["SDXL", "SD 1.5"]
    } else {
        ["SD 1.5", "SDXL"]
    };
    let message = format!(
        "an {folder} UNet, but `{}` is an {file} checkpoint",
        checkpoint.display()
    );
    let path = configs.join("unet").join("config.json");
    MinusError::BadConfig { path, message }
}

/// The id an SDXL single file's second encoder pads with: as the configs folder's
/// `tokenizer_2/` says, or `!` (SDXL's) without one.
fn single_file_pad_token(configs: Option<&Path>) -> Result<u32> {
    match configs {
        Some(dir) => second_pad_token(&dir.join("tokenizer_2")),
        None => pad_token_id(SDXL_PAD, PathBuf::from("built-in tokenizer")),
    }
}
