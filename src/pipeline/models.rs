//! Loading every network one generation needs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::models::clip_text::{ClipTextConfig, ClipTextModel};
use crate::models::clip_vision::{ClipVisionConfig, ClipVisionModel};
use crate::models::ip_adapter::{ImageFeature, IpAdapter};
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::{UNet, UNetConfig};
use crate::models::vae::{VaeConfig, VaeDecoder};
use crate::schedulers::NoiseSchedule;
use crate::weights::TensorFile;
use crate::weights::config::read_json;
use crate::weights::diffusers::load_component;
use crate::weights::pickle::load_weights_file;
use crate::weights::single_file::{load_checkpoint, load_vae_file};
use crate::{MinusError, Result};

/// Where the model files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPaths {
    /// A diffusers SD 1.5 folder (`unet/`, `vae/`, `text_encoder/`, ...) or a single-file
    /// checkpoint (`.safetensors` / `.ckpt`, LDM key names).
    pub model: PathBuf,
    /// A VAE (diffusers folder or single file) replacing the model's own.
    pub vae: Option<PathBuf>,
    /// An h94 IP-Adapter weights file (`.safetensors` or `.bin`).
    pub ip_adapter: Option<PathBuf>,
    /// The CLIP image encoder folder the adapter was trained with.
    pub image_encoder: Option<PathBuf>,
    /// A diffusers folder whose `config.json` files describe a single-file checkpoint
    /// of unusual size (default: SD 1.5's configuration).
    pub configs: Option<PathBuf>,
}

/// The image side of the networks: encoder and adapter, which only work together.
pub struct ImagePromptModels {
    pub encoder: ClipVisionModel,
    pub adapter: IpAdapter,
    /// Identifies the encoder/adapter pair in the embedding cache.
    pub id: String,
    pub device: Device,
    pub dtype: DType,
}

/// All loaded networks, on one device, in one dtype.
pub struct Models {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    /// Identifies the text encoder (its model's path) in the embedding cache.
    pub text_id: String,
    pub unet: UNet,
    pub vae: VaeDecoder,
    pub image: Option<ImagePromptModels>,
    pub schedule: NoiseSchedule,
    pub device: Device,
    pub dtype: DType,
}

/// SD 1.5's UNet configuration (diffusers format), for single files that come without one.
pub const SD15_UNET_CONFIG: &str = include_str!("../../resources/sd15/unet_config.json");
/// SD 1.5's VAE configuration (diffusers format).
pub const SD15_VAE_CONFIG: &str = include_str!("../../resources/sd15/vae_config.json");
/// SD 1.5's text encoder configuration (transformers format).
pub const SD15_TEXT_CONFIG: &str = include_str!("../../resources/sd15/text_encoder_config.json");

/// Reads `<configs>/<component>/config.json`, or the built-in SD 1.5 one.
fn component_config<T: serde::de::DeserializeOwned>(
    configs: Option<&Path>,
    component: &str,
    built_in: &str,
) -> Result<T> {
    match configs {
        Some(dir) => read_json(&dir.join(component).join("config.json")),
        None => serde_json::from_str(built_in).map_err(|e| MinusError::BadConfig {
            path: PathBuf::from(format!("built-in {component} config")),
            message: e.to_string(),
        }),
    }
}

