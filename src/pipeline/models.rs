//! Loading every network one generation needs.

mod lora_networks;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::models::clip_text::{ClipTextConfig, ClipTextModel};
use crate::models::clip_vision::{ClipVisionConfig, ClipVisionModel};
use crate::models::config_check::CheckedConfig;
use crate::models::family::ModelFamily;
use crate::models::ip_adapter::{ImageFeature, IpAdapter};
use crate::models::sdxl_text::SecondTextEncoder;
use crate::models::taesd::{TaesdConfig, TaesdDecoder};
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::{UNet, UNetConfig};
use crate::models::vae::{VaeConfig, VaeDecoder};
use crate::schedulers::NoiseSchedule;
use crate::weights::config::{read_config, read_json};
use crate::weights::diffusers::{find_weights_file, load_component};
use crate::weights::lora::{LoraChoice, LoraSet};
use crate::weights::pickle::load_weights_file;
use crate::weights::shapes::{infer_ip_adapter_config, infer_vision_config, read_vision_config};
use crate::weights::single_file::{load_vae_file, read_checkpoint};
use crate::weights::{ModelPaths, TensorFile};
use crate::{MinusError, Result};
use lora_networks::LoraNetworks;

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
    /// SDXL's second text encoder.
    pub text_encoder_2: Option<SecondTextEncoder>,
    /// SD 1.5 or SDXL, as the UNet's config says.
    pub family: ModelFamily,
    /// Whether an empty negative prompt conditions on zeros instead of the encoded
    /// empty text (SDXL's `force_zeros_for_empty_prompt`, on unless the folder's
    /// `model_index.json` turns it off).
    pub zero_empty_negative: bool,
    /// Identifies the text encoder (its model's path) in the embedding cache.
    pub text_id: String,
    pub unet: UNet,
    pub vae: VaeDecoder,
    /// TAESD for the live previews, when its folder is there.
    pub taesd: Option<TaesdDecoder>,
    pub image: Option<ImagePromptModels>,
    pub schedule: NoiseSchedule,
    pub device: Device,
    pub dtype: DType,
    /// The LoRAs merged into the UNet and text encoder.
    loras: LoraNetworks,
}

/// SD 1.5's UNet configuration (diffusers format), for single files that come without one.
pub const SD15_UNET_CONFIG: &str = include_str!("../../resources/sd15/unet_config.json");
/// SD 1.5's VAE configuration (diffusers format).
pub const SD15_VAE_CONFIG: &str = include_str!("../../resources/sd15/vae_config.json");
/// SD 1.5's text encoder configuration (transformers format).
pub const SD15_TEXT_CONFIG: &str = include_str!("../../resources/sd15/text_encoder_config.json");

/// Reads `<configs>/<component>/config.json`, or the built-in SD 1.5 one.
fn component_config<T: serde::de::DeserializeOwned + CheckedConfig>(
    configs: Option<&Path>,
    component: &str,
    built_in: &str,
) -> Result<T> {
    match configs {
        Some(dir) => read_config(&dir.join(component).join("config.json")),
        None => serde_json::from_str(built_in).map_err(|e| MinusError::BadConfig {
            path: PathBuf::from(format!("built-in {component} config")),
            message: e.to_string(),
        }),
    }
}

