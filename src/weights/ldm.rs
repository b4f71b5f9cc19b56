//! Key names of single-file SD 1.5 checkpoints (the original LDM layout used by
//! A1111 and ComfyUI, which SDXL's UNet and VAE keep) and their diffusers equivalents.
//!
//! The mapping is a table of (LDM prefix, diffusers prefix) pairs built from the
//! block structure, so it works in both directions.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::models::unet::UNetConfig;

/// Prefix of the UNet's tensors in a single file.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// Prefix of the VAE's tensors in a single file.
pub const VAE_PREFIX: &str = "first_stage_model.";
/// Prefix of the text encoder's tensors in a single file.
pub const TEXT_PREFIX: &str = "cond_stage_model.transformer.";

/// (LDM, diffusers) names inside a ResNet block of the UNet.
const UNET_RESNET_PARTS: [(&str, &str); 6] = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
];

/// (LDM, diffusers) names inside the VAE's mid-block attention.
const VAE_ATTENTION_PARTS: [(&str, &str); 5] = [
    ("norm", "group_norm"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("proj_out", "to_out.0"),
];

/// A bidirectional prefix table.
pub struct KeyMap {
    /// (LDM prefix, diffusers prefix), most specific first.
    pairs: Vec<(String, String)>,
}

impl KeyMap {
    fn new(mut pairs: Vec<(String, String)>) -> Self {
        // Longer prefixes first, so `...in_layers.0` wins over the block prefix.
        pairs.sort_by_key(|(ldm, _)| std::cmp::Reverse(ldm.len()));
        Self { pairs }
    }

    fn convert(&self, key: &str, to_diffusers: bool) -> Option<String> {
        self.pairs.iter().find_map(|(ldm, diffusers)| {
            let (from, to) = if to_diffusers {
                (ldm, diffusers)
            } else {
                (diffusers, ldm)
            };
            let rest = key.strip_prefix(from.as_str())?;
            (rest.is_empty() || rest.starts_with('.')).then(|| format!("{to}{rest}"))
        })
    }

    /// The diffusers name of an LDM key (without the checkpoint's component prefix).
    pub fn to_diffusers(&self, key: &str) -> Option<String> {
        self.convert(key, true)
    }

    /// The LDM name of a diffusers key.
    pub fn to_ldm(&self, key: &str) -> Option<String> {
        self.convert(key, false)
    }
}

fn pair(ldm: impl Into<String>, diffusers: impl Into<String>) -> (String, String) {
    (ldm.into(), diffusers.into())
}

fn resnet_pairs(ldm: &str, diffusers: &str, parts: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs = vec![pair(ldm, diffusers)];
    pairs.extend(
        parts
            .iter()
            .map(|(l, d)| pair(format!("{ldm}.{l}"), format!("{diffusers}.{d}"))),
    );
    pairs
}

/// The UNet table for a diffusers UNet config (SD 1.5's block structure, and SDXL's:
/// a transformer's inner names are the same in both layouts, so its depth needs no pairs).
pub fn unet_key_map(config: &UNetConfig) -> KeyMap {
    let layers = config.layers_per_block;
    let blocks = config.block_out_channels.len();
    let has_attention =
        |types: &[String], i: usize| types.get(i).is_some_and(|t| t.contains("CrossAttn"));
    let mut pairs = vec![
        pair("time_embed.0", "time_embedding.linear_1"),
        pair("time_embed.2", "time_embedding.linear_2"),
        pair("input_blocks.0.0", "conv_in"),
        pair("out.0", "conv_norm_out"),
        pair("out.2", "conv_out"),
        pair("middle_block.1", "mid_block.attentions.0"),
    ];
    for (ldm, diffusers) in [
        ("middle_block.0", "mid_block.resnets.0"),
        ("middle_block.2", "mid_block.resnets.1"),
    ] {
        pairs.extend(resnet_pairs(ldm, diffusers, &UNET_RESNET_PARTS));
    }
    if config.is_sdxl() {
        // SDXL's added (pooled text and size) embedding.
        pairs.push(pair("label_emb.0.0", "add_embedding.linear_1"));
        pairs.push(pair("label_emb.0.2", "add_embedding.linear_2"));
    }
    for i in 0..blocks {
        for j in 0..layers {
            let input = i * (layers + 1) + j + 1;
            pairs.extend(resnet_pairs(
                &format!("input_blocks.{input}.0"),
                &format!("down_blocks.{i}.resnets.{j}"),
                &UNET_RESNET_PARTS,
            ));
            if has_attention(&config.down_block_types, i) {
                pairs.push(pair(
                    format!("input_blocks.{input}.1"),
                    format!("down_blocks.{i}.attentions.{j}"),
                ));
            }
        }
        if i + 1 < blocks {
            let input = (i + 1) * (layers + 1);
            pairs.push(pair(
                format!("input_blocks.{input}.0.op"),
                format!("down_blocks.{i}.downsamplers.0.conv"),
            ));
        }
        let up_attention = has_attention(&config.up_block_types, i);
        for j in 0..=layers {
            let output = i * (layers + 1) + j;
            pairs.extend(resnet_pairs(
                &format!("output_blocks.{output}.0"),
                &format!("up_blocks.{i}.resnets.{j}"),
                &UNET_RESNET_PARTS,
            ));
            if up_attention {
                pairs.push(pair(
                    format!("output_blocks.{output}.1"),
                    format!("up_blocks.{i}.attentions.{j}"),
                ));
            }
        }
        if i + 1 < blocks {
            let output = i * (layers + 1) + layers;
            let slot = if up_attention { 2 } else { 1 };
            pairs.push(pair(
                format!("output_blocks.{output}.{slot}.conv"),
                format!("up_blocks.{i}.upsamplers.0.conv"),
            ));
        }
    }
    KeyMap::new(pairs)
}

/// The VAE decoder table for `blocks` resolution levels of `layers` + 1 ResNets each.
pub fn vae_key_map(blocks: usize, layers: usize) -> KeyMap {
    let vae_resnet = [("nin_shortcut", "conv_shortcut")];
    let mut pairs = vec![
        pair("post_quant_conv", "post_quant_conv"),
        pair("decoder.conv_in", "decoder.conv_in"),
        pair("decoder.norm_out", "decoder.conv_norm_out"),
        pair("decoder.conv_out", "decoder.conv_out"),
    ];
    pairs.extend(resnet_pairs(
        "decoder.mid.block_1",
        "decoder.mid_block.resnets.0",
        &vae_resnet,
    ));
    pairs.extend(resnet_pairs(
        "decoder.mid.block_2",
        "decoder.mid_block.resnets.1",
        &vae_resnet,
    ));
    pairs.extend(resnet_pairs(
        "decoder.mid.attn_1",
        "decoder.mid_block.attentions.0",
        &VAE_ATTENTION_PARTS,
    ));
    for i in 0..blocks {
        // LDM numbers decoder levels from the highest resolution, diffusers from the lowest.
        let level = blocks - 1 - i;
        for j in 0..=layers {
            pairs.extend(resnet_pairs(
                &format!("decoder.up.{level}.block.{j}"),
                &format!("decoder.up_blocks.{i}.resnets.{j}"),
                &vae_resnet,
            ));
        }
        pairs.push(pair(
            format!("decoder.up.{level}.upsample.conv"),
            format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
        ));
    }
    KeyMap::new(pairs)
}

/// Whether a diffusers VAE key is one of the mid-block attention projections, which
/// LDM stores as 1×1 convolutions and diffusers as linear layers.
pub fn is_vae_attention_projection(diffusers_key: &str) -> bool {
    diffusers_key.starts_with("decoder.mid_block.attentions.0.to_")
        && diffusers_key.ends_with(".weight")
}

/// Renames (and reshapes) the tensors of one component of a single-file checkpoint:
/// keys starting with `prefix` are mapped through `map` (or kept when `map` is `None`).
pub fn extract_component(
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    map: Option<&KeyMap>,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (key, tensor) in tensors {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some(name) = (match map {
            Some(map) => map.to_diffusers(rest),
            None => Some(rest.to_string()),
        }) else {
            continue;
        };
        let tensor = if is_vae_attention_projection(&name) && tensor.rank() == 4 {
            tensor.flatten_from(1)?
        } else {
            tensor.clone()
        };
        out.insert(name, tensor);
    }
    Ok(out)
}
