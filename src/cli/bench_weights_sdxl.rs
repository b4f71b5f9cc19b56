//! Random full-size SDXL weights for `minus bench --family sdxl`: a diffusers folder
//! with stabilityai/stable-diffusion-xl-base-1.0's configurations, h94's SDXL ViT-H
//! adapters (base and Plus) and TAESDXL, written once beside SD 1.5's.

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use minus::models::clip_text::{ClipTextConfig, ClipTextModel};
use minus::pipeline::models::{SD15_TEXT_CONFIG, SD15_VAE_CONFIG};
use serde_json::json;

use super::bench_weights::{
    BenchWeights, ImageSizes, ensure_image_encoder, ensure_taesd, shipped_config,
    write_base_adapter, write_component, write_json, write_plus_adapter, write_text_encoder,
    write_unet, write_vae,
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
        let mut vae = shipped_config(SD15_VAE_CONFIG)?;
        vae["scaling_factor"] = json!(0.13025);
        vae["sample_size"] = json!(1024);
        vae["force_upcast"] = json!(true);
        Ok(Self {
            unet: sdxl_unet_config(),
            // SDXL's first text encoder is SD 1.5's.
            text_encoder: shipped_config(SD15_TEXT_CONFIG)?,
            text_encoder_2: json!({
                "architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model",
                "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120,
                "num_hidden_layers": 32, "num_attention_heads": 20, "max_position_embeddings": 77,
                "layer_norm_eps": 1e-05, "hidden_act": "gelu", "projection_dim": 1280,
                "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1
            }),
            vae,
            image: ImageSizes {
                encoder_projection: 1024,
                encoder_hidden: 1280,
                resampler_dim: 1280,
            },
        })
    }
}

/// stabilityai/stable-diffusion-xl-base-1.0's `unet/config.json` (the fields diffusers
/// reads; the rest at their defaults).
fn sdxl_unet_config() -> serde_json::Value {
    json!({
        "_class_name": "UNet2DConditionModel", "act_fn": "silu",
        "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280], "center_input_sample": false,
        "cross_attention_dim": 2048,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 2, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
        "out_channels": 4, "projection_class_embeddings_input_dim": 2816, "sample_size": 128,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "use_linear_projection": true
    })
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
    let marker = weights.model.join("complete");
    if marker.is_file() {
        return Ok(weights);
    }
    eprintln!(
        "writing random full-size SDXL weights to {} (once; 19 GB with the image encoder)...",
        dir.display()
    );
    write_sdxl(&weights, &SdxlShapes::full_size()?)?;
    std::fs::write(&marker, b"")?;
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