impl Models {
    /// Loads the models named by `paths`.
    pub fn load(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<Self> {
        let (text_encoder, unet, own_vae) = if paths.model.is_file() {
            load_single_file(paths, device, dtype)?
        } else if paths.model.is_dir() {
            load_diffusers_folder(paths, device, dtype)?
        } else {
            return Err(MinusError::BadWeights {
                path: paths.model.clone(),
                message:
                    "model not found (expected a diffusers SD 1.5 folder or a checkpoint file)"
                        .to_string(),
            });
        };
        let vae = match (&paths.vae, own_vae) {
            (Some(path), _) if path.is_file() => {
                let config: VaeConfig =
                    component_config(paths.configs.as_deref(), "vae", SD15_VAE_CONFIG)?;
                build_vae(
                    &load_vae_file(path, &config, device)?,
                    &config,
                    device,
                    dtype,
                )?
            }
            (Some(dir), _) => load_vae(dir, device, dtype)?,
            (None, Some(vae)) => vae,
            (None, None) => {
                return Err(MinusError::BadWeights {
                    path: paths.model.clone(),
                    message: "the checkpoint has no VAE: give one (e.g. sd-vae-ft-mse) as the VAE"
                        .to_string(),
                });
            }
        };
        let image = match (&paths.ip_adapter, &paths.image_encoder) {
            (None, _) => None,
            (Some(adapter), Some(encoder)) => {
                Some(load_image_models(adapter, encoder, &unet, device, dtype)?)
            }
            (Some(adapter), None) => {
                return Err(MinusError::InvalidRequest(format!(
                    "{}: an IP-Adapter needs its CLIP image encoder folder too",
                    adapter.display()
                )));
            }
        };
        Ok(Self {
            tokenizer: ClipTokenizer::new(),
            text_encoder,
            text_id: paths.model.display().to_string(),
            unet,
            vae,
            image,
            schedule: NoiseSchedule::sd15(),
            device: device.clone(),
            dtype,
        })
    }
}

type CoreModels = (ClipTextModel, UNet, Option<VaeDecoder>);

fn load_diffusers_folder(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<CoreModels> {
    let dir = &paths.model;
    let text = load_component(&dir.join("text_encoder"), device)?;
    let text_encoder =
        build_text_encoder(&text.weights, &read_json(&text.config_path)?, device, dtype)?;
    let unet = load_component(&dir.join("unet"), device)?;
    let unet = build_unet(&unet.weights, &read_json(&unet.config_path)?, device, dtype)?;
    // The folder's own VAE is only needed (and required) when no other is given.
    let vae = match paths.vae {
        Some(_) => None,
        None => Some(load_vae(&dir.join("vae"), device, dtype)?),
    };
    Ok((text_encoder, unet, vae))
}

fn load_single_file(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<CoreModels> {
    let configs = paths.configs.as_deref();
    let unet_config: UNetConfig = component_config(configs, "unet", SD15_UNET_CONFIG)?;
    let vae_config: VaeConfig = component_config(configs, "vae", SD15_VAE_CONFIG)?;
    let text_config: ClipTextConfig = component_config(configs, "text_encoder", SD15_TEXT_CONFIG)?;
    let parts = load_checkpoint(&paths.model, &unet_config, &vae_config, device)?;
    let text_encoder = build_text_encoder(&parts.text_encoder, &text_config, device, dtype)?;
    let unet = build_unet(&parts.unet, &unet_config, device, dtype)?;
    let vae = match (&paths.vae, &parts.vae) {
        (None, Some(vae)) => Some(build_vae(vae, &vae_config, device, dtype)?),
        _ => None,
    };
    Ok((text_encoder, unet, vae))
}

fn build_text_encoder(
    file: &TensorFile,
    config: &ClipTextConfig,
    device: &Device,
    dtype: DType,
) -> Result<ClipTextModel> {
    let vb = file.var_builder(dtype, device);
    // Files saved by recent transformers drop the `text_model.` prefix.
    let vb = if file.contains("text_model.embeddings.token_embedding.weight") {
        vb.pp("text_model")
    } else {
        vb
    };
    ClipTextModel::load(vb, config).map_err(|e| file.load_error(e))
}

fn build_unet(
    file: &TensorFile,
    config: &UNetConfig,
    device: &Device,
    dtype: DType,
) -> Result<UNet> {
    UNet::load(file.var_builder(dtype, device), config).map_err(|e| file.load_error(e))
}

fn build_vae(
    file: &TensorFile,
    config: &VaeConfig,
    device: &Device,
    dtype: DType,
) -> Result<VaeDecoder> {
    VaeDecoder::load(file.var_builder(dtype, device), config).map_err(|e| file.load_error(e))
}

fn load_vae(dir: &Path, device: &Device, dtype: DType) -> Result<VaeDecoder> {
    let component = load_component(dir, device)?;
    let config: VaeConfig = read_json(&component.config_path)?;
    build_vae(&component.weights, &config, device, dtype)
}

/// The vision config, flat (`CLIPVisionModelWithProjection`) or nested (`CLIPModel`).
fn read_vision_config(path: &Path) -> Result<ClipVisionConfig> {
    let value: serde_json::Value = read_json(path)?;
    let vision = value.get("vision_config").cloned().unwrap_or(value);
    serde_json::from_value(vision).map_err(|e| MinusError::BadConfig {
        path: path.to_path_buf(),
        message: format!("not a CLIP image encoder config ({e})"),
    })
}

fn load_image_models(
    adapter_path: &Path,
    encoder_dir: &Path,
    unet: &UNet,
    device: &Device,
    dtype: DType,
) -> Result<ImagePromptModels> {
    let adapter_file = load_weights_file(adapter_path, device)?;
    let adapter = IpAdapter::load(&adapter_file, dtype, device)?;
    let (file, config) = if encoder_dir.is_file() {
        // A ComfyUI-style `clip_vision/*.safetensors`: sizes come from a `config.json`
        // beside it, or else from the tensors.
        let file = load_weights_file(encoder_dir, device)?;
        let beside = encoder_dir.with_file_name("config.json");
        let config = if beside.is_file() {
            read_vision_config(&beside)?
        } else {
            infer_vision_config(&file)?
        };
        (file, config)
    } else {
        let component = load_component(encoder_dir, device)?;
        (
            component.weights,
            read_vision_config(&component.config_path)?,
        )
    };
    let encoder = ClipVisionModel::load(file.var_builder(dtype, device), &config)
        .map_err(|e| file.load_error(e))?;
    check_compatible(adapter_path, &adapter, &config, unet)?;
    Ok(ImagePromptModels {
        encoder,
        adapter,
        id: format!("{}|{}", adapter_path.display(), encoder_dir.display()),
        device: device.clone(),
        dtype,
    })
}

/// The vision config of an encoder file without `config.json`, read off tensor shapes.
/// The head count is not stored in the weights: CLIP ViT-H/14 and ViT-L/14 use 16
/// heads, smaller towers heads of 64 channels.
pub fn infer_vision_config(file: &TensorFile) -> Result<ClipVisionConfig> {
    let embeddings = "vision_model.embeddings";
    let hidden = file.dim(&format!("{embeddings}.class_embedding"), 0)?;
    let patch = file.dims(&format!("{embeddings}.patch_embedding.weight"))?;
    let positions = file.dim(&format!("{embeddings}.position_embedding.weight"), 0)?;
    let layers = (0..)
        .take_while(|i| {
            file.contains(&format!(
                "vision_model.encoder.layers.{i}.self_attn.q_proj.weight"
            ))
        })
        .count();
    let intermediate = file.dim("vision_model.encoder.layers.0.mlp.fc1.weight", 0)?;
    let projection_dim = file.dim("visual_projection.weight", 0)?;
    let (patch_size, channels) = (
        patch.get(2).copied().unwrap_or(14),
        patch.get(1).copied().unwrap_or(3),
    );
    let grid = ((positions.saturating_sub(1)) as f64).sqrt().round() as usize;
    let heads = match hidden {
        1024 | 1280 | 1664 => 16,
        other => (other / 64).max(1),
    };
    Ok(ClipVisionConfig {
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        image_size: grid * patch_size,
        patch_size,
        projection_dim,
        num_channels: channels,
        layer_norm_eps: 1e-5,
        hidden_act: "gelu".to_string(),
    })
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
        return mismatch(format!(
            "the adapter expects {}-dim image features but the image encoder's {feature_name} is {feature_dim} (wrong image encoder?)",
            adapter.image_feature_dim()
        ));
    }
    let unet_cross = unet.config().cross_attention_dim;
    if adapter.cross_attention_dim() != unet_cross {
        return mismatch(format!(
            "the adapter makes {}-dim tokens but the UNet's cross-attention takes {unet_cross} (adapter for another model family, e.g. SDXL?)",
            adapter.cross_attention_dim()
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

/// Picks the compute device: `auto` tries CUDA, then Metal, then the CPU.
pub fn select_device(name: &str) -> Result<Device> {
    let unavailable = |what: &str, e: candle_core::Error| {
        MinusError::InvalidRequest(format!("{what} is not available: {e}"))
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| unavailable("CUDA", e)),
        "metal" => Device::new_metal(0).map_err(|e| unavailable("Metal", e)),
        "auto" => Ok(if candle_core::utils::cuda_is_available() {
            Device::new_cuda(0).unwrap_or(Device::Cpu)
        } else if candle_core::utils::metal_is_available() {
            Device::new_metal(0).unwrap_or(Device::Cpu)
        } else {
            Device::Cpu
        }),
        other => Err(MinusError::InvalidRequest(format!(
            "unknown device `{other}` (expected auto, cpu, cuda or metal)"
        ))),
    }
}

/// The dtype to run in: `name` if given, else f32 on the CPU and f16 on GPUs.
pub fn resolve_dtype(device: &Device, name: Option<&str>) -> Result<DType> {
    let default = if device.is_cpu() { "f32" } else { "f16" };
    let dtype = parse_dtype(name.unwrap_or(default))?;
    // Refused here rather than at the first layer, where candle's error would not say why.
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(MinusError::InvalidRequest(
            "bf16 does not run on the CPU (candle has no bf16 matrix multiply there): use f32 or f16"
                .to_string(),
        ));
    }
    Ok(dtype)
}

/// Parses a dtype name (`f32`, `f16`, `bf16`).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(MinusError::InvalidRequest(format!(
            "unknown dtype `{other}` (expected f32, f16 or bf16)"
        ))),
    }
}

/// A human name for a device.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sd15_configs_parse_with_sd15_sizes() -> Result<()> {
        let unet: UNetConfig = component_config(None, "unet", SD15_UNET_CONFIG)?;
        assert_eq!(unet.block_out_channels, [320, 640, 1280, 1280]);
        assert_eq!(unet.cross_attention_dim, 768);
        let vae: VaeConfig = component_config(None, "vae", SD15_VAE_CONFIG)?;
        assert_eq!(vae.block_out_channels, [128, 256, 512, 512]);
        let text: ClipTextConfig = component_config(None, "text_encoder", SD15_TEXT_CONFIG)?;
        assert_eq!((text.hidden_size, text.num_attention_heads), (768, 12));
        Ok(())
    }
}
