//! Random full-size SDXL weights for `minus bench --family sdxl`: a diffusers folder
//! with stabilityai/stable-diffusion-xl-base-1.0's configurations, h94's SDXL ViT-H
//! adapters (base and Plus) and TAESDXL, written once beside SD 1.5's.

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use minus::models::clip_text::{ClipTextConfig, ClipTextModel};
use minus::pipeline::models::{
    SDXL_TEXT_2_CONFIG, SDXL_TEXT_CONFIG, SDXL_UNET_CONFIG, SDXL_VAE_CONFIG,
};
use serde_json::json;

use super::bench_weights::{
    BenchWeights, ImageSizes, ensure_image_encoder, ensure_taesd, shipped_config,
    write_base_adapter, write_component, write_json, write_once, write_plus_adapter,
    write_text_encoder, write_unet, write_vae,
};

/// The configurations and adapter widths of the SDXL set the bench writes.
pub(super) struct SdxlShapes {
    pub unet: serde_json::Value,
    /// CLIP ViT-L's text tower.
    pub text_encoder: serde_json::Value,
    /// OpenCLIP ViT-bigG's text tower with its projection.
    pub text_encoder_2: serde_json::Value,
    pub vae: serde_json::Value,
    pub image: ImageSizes,
}

impl SdxlShapes {
    /// stabilityai/stable-diffusion-xl-base-1.0 and h94's `sdxl_models/*_vit-h` adapters.
    pub fn full_size() -> anyhow::Result<Self> {
        Ok(Self {
            unet: shipped_config(SDXL_UNET_CONFIG)?,
            text_encoder: shipped_config(SDXL_TEXT_CONFIG)?,
            text_encoder_2: shipped_config(SDXL_TEXT_2_CONFIG)?,
            vae: shipped_config(SDXL_VAE_CONFIG)?,
            image: ImageSizes {
                encoder_projection: 1024,
                encoder_hidden: 1280,
                resampler_dim: 1280,
            },
        })
    }
}

/// The pipeline's own files: `model_index.json`, the scheduler's config and the
/// second tokenizer's special tokens (it pads with `!`).
fn write_pipeline_files(model_dir: &Path) -> anyhow::Result<()> {
    write_json(
        &model_dir.join("model_index.json"),
        &json!({
            "_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]
        }),
    )?;
    write_json(
        &model_dir.join("scheduler/scheduler_config.json"),
        &json!({
            "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading",
            "interpolation_type": "linear", "use_karras_sigmas": false
        }),
    )?;
    write_json(
        &model_dir.join("tokenizer_2/special_tokens_map.json"),
        &json!({
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
            "pad_token": "!", "unk_token": "<|endoftext|>"
        }),
    )
}

/// Writes the second text encoder as transformers' `CLIPTextModelWithProjection`
/// saves it: the tower under `text_model.` and `text_projection.weight`.
fn write_second_text_encoder(model_dir: &Path, config: &serde_json::Value) -> anyhow::Result<()> {
    let text: ClipTextConfig = serde_json::from_value(config.clone())?;
    let projection_dim = text
        .projection_dim
        .ok_or_else(|| anyhow::anyhow!("text_encoder_2's config has no projection_dim"))?;
    let build = |vb: VarBuilder| {
        ClipTextModel::load(vb.pp("text_model"), &text)?;
        let projection: Tensor =
            vb.get((projection_dim, text.hidden_size), "text_projection.weight")?;
        drop(projection);
        Ok(())
    };
    write_component(
        &model_dir.join("text_encoder_2"),
        "model.safetensors",
        config,
        build,
    )
}

/// Writes the SDXL folder and its two adapters, the UNet first and alone: each
/// network is built, saved and freed before the next.
pub(super) fn write_sdxl(weights: &BenchWeights, shapes: &SdxlShapes) -> anyhow::Result<()> {
    let unet = write_unet(&weights.model, &shapes.unet)?;
    write_second_text_encoder(&weights.model, &shapes.text_encoder_2)?;
    write_text_encoder(&weights.model, &shapes.text_encoder)?;
    write_vae(&weights.model, &shapes.vae)?;
    write_pipeline_files(&weights.model)?;
    write_base_adapter(&weights.base_adapter, &shapes.image, &unet)?;
    write_plus_adapter(&weights.plus_adapter, &shapes.image, &unet)?;
    Ok(())
}

/// Writes SDXL's weights under `dir` unless a previous run did (marked by
/// `sdxl/complete`); the image encoder is SD 1.5's (h94's SDXL `_vit-h` adapters take it).
pub fn ensure(dir: &Path) -> anyhow::Result<BenchWeights> {
    let weights = BenchWeights {
        model: dir.join("sdxl"),
        image_encoder: ensure_image_encoder(dir)?,
        base_adapter: dir.join("ip-adapter_sdxl_vit-h.safetensors"),
        plus_adapter: dir.join("ip-adapter-plus_sdxl_vit-h.safetensors"),
        taesd: dir.join("taesdxl"),
    };
    ensure_taesd(&weights.taesd)?;
    let announce = format!(
        "writing random full-size SDXL weights to {} (once; 19 GB with the image encoder)...",
        dir.display()
    );
    write_once(&weights.model.join("complete"), &announce, || {
        write_sdxl(&weights, &SdxlShapes::full_size()?)
    })?;
    Ok(weights)
}

#[cfg(test)]
impl SdxlShapes {
    /// The tiny SDXL folder's configurations under `model_dir` (the test fixtures'),
    /// with a one-head resampler over the fixtures' tiny image encoder.
    pub fn from_folder(model_dir: &Path, image: ImageSizes) -> anyhow::Result<Self> {
        let config = |component: &str| -> anyhow::Result<serde_json::Value> {
            let path = model_dir.join(component).join("config.json");
            Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
        };
        Ok(Self {
            unet: config("unet")?,
            text_encoder: config("text_encoder")?,
            text_encoder_2: config("text_encoder_2")?,
            vae: config("vae")?,
            image,
        })
    }
}
