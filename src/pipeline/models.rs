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
use crate::weights::config::read_json;
use crate::weights::diffusers::load_component;
use crate::{MinusError, Result};

/// Where the model files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPaths {
    /// A diffusers SD 1.5 folder (`unet/`, `vae/`, `text_encoder/`, ...).
    pub model: PathBuf,
    /// A VAE folder replacing the model's own.
    pub vae: Option<PathBuf>,
    /// An h94 IP-Adapter weights file.
    pub ip_adapter: Option<PathBuf>,
    /// The CLIP image encoder folder the adapter was trained with.
    pub image_encoder: Option<PathBuf>,
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
    pub unet: UNet,
    pub vae: VaeDecoder,
    pub image: Option<ImagePromptModels>,
    pub schedule: NoiseSchedule,
    pub device: Device,
    pub dtype: DType,
}

impl Models {
    /// Loads the models named by `paths`.
    pub fn load(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<Self> {
        if !paths.model.is_dir() {
            return Err(MinusError::BadWeights {
                path: paths.model.clone(),
                message: "model folder not found (expected a diffusers SD 1.5 folder)".to_string(),
            });
        }
        let text_encoder = load_text_encoder(&paths.model.join("text_encoder"), device, dtype)?;
        let unet = load_unet(&paths.model.join("unet"), device, dtype)?;
        let vae_dir = paths.vae.clone().unwrap_or_else(|| paths.model.join("vae"));
        let vae = load_vae(&vae_dir, device, dtype)?;
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
            unet,
            vae,
            image,
            schedule: NoiseSchedule::sd15(),
            device: device.clone(),
            dtype,
        })
    }
}

fn load_text_encoder(dir: &Path, device: &Device, dtype: DType) -> Result<ClipTextModel> {
    let component = load_component(dir, device)?;
    let config: ClipTextConfig = read_json(&component.config_path)?;
    let file = &component.weights;
    let vb = file.var_builder(dtype, device);
    // Files saved by recent transformers drop the `text_model.` prefix.
    let vb = if file.contains("text_model.embeddings.token_embedding.weight") {
        vb.pp("text_model")
    } else {
        vb
    };
    ClipTextModel::load(vb, &config).map_err(|e| file.load_error(e))
}

fn load_unet(dir: &Path, device: &Device, dtype: DType) -> Result<UNet> {
    let component = load_component(dir, device)?;
    let config: UNetConfig = read_json(&component.config_path)?;
    let file = &component.weights;
    UNet::load(file.var_builder(dtype, device), &config).map_err(|e| file.load_error(e))
}

fn load_vae(dir: &Path, device: &Device, dtype: DType) -> Result<VaeDecoder> {
    let component = load_component(dir, device)?;
    let config: VaeConfig = read_json(&component.config_path)?;
    let file = &component.weights;
    VaeDecoder::load(file.var_builder(dtype, device), &config).map_err(|e| file.load_error(e))
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
    let adapter_file = crate::weights::TensorFile::load_safetensors(adapter_path, device)?;
    let adapter = IpAdapter::load(&adapter_file, dtype, device)?;
    let component = load_component(encoder_dir, device)?;
    let config = read_vision_config(&component.config_path)?;
    let file = &component.weights;
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
