//! Random full-size SD 1.5 + IP-Adapter weights in the real file layouts, written
//! once into a cache folder, for benchmarks (timing does not depend on the values).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use minus::models::clip_text::{ClipTextConfig, ClipTextModel};
use minus::models::clip_vision::{ClipVisionConfig, ClipVisionModel};
use minus::models::taesd::{TaesdConfig, TaesdDecoder};
use minus::models::unet::{UNet, UNetConfig};
use minus::models::vae::{VaeConfig, VaeDecoder};
use minus::pipeline::models::{SD15_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG};
use serde_json::json;

/// SD 1.5's configurations as Minus ships them (readable by diffusers and transformers too).
fn sd15_config(text: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(text)?)
}

/// The ViT-H/14 image encoder of h94/IP-Adapter.
fn vision_config() -> serde_json::Value {
    json!({
        "architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
        "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
        "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 1024,
        "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "gelu"
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| path.display().to_string())
}

/// Builds a network on a `VarMap` (which invents random weights of the right shapes)
/// and saves them with the config, as a diffusers/transformers component folder.
fn write_component(
    dir: &Path,
    weights_name: &str,
    config: &serde_json::Value,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) -> anyhow::Result<()> {
    write_json(&dir.join("config.json"), config)?;
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    varmap.save(dir.join(weights_name))?;
    Ok(())
}

fn randn(shape: &[usize], std: f64) -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, std as f32, shape, &Device::Cpu)
}

/// The 16 image key/value projections of an SD 1.5 adapter (widths of the UNet's attn2 layers).
fn ip_attention(tensors: &mut HashMap<String, Tensor>) -> candle_core::Result<()> {
    let widths = [
        320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 1280,
    ];
    for (i, width) in widths.into_iter().enumerate() {
        for kind in ["k", "v"] {
            tensors.insert(
                format!("ip_adapter.{}.to_{kind}_ip.weight", 2 * i + 1),
                randn(&[width, 768], 0.03)?,
            );
        }
    }
    Ok(())
}

fn write_base_adapter(path: &Path) -> anyhow::Result<()> {
    let mut t = HashMap::new();
    t.insert(
        "image_proj.proj.weight".into(),
        randn(&[4 * 768, 1024], 0.03)?,
    );
    t.insert("image_proj.proj.bias".into(), randn(&[4 * 768], 0.01)?);
    t.insert(
        "image_proj.norm.weight".into(),
        Tensor::ones(768, DType::F32, &Device::Cpu)?,
    );
    t.insert(
        "image_proj.norm.bias".into(),
        Tensor::zeros(768, DType::F32, &Device::Cpu)?,
    );
    ip_attention(&mut t)?;
    candle_core::safetensors::save(&t, path)?;
    Ok(())
}

fn write_plus_adapter(path: &Path) -> anyhow::Result<()> {
    let mut t = HashMap::new();
    let ones = |n| Tensor::ones(n, DType::F32, &Device::Cpu);
    let zeros = |n| Tensor::zeros(n, DType::F32, &Device::Cpu);
    t.insert("image_proj.latents".into(), randn(&[1, 16, 768], 0.03)?);
    t.insert(
        "image_proj.proj_in.weight".into(),
        randn(&[768, 1280], 0.03)?,
    );
    t.insert("image_proj.proj_in.bias".into(), zeros(768)?);
    t.insert(
        "image_proj.proj_out.weight".into(),
        randn(&[768, 768], 0.03)?,
    );
    t.insert("image_proj.proj_out.bias".into(), zeros(768)?);
    t.insert("image_proj.norm_out.weight".into(), ones(768)?);
    t.insert("image_proj.norm_out.bias".into(), zeros(768)?);
    for i in 0..4 {
        let p = format!("image_proj.layers.{i}");
        for norm in ["norm1", "norm2"] {
            t.insert(format!("{p}.0.{norm}.weight"), ones(768)?);
            t.insert(format!("{p}.0.{norm}.bias"), zeros(768)?);
        }
        t.insert(format!("{p}.0.to_q.weight"), randn(&[768, 768], 0.03)?);
        t.insert(format!("{p}.0.to_kv.weight"), randn(&[1536, 768], 0.03)?);
        t.insert(format!("{p}.0.to_out.weight"), randn(&[768, 768], 0.03)?);
        t.insert(format!("{p}.1.0.weight"), ones(768)?);
        t.insert(format!("{p}.1.0.bias"), zeros(768)?);
        t.insert(format!("{p}.1.1.weight"), randn(&[3072, 768], 0.03)?);
        t.insert(format!("{p}.1.3.weight"), randn(&[768, 3072], 0.03)?);
    }
    ip_attention(&mut t)?;
    candle_core::safetensors::save(&t, path)?;
    Ok(())
}

