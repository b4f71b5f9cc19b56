//! Network sizes read off tensor shapes, for files that come without a config
//! (h94 IP-Adapter files, ComfyUI-style image encoder files).

use std::path::Path;

use super::TensorFile;
use super::config::{check_config, read_json};
use crate::models::clip_vision::ClipVisionConfig;
use crate::models::ip_adapter::{IpAdapterConfig, ProjectionConfig, ResamplerLayerConfig};
use crate::{MinusError, Result};

/// The adapter's kind and sizes, recognised from the tensors in its file.
pub fn infer_ip_adapter_config(file: &TensorFile) -> Result<IpAdapterConfig> {
    let (projection, image_feature_dim, cross_attention_dim) =
        if file.contains("image_proj.latents") {
            let layers = (0..)
                .take_while(|i| file.contains(&format!("image_proj.layers.{i}.0.to_q.weight")))
                .map(|i| {
                    Ok(ResamplerLayerConfig {
                        inner_dim: file.dim(&format!("image_proj.layers.{i}.0.to_q.weight"), 0)?,
                        hidden_dim: file.dim(&format!("image_proj.layers.{i}.1.1.weight"), 0)?,
                    })
                })
                .collect::<Result<_>>()?;
            let projection = ProjectionConfig::Resampler {
                latent_dim: file.dim("image_proj.latents", 2)?,
                num_queries: file.dim("image_proj.latents", 1)?,
                layers,
            };
            (
                projection,
                file.dim("image_proj.proj_in.weight", 1)?,
                file.dim("image_proj.proj_out.weight", 0)?,
            )
        } else if file.contains("image_proj.proj.0.weight") {
            let projection = ProjectionConfig::Mlp {
                hidden_dim: file.dim("image_proj.proj.0.weight", 0)?,
            };
            (
                projection,
                file.dim("image_proj.proj.0.weight", 1)?,
                file.dim("image_proj.proj.2.weight", 0)?,
            )
        } else if file.contains("image_proj.proj.weight") {
            let cross = file.dim("image_proj.norm.weight", 0)?;
            let tokens = file.dim("image_proj.proj.weight", 0)? / cross.max(1);
            (
                ProjectionConfig::Linear { tokens },
                file.dim("image_proj.proj.weight", 1)?,
                cross,
            )
        } else {
            return Err(MinusError::BadWeights {
                path: file.path().to_path_buf(),
                message: "not an IP-Adapter file (no `image_proj.*` tensors)".to_string(),
            });
        };
    Ok(IpAdapterConfig {
        projection,
        image_feature_dim,
        cross_attention_dim,
        layer_widths: attention_layer_widths(file, cross_attention_dim)?,
    })
}

/// The most `attn2` layers an adapter file may name (SD 1.5 has 16, SDXL 70).
const MAX_CROSS_ATTENTION_LAYERS: usize = 512;

/// The output width of each `attn2` layer's image projections (as many as the file
/// numbers 1, 3, 5, ... without a gap), checking that each takes the tokens the
/// projection makes.
fn attention_layer_widths(file: &TensorFile, cross_attention_dim: usize) -> Result<Vec<usize>> {
    let key = |layer: usize| format!("ip_adapter.{}.to_k_ip.weight", 2 * layer + 1);
    let layers = (0..MAX_CROSS_ATTENTION_LAYERS)
        .take_while(|&layer| file.contains(&key(layer)))
        .count();
    if layers == 0 {
        return Err(MinusError::BadWeights {
            path: file.path().to_path_buf(),
            message: "no `ip_adapter.1.to_k_ip` tensor: not an IP-Adapter file".to_string(),
        });
    }
    (0..layers)
        .map(|layer| {
            let key = key(layer);
            let input = file.dim(&key, 1)?;
            if input != cross_attention_dim {
                return Err(MinusError::BadWeights {
                    path: file.path().to_path_buf(),
                    message: format!(
                        "`{key}` takes {input}-dim tokens but the projection makes {cross_attention_dim}-dim ones"
                    ),
                });
            }
            file.dim(&key, 0)
        })
        .collect()
}

/// The vision config, flat (`CLIPVisionModelWithProjection`) or nested (`CLIPModel`).
pub fn read_vision_config(path: &Path) -> Result<ClipVisionConfig> {
    let value: serde_json::Value = read_json(path)?;
    let vision = value.get("vision_config").cloned().unwrap_or(value);
    let config = serde_json::from_value(vision).map_err(|e| MinusError::BadConfig {
        path: path.to_path_buf(),
        message: format!("not a CLIP image encoder config ({e})"),
    })?;
    check_config(config, path)
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
    let config = ClipVisionConfig {
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
    };
    check_config(config, file.path())
}