impl Models {
    /// Loads the models named by `paths`.
    ///
    /// Each file is read into host memory already cast to `dtype`, each network is
    /// uploaded tensor by tensor as it is built, and each file's tensors are freed
    /// once their network is built: the device never holds a stored f32 copy
    /// beside the f16 network, and the host holds one component's file at a time.
    ///
    /// The LoRAs of `paths` are read first (a file Minus cannot merge fails the load
    /// before the model is read), and merged into the UNet and text encoder as they load.
    pub fn load(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<Self> {
        let text_model_id = encoder_identity(&[&paths.model], device, dtype);
        let mut loras = LoraNetworks::new(LoraSet::read(&paths.loras)?, text_model_id);
        let core = if paths.model.is_file() {
            load_single_file(paths, &mut loras, device, dtype)?
        } else if paths.model.is_dir() {
            load_diffusers_folder(paths, &mut loras, device, dtype)?
        } else {
            return Err(MinusError::BadWeights {
                path: paths.model.clone(),
                message:
                    "model not found (expected a diffusers SD 1.5 or SDXL folder, or a checkpoint file)"
                        .to_string(),
            });
        };
        let (unet, text_encoder) = (core.unet, core.text_encoder);
        let sdxl = core.text_encoder_2.is_some();
        let vae = match (&paths.vae, core.vae) {
            (Some(path), _) if path.is_file() => {
                // A VAE file carries no config: SDXL's scales latents by 0.13025.
                let built_in = if sdxl {
                    SDXL_VAE_CONFIG
                } else {
                    SD15_VAE_CONFIG
                };
                let config: VaeConfig =
                    component_config(paths.configs.as_deref(), "vae", built_in)?;
                let dtype = vae_dtype(&config, sdxl, dtype);
                build_vae(load_vae_file(path, &config, dtype)?, &config, device, dtype)?
            }
            (Some(dir), _) => load_vae(dir, device, dtype, sdxl)?,
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
                return Err(MinusError::MissingModel {
                    path: adapter.clone(),
                    message: "an IP-Adapter needs its CLIP image encoder folder too".to_string(),
                });
            }
        };
        let taesd = match &paths.taesd {
            Some(dir) => load_taesd(dir, device, dtype)?,
            None => None,
        };
        Ok(Self {
            tokenizer: ClipTokenizer::new(),
            text_encoder,
            family: if core.text_encoder_2.is_some() {
                ModelFamily::Sdxl
            } else {
                ModelFamily::Sd15
            },
            text_encoder_2: core.text_encoder_2,
            zero_empty_negative: core.zero_empty_negative,
            text_id: loras.text_id(),
            unet,
            vae,
            taesd,
            image,
            schedule: core.schedule,
            device: device.clone(),
            dtype,
            loras,
        })
    }

    /// The LoRAs merged in, at their strengths, with their hashes.
    pub fn loras(&self) -> Vec<LoraChoice> {
        self.loras.choices()
    }

    /// Merges the loaded LoRAs again at `strengths` (one per LoRA, in order), from the
    /// un-merged weights kept at load: the model files are not read again. Nothing
    /// changes when it fails.
    pub fn set_lora_strengths(&mut self, strengths: &[f64]) -> Result<()> {
        let (text_encoder, unet) = self.loras.reweigh(strengths, &self.device, self.dtype)?;
        if let Some(text_encoder) = text_encoder {
            self.text_encoder = text_encoder;
        }
        if let Some(unet) = unet {
            self.unet = unet;
        }
        self.text_id = self.loras.text_id();
        Ok(())
    }
}

/// The networks a model file or folder brings.
struct CoreModels {
    text_encoder: ClipTextModel,
    text_encoder_2: Option<SecondTextEncoder>,
    unet: UNet,
    /// `None` when the model has no VAE or another one is given.
    vae: Option<VaeDecoder>,
    zero_empty_negative: bool,
    schedule: NoiseSchedule,
}

