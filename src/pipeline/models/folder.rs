//! A diffusers pipeline folder, SD 1.5's or SDXL's (with `text_encoder_2/`, its
//! tokenizer's padding, `model_index.json` and the scheduler's spacing).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::lora_networks::SecondTextConfig;
use super::{CoreModels, LoraNetworks, load_vae};
use crate::models::clip_text::ClipTextConfig;
use crate::models::sdxl_text::SecondTextEncoder;
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::UNetConfig;
use crate::schedulers::NoiseSchedule;
use crate::weights::ModelPaths;
use crate::weights::config::{read_config, read_json};
use crate::weights::diffusers::load_component;
use crate::{MinusError, Result};

pub(super) fn load_diffusers_folder(
    paths: &ModelPaths,
    loras: &mut LoraNetworks,
    device: &Device,
    dtype: DType,
) -> Result<CoreModels> {
    let dir = &paths.model;
    let text = load_component(&dir.join("text_encoder"), dtype)?;
    let text_config = read_config(&text.config_path)?;
    let text_encoder = loras.text_encoder(text.weights, text_config, device, dtype)?;
    let unet_component = load_component(&dir.join("unet"), dtype)?;
    let unet_config: UNetConfig = read_config(&unet_component.config_path)?;
    let sdxl = unet_config.is_sdxl();
    let text_encoder_2 = sdxl
        .then(|| load_second_text_encoder(dir, loras, device, dtype))
        .transpose()?;
    let unet = loras.unet(unet_component.weights, unet_config, device, dtype)?;
    // The folder's own VAE is only needed (and required) when no other is given.
    let vae = match paths.vae {
        Some(_) => None,
        None => Some(load_vae(&dir.join("vae"), device, dtype, sdxl)?),
    };
    Ok(CoreModels {
        text_encoder,
        text_encoder_2,
        unet,
        vae,
        zero_empty_negative: sdxl && force_zeros_for_empty_prompt(dir)?,
        schedule: if sdxl {
            sdxl_schedule(dir)?
        } else {
            NoiseSchedule::sd15()
        },
    })
}

/// SDXL's noise schedule, spaced as the folder's `scheduler/scheduler_config.json`
/// says ("leading", SDXL's own, when the file or the field is missing). SD 1.5 keeps
/// the built-in schedule whatever its folder says, so its pictures stay as they were.
pub(super) fn sdxl_schedule(dir: &Path) -> Result<NoiseSchedule> {
    let path = dir.join("scheduler").join("scheduler_config.json");
    let spacing = if path.is_file() {
        let config: serde_json::Value = read_json(&path)?;
        config["timestep_spacing"]
            .as_str()
            .unwrap_or("leading")
            .to_string()
    } else {
        "leading".to_string()
    };
    Ok(NoiseSchedule {
        leading_spacing: spacing == "leading",
        ..NoiseSchedule::sdxl()
    })
}

/// SDXL's `text_encoder_2/`, padding as `tokenizer_2/` says, with the LoRAs merged in.
fn load_second_text_encoder(
    dir: &Path,
    loras: &mut LoraNetworks,
    device: &Device,
    dtype: DType,
) -> Result<SecondTextEncoder> {
    let pad_token = second_pad_token(&dir.join("tokenizer_2"))?;
    let component = load_component(&dir.join("text_encoder_2"), dtype)?;
    let text: ClipTextConfig = read_config(&component.config_path)?;
    let config = SecondTextConfig { text, pad_token };
    loras.text_encoder_2(component.weights, config, device, dtype)
}

/// The id `tokenizer_2/special_tokens_map.json` pads with (`!` when the file or the
/// entry is missing, as in SDXL's own folder).
pub(super) fn second_pad_token(tokenizer_dir: &Path) -> Result<u32> {
    let path = tokenizer_dir.join("special_tokens_map.json");
    let pad = if path.is_file() {
        let map: serde_json::Value = read_json(&path)?;
        match &map["pad_token"] {
            serde_json::Value::String(token) => token.clone(),
            other => other["content"].as_str().unwrap_or(SDXL_PAD).to_string(),
        }
    } else {
        SDXL_PAD.to_string()
    };
    pad_token_id(&pad, path)
}

/// The token SDXL's second tokenizer pads with.
pub(super) const SDXL_PAD: &str = "!";

/// The id of `pad`, or an error naming `origin`, where it was read.
pub(super) fn pad_token_id(pad: &str, origin: PathBuf) -> Result<u32> {
    ClipTokenizer::shared()
        .token_id(pad)
        .ok_or_else(|| MinusError::BadConfig {
            path: origin,
            message: format!("pad_token `{pad}` is not in CLIP's vocabulary"),
        })
}

/// `force_zeros_for_empty_prompt` of the folder's `model_index.json` (on by default,
/// as in diffusers' SDXL pipeline).
pub(super) fn force_zeros_for_empty_prompt(dir: &Path) -> Result<bool> {
    let path = dir.join("model_index.json");
    if !path.is_file() {
        return Ok(true);
    }
    let index: serde_json::Value = read_json(&path)?;
    Ok(index["force_zeros_for_empty_prompt"]
        .as_bool()
        .unwrap_or(true))
}
