//! Random full-size SD 1.5 + IP-Adapter weights in the real file layouts, written
//! once into a cache folder, for benchmarks (timing does not depend on the values);
//! the writers SDXL's bench weights share.

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

/// One of the configurations Minus ships (readable by diffusers and transformers too).
pub(super) fn shipped_config(text: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(text)?)
}

/// The ViT-H/14 image encoder of h94/IP-Adapter.
pub(super) fn vision_config() -> serde_json::Value {
    json!({
        "architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
        "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
        "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 1024,
        "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "gelu"
    })
}

pub(super) fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| path.display().to_string())
}

/// Builds a network on a `VarMap` (which invents random weights of the right shapes)
/// and saves them with the config, as a diffusers/transformers component folder. The
/// weights file appears under its name only once it is whole, so a run stopped while
/// writing leaves no file a later run would take for finished.
pub(super) fn write_component(
    dir: &Path,
    weights_name: &str,
    config: &serde_json::Value,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) -> anyhow::Result<()> {
    write_json(&dir.join("config.json"), config)?;
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let partial = dir.join(format!("{weights_name}.partial"));
    varmap.save(&partial)?;
    std::fs::rename(&partial, dir.join(weights_name))?;
    Ok(())
}

fn randn(shape: &[usize], std: f64) -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, std as f32, shape, &Device::Cpu)
}

/// What an adapter's image projections must fit in the UNet: its token width and
/// the width of each `attn2` layer, in IP-Adapter order.
pub(super) struct UNetAttention {
    pub cross_dim: usize,
    pub widths: Vec<usize>,
}

/// The image side's widths an h94-layout adapter is made for.
pub(super) struct ImageSizes {
    /// The encoder's projected embedding (the base adapter's input).
    pub encoder_projection: usize,
    /// The encoder's hidden state (the Plus resampler's input).
    pub encoder_hidden: usize,
    /// The Plus resampler's inner width (20 heads of 64 for SDXL, 12 for SD 1.5).
    pub resampler_dim: usize,
}

/// ViT-H/14's widths, and the resampler h94's SD 1.5 Plus adapter has.
const SD15_IMAGE_SIZES: ImageSizes = ImageSizes {
    encoder_projection: 1024,
    encoder_hidden: 1280,
    resampler_dim: 768,
};

/// One image key/value projection per `attn2` layer of the UNet.
fn ip_attention(
    tensors: &mut HashMap<String, Tensor>,
    unet: &UNetAttention,
) -> candle_core::Result<()> {
    for (i, &width) in unet.widths.iter().enumerate() {
        for kind in ["k", "v"] {
            tensors.insert(
                format!("ip_adapter.{}.to_{kind}_ip.weight", 2 * i + 1),
                randn(&[width, unet.cross_dim], 0.03)?,
            );
        }
    }
    Ok(())
}

/// The base adapter: 4 tokens from the projected class token.
pub(super) fn write_base_adapter(
    path: &Path,
    image: &ImageSizes,
    unet: &UNetAttention,
) -> anyhow::Result<()> {
    let cross = unet.cross_dim;
    let mut t = HashMap::new();
    t.insert(
        "image_proj.proj.weight".into(),
        randn(&[4 * cross, image.encoder_projection], 0.03)?,
    );
    t.insert("image_proj.proj.bias".into(), randn(&[4 * cross], 0.01)?);
    t.insert(
        "image_proj.norm.weight".into(),
        Tensor::ones(cross, DType::F32, &Device::Cpu)?,
    );
    t.insert(
        "image_proj.norm.bias".into(),
        Tensor::zeros(cross, DType::F32, &Device::Cpu)?,
    );
    ip_attention(&mut t, unet)?;
    candle_core::safetensors::save(&t, path)?;
    Ok(())
}