fn load_diffusers_folder(
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
        .then(|| load_second_text_encoder(dir, device, dtype))
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
fn sdxl_schedule(dir: &Path) -> Result<NoiseSchedule> {
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

/// SDXL's `text_encoder_2/`, padding as `tokenizer_2/` says.
fn load_second_text_encoder(
    dir: &Path,
    device: &Device,
    dtype: DType,
) -> Result<SecondTextEncoder> {
    let pad_token = second_pad_token(&dir.join("tokenizer_2"))?;
    let component = load_component(&dir.join("text_encoder_2"), dtype)?;
    let config: ClipTextConfig = read_config(&component.config_path)?;
    let file = &component.weights;
    SecondTextEncoder::load(file.var_builder(dtype, device), &config, pad_token)
        .map_err(|e| file.load_error(e))
}

/// The id `tokenizer_2/special_tokens_map.json` pads with (`!` when the file or the
/// entry is missing, as in SDXL's own folder).
fn second_pad_token(tokenizer_dir: &Path) -> Result<u32> {
    let path = tokenizer_dir.join("special_tokens_map.json");
    let pad = if path.is_file() {
        let map: serde_json::Value = read_json(&path)?;
        match &map["pad_token"] {
            serde_json::Value::String(token) => token.clone(),
            other => other["content"].as_str().unwrap_or("!").to_string(),
        }
    } else {
        "!".to_string()
    };
    ClipTokenizer::new()
        .token_id(&pad)
        .ok_or_else(|| MinusError::BadConfig {
            path,
            message: format!("pad_token `{pad}` is not in CLIP's vocabulary"),
        })
}

/// `force_zeros_for_empty_prompt` of the folder's `model_index.json` (on by default,
/// as in diffusers' SDXL pipeline).
fn force_zeros_for_empty_prompt(dir: &Path) -> Result<bool> {
    let path = dir.join("model_index.json");
    if !path.is_file() {
        return Ok(true);
    }
    let index: serde_json::Value = read_json(&path)?;
    Ok(index["force_zeros_for_empty_prompt"]
        .as_bool()
        .unwrap_or(true))
}

/// SDXL's configurations (stabilityai/stable-diffusion-xl-base-1.0's), for single
/// files that come without them.
const SDXL_UNET_CONFIG: &str = include_str!("../../resources/sdxl/unet_config.json");
const SDXL_VAE_CONFIG: &str = include_str!("../../resources/sdxl/vae_config.json");
const SDXL_TEXT_CONFIG: &str = include_str!("../../resources/sdxl/text_encoder_config.json");
const SDXL_TEXT_2_CONFIG: &str = include_str!("../../resources/sdxl/text_encoder_2_config.json");

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

fn load_single_file(
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
        (Some(file), Some(config)) => {
            let pad_token = single_file_pad_token(configs_dir)?;
            let encoder =
                SecondTextEncoder::load(file.var_builder(dtype, device), &config, pad_token);
            Some(encoder.map_err(|e| file.load_error(e))?)
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
        None => ClipTokenizer::new()
            .token_id("!")
            .ok_or_else(|| MinusError::BadConfig {
                path: PathBuf::from("built-in tokenizer"),
                message: "`!` is not in CLIP's vocabulary".to_string(),
            }),
    }
}

// The VAE builder takes the file by value: its tensors are freed when it is built.

fn build_vae(
    file: TensorFile,
    config: &VaeConfig,
    device: &Device,
    dtype: DType,
) -> Result<VaeDecoder> {
    VaeDecoder::load(file.var_builder(dtype, device), config).map_err(|e| file.load_error(e))
}

/// Loads a diffusers VAE folder (`config.json` and weights), for an SDXL model when
/// `sdxl` (whose VAE may decode in f32 in an f16 run: see [`vae_dtype`]).
pub fn load_vae(dir: &Path, device: &Device, dtype: DType, sdxl: bool) -> Result<VaeDecoder> {
    // A missing folder or weights file is named before its config is read.
    find_weights_file(dir, dtype)?;
    let config: VaeConfig = read_config(&dir.join("config.json"))?;
    let dtype = vae_dtype(&config, sdxl, dtype);
    let component = load_component(dir, dtype)?;
    build_vae(component.weights, &config, device, dtype)
}

/// The dtype a VAE decodes in: f32 for an SDXL run in f16 when its config asks for it
/// (`force_upcast`, as diffusers' SDXL pipeline upcasts), else the run's. SD 1.5's
/// pipeline never upcasts.
fn vae_dtype(config: &VaeConfig, sdxl: bool, dtype: DType) -> DType {
    if sdxl && dtype == DType::F16 && config.force_upcast {
        DType::F32
    } else {
        dtype
    }
}

/// TAESD from its diffusers folder; `None` when the folder is not there (previews
/// then use the latent colour map), an error naming the file when it is there but
/// unusable.
fn load_taesd(dir: &Path, device: &Device, dtype: DType) -> Result<Option<TaesdDecoder>> {
    if !dir.exists() {
        return Ok(None);
    }
    let component = load_component(dir, dtype)?;
    let config: TaesdConfig = read_config(&component.config_path)?;
    let file = &component.weights;
    TaesdDecoder::load(file.var_builder(dtype, device), &config)
        .map(Some)
        .map_err(|e| file.load_error(e))
}

fn load_image_models(
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

/// What an encoder's outputs depend on, for the embedding cache: its files, the device
/// and the dtype.
fn encoder_identity(files: &[&Path], device: &Device, dtype: DType) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("{}|{:?}|{dtype:?}", files.join("|"), device.location())
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
