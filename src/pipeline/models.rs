//! Loading every network one generation needs.

mod folder;
mod image_models;
mod lora_networks;
mod single_file;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::models::clip_text::ClipTextModel;
use crate::models::clip_vision::ClipVisionModel;
use crate::models::config_check::CheckedConfig;
use crate::models::family::ModelFamily;
use crate::models::ip_adapter::IpAdapter;
use crate::models::sdxl_text::SecondTextEncoder;
use crate::models::taesd::{TaesdConfig, TaesdDecoder};
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::UNet;
use crate::models::vae::{VaeConfig, VaeDecoder};
use crate::schedulers::NoiseSchedule;
use crate::weights::config::read_config;
use crate::weights::diffusers::{find_weights_file, load_component};
use crate::weights::family::peek_family;
use crate::weights::lora::{LoraChoice, LoraSet};
use crate::weights::single_file::load_vae_file;
use crate::weights::{ModelPaths, TensorFile};
use crate::{MinusError, Result};
use folder::load_diffusers_folder;
use image_models::load_image_models;
use lora_networks::LoraNetworks;
use single_file::load_single_file;

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
    pub tokenizer: &'static ClipTokenizer,
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
    /// The LoRAs merged into the UNet and text encoders.
    loras: LoraNetworks,
}

/// SD 1.5's UNet configuration (diffusers format), for single files that come without one.
pub const SD15_UNET_CONFIG: &str = include_str!("../../resources/sd15/unet_config.json");
/// SD 1.5's VAE configuration (diffusers format).
pub const SD15_VAE_CONFIG: &str = include_str!("../../resources/sd15/vae_config.json");
/// SD 1.5's text encoder configuration (transformers format).
pub const SD15_TEXT_CONFIG: &str = include_str!("../../resources/sd15/text_encoder_config.json");

/// SDXL base 1.0's UNet configuration (stabilityai/stable-diffusion-xl-base-1.0's),
/// for single files that come without one.
pub const SDXL_UNET_CONFIG: &str = include_str!("../../resources/sdxl/unet_config.json");
/// SDXL base 1.0's VAE configuration (latents scaled by 0.13025).
pub const SDXL_VAE_CONFIG: &str = include_str!("../../resources/sdxl/vae_config.json");
/// SDXL's first text encoder configuration (CLIP ViT-L's text tower).
pub const SDXL_TEXT_CONFIG: &str = include_str!("../../resources/sdxl/text_encoder_config.json");
/// SDXL's second text encoder configuration (OpenCLIP ViT-bigG's, with its projection).
pub const SDXL_TEXT_2_CONFIG: &str =
    include_str!("../../resources/sdxl/text_encoder_2_config.json");

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
    /// before the model is read), and merged into the UNet and text encoders as they load.
    pub fn load(paths: &ModelPaths, device: &Device, dtype: DType) -> Result<Self> {
        let set = LoraSet::read(&paths.loras)?;
        if !set.is_empty() {
            set.check_family(peek_family(&paths.model))?;
        }
        let text_model_id = encoder_identity(&[&paths.model], device, dtype);
        let mut loras = LoraNetworks::new(set, text_model_id);
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
        let vae = choose_vae(paths, core.vae, sdxl, (device, dtype))?;
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
            tokenizer: ClipTokenizer::shared(),
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
        let rebuilt = self.loras.reweigh(strengths, &self.device, self.dtype)?;
        if let Some(text_encoder) = rebuilt.text_encoder {
            self.text_encoder = text_encoder;
        }
        if rebuilt.text_encoder_2.is_some() {
            self.text_encoder_2 = rebuilt.text_encoder_2;
        }
        if let Some(unet) = rebuilt.unet {
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

/// The run's VAE: the one `paths` names (a folder, or a file read with its family's
/// built-in config), else the model's own.
fn choose_vae(
    paths: &ModelPaths,
    own_vae: Option<VaeDecoder>,
    sdxl: bool,
    (device, dtype): (&Device, DType),
) -> Result<VaeDecoder> {
    Ok(match (&paths.vae, own_vae) {
        (Some(path), _) if path.is_file() => {
            // A VAE file carries no config: SDXL's scales latents by 0.13025.
            let built_in = if sdxl {
                SDXL_VAE_CONFIG
            } else {
                SD15_VAE_CONFIG
            };
            let config: VaeConfig = component_config(paths.configs.as_deref(), "vae", built_in)?;
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
    })
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

/// What an encoder's outputs depend on, for the embedding cache: its files, the device
/// and the dtype.
fn encoder_identity(files: &[&Path], device: &Device, dtype: DType) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("{}|{:?}|{dtype:?}", files.join("|"), device.location())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::clip_text::ClipTextConfig;
    use crate::models::unet::UNetConfig;

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