/// The Plus adapter: a 4-layer resampler of 16 queries over the encoder's hidden state.
pub(super) fn write_plus_adapter(
    path: &Path,
    image: &ImageSizes,
    unet: &UNetAttention,
) -> anyhow::Result<()> {
    let (dim, cross) = (image.resampler_dim, unet.cross_dim);
    let mut t = HashMap::new();
    let ones = |n| Tensor::ones(n, DType::F32, &Device::Cpu);
    let zeros = |n| Tensor::zeros(n, DType::F32, &Device::Cpu);
    t.insert("image_proj.latents".into(), randn(&[1, 16, dim], 0.03)?);
    t.insert(
        "image_proj.proj_in.weight".into(),
        randn(&[dim, image.encoder_hidden], 0.03)?,
    );
    t.insert("image_proj.proj_in.bias".into(), zeros(dim)?);
    t.insert(
        "image_proj.proj_out.weight".into(),
        randn(&[cross, dim], 0.03)?,
    );
    t.insert("image_proj.proj_out.bias".into(), zeros(cross)?);
    t.insert("image_proj.norm_out.weight".into(), ones(cross)?);
    t.insert("image_proj.norm_out.bias".into(), zeros(cross)?);
    for i in 0..4 {
        let p = format!("image_proj.layers.{i}");
        for norm in ["norm1", "norm2"] {
            t.insert(format!("{p}.0.{norm}.weight"), ones(dim)?);
            t.insert(format!("{p}.0.{norm}.bias"), zeros(dim)?);
        }
        t.insert(format!("{p}.0.to_q.weight"), randn(&[dim, dim], 0.03)?);
        t.insert(format!("{p}.0.to_kv.weight"), randn(&[2 * dim, dim], 0.03)?);
        t.insert(format!("{p}.0.to_out.weight"), randn(&[dim, dim], 0.03)?);
        t.insert(format!("{p}.1.0.weight"), ones(dim)?);
        t.insert(format!("{p}.1.0.bias"), zeros(dim)?);
        t.insert(format!("{p}.1.1.weight"), randn(&[4 * dim, dim], 0.03)?);
        t.insert(format!("{p}.1.3.weight"), randn(&[dim, 4 * dim], 0.03)?);
    }
    ip_attention(&mut t, unet)?;
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
/// so caches written before it gain it on their next run). TAESDXL has its architecture.
pub(super) fn ensure_taesd(dir: &Path) -> anyhow::Result<()> {
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

/// Writes h94's ViT-H/14 image encoder (both families' adapters use it) into
/// `dir/image_encoder` unless it is there; returns that folder.
pub(super) fn ensure_image_encoder(dir: &Path) -> anyhow::Result<PathBuf> {
    let encoder_dir = dir.join("image_encoder");
    if encoder_dir.join("model.safetensors").is_file() {
        return Ok(encoder_dir);
    }
    let vision: ClipVisionConfig = serde_json::from_value(vision_config())?;
    write_component(&encoder_dir, "model.safetensors", &vision_config(), |vb| {
        ClipVisionModel::load(vb, &vision).map(drop)
    })?;
    Ok(encoder_dir)
}

/// Builds the UNet of `config` on random weights and saves it as `model_dir/unet`
/// (before anything else is built: SDXL's takes 10 GB in f32); returns what its
/// adapters must fit, read from the built UNet.
pub(super) fn write_unet(
    model_dir: &Path,
    config: &serde_json::Value,
) -> anyhow::Result<UNetAttention> {
    let unet_config: UNetConfig = serde_json::from_value(config.clone())?;
    let mut widths = Vec::new();
    write_component(
        &model_dir.join("unet"),
        "diffusion_pytorch_model.safetensors",
        config,
        |vb| {
            widths = UNet::load(vb, &unet_config)?
                .cross_attention_channels()
                .to_vec();
            Ok(())
        },
    )?;
    Ok(UNetAttention {
        cross_dim: unet_config.cross_attention_dim,
        widths,
    })
}

/// Writes the VAE's decoder as `model_dir/vae`.
pub(super) fn write_vae(model_dir: &Path, config: &serde_json::Value) -> anyhow::Result<()> {
    let vae: VaeConfig = serde_json::from_value(config.clone())?;
    write_component(
        &model_dir.join("vae"),
        "diffusion_pytorch_model.safetensors",
        config,
        |vb| VaeDecoder::load(vb, &vae).map(drop),
    )
}

/// Writes a CLIP text encoder as `model_dir/text_encoder`.
pub(super) fn write_text_encoder(
    model_dir: &Path,
    config: &serde_json::Value,
) -> anyhow::Result<()> {
    let text: ClipTextConfig = serde_json::from_value(config.clone())?;
    write_component(
        &model_dir.join("text_encoder"),
        "model.safetensors",
        config,
        |vb| ClipTextModel::load(vb.pp("text_model"), &text).map(drop),
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

/// Writes SD 1.5's weights into `dir` unless a previous run did (marked by `complete`).
pub fn ensure(dir: &Path) -> anyhow::Result<BenchWeights> {
    let weights = BenchWeights {
        model: dir.join("sd15"),
        image_encoder: ensure_image_encoder(dir)?,
        base_adapter: dir.join("ip-adapter_sd15.safetensors"),
        plus_adapter: dir.join("ip-adapter-plus_sd15.safetensors"),
        taesd: dir.join("taesd"),
    };
    ensure_taesd(&weights.taesd)?;
    let announce = format!(
        "writing random full-size weights to {} (once)...",
        dir.display()
    );
    write_once(&dir.join("complete"), &announce, || {
        let unet = write_unet(&weights.model, &shipped_config(SD15_UNET_CONFIG)?)?;
        write_vae(&weights.model, &shipped_config(SD15_VAE_CONFIG)?)?;
        write_text_encoder(&weights.model, &shipped_config(SD15_TEXT_CONFIG)?)?;
        write_base_adapter(&weights.base_adapter, &SD15_IMAGE_SIZES, &unet)?;
        write_plus_adapter(&weights.plus_adapter, &SD15_IMAGE_SIZES, &unet)
    })?;
    Ok(weights)
}

/// Runs `write` (saying `announce` first) unless `marker` says an earlier run finished
/// it, then leaves the marker.
pub fn write_once(
    marker: &Path,
    announce: &str,
    write: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if marker.is_file() {
        return Ok(());
    }
    eprintln!("{announce}");
    write()?;
    std::fs::write(marker, b"")?;
    Ok(())
}