/// `madebyollin/taesd`'s config (its decoder's sizes; the encoder is not written).
fn taesd_config() -> serde_json::Value {
    json!({
        "_class_name": "AutoencoderTiny", "act_fn": "relu", "in_channels": 3, "out_channels": 3,
        "latent_channels": 4, "decoder_block_out_channels": [64, 64, 64, 64],
        "encoder_block_out_channels": [64, 64, 64, 64], "num_decoder_blocks": [3, 3, 3, 1],
        "num_encoder_blocks": [1, 3, 3, 3], "upsampling_scaling_factor": 2,
        "upsample_fn": "nearest", "latent_magnitude": 3, "latent_shift": 0.5,
        "scaling_factor": 1.0, "force_upcast": false
    })
}

/// Writes TAESD's decoder into `dir` unless it is there (it came after the others,
/// so caches written before it gain it on their next run).
fn ensure_taesd(dir: &Path) -> anyhow::Result<()> {
    if dir.join("diffusion_pytorch_model.safetensors").is_file() {
        return Ok(());
    }
    let config: TaesdConfig = serde_json::from_value(taesd_config())?;
    write_component(
        dir,
        "diffusion_pytorch_model.safetensors",
        &taesd_config(),
        |vb| TaesdDecoder::load(vb, &config).map(drop),
    )
}

/// Paths of the benchmark weights.
pub struct BenchWeights {
    pub model: PathBuf,
    pub image_encoder: PathBuf,
    pub base_adapter: PathBuf,
    pub plus_adapter: PathBuf,
    pub taesd: PathBuf,
}

/// Writes the weights into `dir` unless a previous run did (marked by `complete`).
pub fn ensure(dir: &Path) -> anyhow::Result<BenchWeights> {
    let weights = BenchWeights {
        model: dir.join("sd15"),
        image_encoder: dir.join("image_encoder"),
        base_adapter: dir.join("ip-adapter_sd15.safetensors"),
        plus_adapter: dir.join("ip-adapter-plus_sd15.safetensors"),
        taesd: dir.join("taesd"),
    };
    ensure_taesd(&weights.taesd)?;
    let marker = dir.join("complete");
    if marker.is_file() {
        return Ok(weights);
    }
    eprintln!(
        "writing random full-size weights to {} (once)...",
        dir.display()
    );
    let unet_config = sd15_config(SD15_UNET_CONFIG)?;
    let vae_config = sd15_config(SD15_VAE_CONFIG)?;
    let text_config = sd15_config(SD15_TEXT_CONFIG)?;
    let unet: UNetConfig = serde_json::from_value(unet_config.clone())?;
    write_component(
        &weights.model.join("unet"),
        "diffusion_pytorch_model.safetensors",
        &unet_config,
        |vb| UNet::load(vb, &unet).map(drop),
    )?;
    let vae: VaeConfig = serde_json::from_value(vae_config.clone())?;
    write_component(
        &weights.model.join("vae"),
        "diffusion_pytorch_model.safetensors",
        &vae_config,
        |vb| VaeDecoder::load(vb, &vae).map(drop),
    )?;
    let text: ClipTextConfig = serde_json::from_value(text_config.clone())?;
    write_component(
        &weights.model.join("text_encoder"),
        "model.safetensors",
        &text_config,
        |vb| ClipTextModel::load(vb.pp("text_model"), &text).map(drop),
    )?;
    let vision: ClipVisionConfig = serde_json::from_value(vision_config())?;
    write_component(
        &weights.image_encoder,
        "model.safetensors",
        &vision_config(),
        |vb| ClipVisionModel::load(vb, &vision).map(drop),
    )?;
    write_base_adapter(&weights.base_adapter)?;
    write_plus_adapter(&weights.plus_adapter)?;
    std::fs::write(&marker, b"")?;
    Ok(weights)
}
