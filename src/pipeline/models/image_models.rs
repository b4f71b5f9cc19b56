//! The image side: the IP-Adapter and its CLIP image encoder, checked against each
//! other and against the UNet.

use std::path::Path;

use candle_core::{DType, Device};

use super::{ImagePromptModels, encoder_identity};
use crate::models::clip_vision::{ClipVisionConfig, ClipVisionModel};
use crate::models::ip_adapter::{ImageFeature, IpAdapter};
use crate::models::unet::UNet;
use crate::weights::diffusers::load_component;
use crate::weights::pickle::load_weights_file;
use crate::weights::shapes::{infer_ip_adapter_config, infer_vision_config, read_vision_config};
use crate::{MinusError, Result};

pub(super) fn load_image_models(
    adapter_path: &Path,
    encoder_dir: &Path,
    unet: &UNet,
    device: &Device,
    dtype: DType,
) -> Result<ImagePromptModels> {
    let adapter_file = load_weights_file(adapter_path, dtype)?;
    let adapter_config = infer_ip_adapter_config(&adapter_file)?;
    let adapter = IpAdapter::load(adapter_file.var_builder(dtype, device), &adapter_config)
        .map_err(|e| adapter_file.load_error(e))?;
    drop(adapter_file);
    let (file, config) = if encoder_dir.is_file() {
        // A ComfyUI-style `clip_vision/*.safetensors`: sizes come from a `config.json`
        // beside it, or else from the tensors.
        let file = load_weights_file(encoder_dir, dtype)?;
        let beside = encoder_dir.with_file_name("config.json");
        let config = if beside.is_file() {
            read_vision_config(&beside)?
        } else {
            infer_vision_config(&file)?
        };
        (file, config)
    } else {
        let component = load_component(encoder_dir, dtype)?;
        (
            component.weights,
            read_vision_config(&component.config_path)?,
        )
    };
    let encoder = ClipVisionModel::load(file.var_builder(dtype, device), &config)
        .map_err(|e| file.load_error(e))?;
    drop(file);
    check_compatible(adapter_path, &adapter, &config, unet)?;
    Ok(ImagePromptModels {
        encoder,
        adapter,
        id: encoder_identity(&[adapter_path, encoder_dir], device, dtype),
        device: device.clone(),
        dtype,
    })
}

/// " (ViT-H)"-style name of the CLIP image encoder whose `feature` is `dim` wide, or "".
fn encoder_name(feature: &str, dim: usize) -> &'static str {
    match (feature, dim) {
        ("projection_dim", 1024) | ("hidden_size", 1280) => " (CLIP ViT-H)",
        ("projection_dim", 1280) | ("hidden_size", 1664) => " (OpenCLIP ViT-bigG)",
        ("projection_dim", 768) | ("hidden_size", 1024) => " (CLIP ViT-L)",
        _ => "",
    }
}

/// " (SDXL)"-style name of the family whose cross-attention takes `dim`-wide tokens, or "".
fn family_name(dim: usize) -> &'static str {
    match dim {
        768 => " (SD 1.5)",
        2048 => " (SDXL)",
        _ => "",
    }
}

/// Explains in one line why an adapter does not fit the encoder or the UNet.
fn check_compatible(
    adapter_path: &Path,
    adapter: &IpAdapter,
    encoder: &ClipVisionConfig,
    unet: &UNet,
) -> Result<()> {
    let mismatch = |message: String| {
        Err(MinusError::BadWeights {
            path: adapter_path.to_path_buf(),
            message,
        })
    };
    let (feature_name, feature_dim) = match adapter.kind().image_feature() {
        ImageFeature::Embeds => ("projection_dim", encoder.projection_dim),
        ImageFeature::PenultimateHidden => ("hidden_size", encoder.hidden_size),
    };
    if adapter.image_feature_dim() != feature_dim {
        let wanted = adapter.image_feature_dim();
        return mismatch(format!(
            "the adapter expects {wanted}-dim image features{} but the image encoder's {feature_name} is {feature_dim}{}: use the image encoder the adapter was trained with",
            encoder_name(feature_name, wanted),
            encoder_name(feature_name, feature_dim)
        ));
    }
    let unet_cross = unet.config().cross_attention_dim;
    if adapter.cross_attention_dim() != unet_cross {
        let made = adapter.cross_attention_dim();
        return mismatch(format!(
            "the adapter makes {made}-dim tokens{} but the UNet's cross-attention takes {unet_cross}{}: use an adapter made for the loaded model's family",
            family_name(made),
            family_name(unet_cross)
        ));
    }
    let widths = unet.cross_attention_channels();
    let layers = adapter.attention_weights();
    if layers.len() != widths.len() {
        return mismatch(format!(
            "the adapter has {} attention layers, the UNet {}",
            layers.len(),
            widths.len()
        ));
    }
    for (i, (layer, &width)) in layers.iter().zip(widths).enumerate() {
        let out = layer.to_k.weight().dim(0)?;
        if out != width {
            return mismatch(format!(
                "`ip_adapter.{}.to_k_ip` has {out} outputs, the UNet layer has {width} channels",
                2 * i + 1
            ));
        }
    }
    Ok(())
}
