//! SD 1.5's `UNet2DConditionModel`, with IP-Adapter's decoupled image attention
//! in every cross-attention layer.

mod blocks;
mod context;
mod ip_scaling;
mod regions;
mod transformer;

pub use context::{CrossContext, ImageTokens};
pub use ip_scaling::{EmbedsScaling, IpScales};
pub use regions::{Coverage, RegionMask, Regions, downsample};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config_check::{
    CheckedConfig, ConfigProblem, MAX_CHANNELS, MAX_LAYERS, channels_and_groups, divisible,
    positive_at_most, positive_finite,
};
use super::conv::Conv2d;
use super::group_norm::GroupNorm;
use super::linear::{Linear, linear};
use super::resnet::conv3x3;
use blocks::{
    BlockContext, DownBlock, DownBlockLayout, MidBlock, StepInputs, UpBlock, UpBlockChannels,
    UpBlockLayout,
};
use transformer::CrossInputs;

/// An integer or one value per block, as diffusers configs allow.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    Same(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, block: usize) -> usize {
        match self {
            Self::Same(v) => *v,
            Self::Each(values) => values.get(block).or(values.last()).copied().unwrap_or(1),
        }
    }
}

/// The fields of a diffusers UNet `config.json` that SD 1.5 uses.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    #[serde(default = "default_in_channels")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_layers")]
    pub layers_per_block: usize,
    pub cross_attention_dim: usize,
    #[serde(default = "default_head_dim")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_depth")]
    pub transformer_layers_per_block: usize,
}

fn default_in_channels() -> usize {
    4
}
fn default_layers() -> usize {
    2
}
fn default_head_dim() -> PerBlock {
    PerBlock::Same(8)
}
fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_depth() -> usize {
    1
}

impl UNetConfig {
    /// Heads of the attention in block `i` (diffusers: `num_attention_heads`, or
    /// `attention_head_dim` which SD 1.5 misuses as the head count).
    fn heads(&self, block: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .get(block)
    }

    /// Each down block's shape, as diffusers derives it from the config.
    fn down_block_layouts(&self) -> Vec<DownBlockLayout> {
        let channels = &self.block_out_channels;
        let layout = |(i, kind): (usize, &String)| DownBlockLayout {
            in_channels: if i == 0 { channels[0] } else { channels[i - 1] },
            out_channels: channels[i],
            layers: self.layers_per_block,
            heads: kind.contains("CrossAttn").then(|| self.heads(i)),
            downsample: i + 1 < channels.len(),
        };
        self.down_block_types
            .iter()
            .enumerate()
            .map(layout)
            .collect()
    }

    /// Each up block's shape, as diffusers derives it from the config.
    fn up_block_layouts(&self) -> Vec<UpBlockLayout> {
        let blocks = self.block_out_channels.len();
        let reversed: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let layout = |(i, kind): (usize, &String)| UpBlockLayout {
            channels: UpBlockChannels {
                prev_out: if i == 0 { reversed[0] } else { reversed[i - 1] },
                out: reversed[i],
                skip_in: reversed[(i + 1).min(reversed.len() - 1)],
            },
            layers: self.layers_per_block + 1,
            heads: kind
                .contains("CrossAttn")
                .then(|| self.heads(blocks - 1 - i)),
            upsample: i + 1 < blocks,
        };
        self.up_block_types.iter().enumerate().map(layout).collect()
    }
}

impl CheckedConfig for UNetConfig {
    fn check(&self) -> Result<(), ConfigProblem> {
        positive_at_most("in_channels", self.in_channels, 64)?;
        positive_at_most("out_channels", self.out_channels, 64)?;
        channels_and_groups(&self.block_out_channels, self.norm_num_groups)?;
        let blocks = self.block_out_channels.len();
        for (field, types) in [
            ("down_block_types", &self.down_block_types),
            ("up_block_types", &self.up_block_types),
        ] {
            if types.len() != blocks {
                return Err(ConfigProblem {
                    field,
                    message: format!(
                        "has {} entries but block_out_channels has {blocks}",
                        types.len()
                    ),
                });
            }
        }
        positive_at_most("layers_per_block", self.layers_per_block, MAX_LAYERS)?;
        positive_at_most(
            "transformer_layers_per_block",
            self.transformer_layers_per_block,
            MAX_LAYERS,
        )?;
        positive_at_most(
            "cross_attention_dim",
            self.cross_attention_dim,
            MAX_CHANNELS,
        )?;
        positive_finite("norm_eps", self.norm_eps)?;
        let heads_field = if self.num_attention_heads.is_some() {
            "num_attention_heads"
        } else {
            "attention_head_dim"
        };
        for (block, &channels) in self.block_out_channels.iter().enumerate() {
            let heads = self.heads(block);
            positive_at_most(heads_field, heads, MAX_CHANNELS)?;
            divisible("block_out_channels", channels, heads_field, heads)?;
        }
        Ok(())
    }
}

/// A part of the UNet, as cubiq's weight types tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UNetPart {
    Down,
    Middle,
    Up,
}

/// The denoising UNet.
pub struct UNet {
    conv_in: Conv2d,
    time_linear_1: Linear,
    time_linear_2: Linear,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNetConfig,
    cross_attention_channels: Vec<usize>,
    /// `attn2` layers in the down blocks, the up blocks and the middle block.
    cross_attention_counts: [usize; 3],
}

impl UNet {
    /// Builds the UNet from `vb` (pointing at the UNet's tensors).
    pub fn load(vb: VarBuilder, config: &UNetConfig) -> candle_core::Result<Self> {
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            return Err(candle_core::Error::Msg(
                "block_out_channels is empty".into(),
            ));
        };
        let temb_channels = 4 * first;
        let ctx = BlockContext {
            temb_channels,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            context_dim: config.cross_attention_dim,
            linear_projection: config.use_linear_projection,
            transformer_depth: config.transformer_layers_per_block,
        };
        // IP-Adapter numbers attn2 layers: down blocks, then up blocks, then the mid block.
        let mut ip_layers = Vec::new();
        let mut down_blocks = Vec::new();
        for (i, layout) in config.down_block_layouts().into_iter().enumerate() {
            let vb = vb.pp(format!("down_blocks.{i}"));
            down_blocks.push(DownBlock::load(vb, &ctx, layout, &mut ip_layers)?);
        }
        let down_layers = ip_layers.len();
        let mut up_blocks = Vec::new();
        for (i, layout) in config.up_block_layouts().into_iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            up_blocks.push(UpBlock::load(vb, &ctx, layout, &mut ip_layers)?);
        }
        let up_layers = ip_layers.len() - down_layers;
        let mid_block = MidBlock::load(
            vb.pp("mid_block"),
            &ctx,
            last,
            config.heads(channels.len() - 1),
            &mut ip_layers,
        )?;
        Ok(Self {
            conv_in: conv3x3(config.in_channels, first, 1, vb.pp("conv_in"))?,
            time_linear_1: linear(first, temb_channels, vb.pp("time_embedding.linear_1"))?,
            time_linear_2: linear(
                temb_channels,
                temb_channels,
                vb.pp("time_embedding.linear_2"),
            )?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                vb.pp("conv_norm_out"),
                config.norm_num_groups,
                first,
                config.norm_eps,
            )?,
            conv_out: conv3x3(first, config.out_channels, 1, vb.pp("conv_out"))?,
            config: config.clone(),
            cross_attention_counts: [
                down_layers,
                up_layers,
                ip_layers.len() - down_layers - up_layers,
            ],
            cross_attention_channels: ip_layers,
        })
    }

    /// The configuration the UNet was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Width of every `attn2` layer in IP-Adapter order: an adapter must bring one
    /// image projection of that width per layer.
    pub fn cross_attention_channels(&self) -> &[usize] {
        &self.cross_attention_channels
    }

    /// Where each `attn2` layer (IP-Adapter order) runs: its part of the UNet and its
    /// index in execution order (down blocks, the middle block, then up blocks).
    pub fn cross_attention_order(&self) -> Vec<(UNetPart, usize)> {
        let [down, up, mid] = self.cross_attention_counts;
        let down_order = (0..down).map(|i| (UNetPart::Down, i));
        let up_order = (0..up).map(|i| (UNetPart::Up, down + mid + i));
        let mid_order = (0..mid).map(|i| (UNetPart::Middle, down + i));
        down_order.chain(up_order).chain(mid_order).collect()
    }

    /// Predicts the noise for `sample` `[batch, 4, h, w]` at `timestep` (may be fractional),
    /// conditioned on the run's `context`. `ip_scale` (per layer `[batch, 1, 1]`) weighs the image
    /// tokens per sample (for CFG: the negative weight for the uncond half, the positive
    /// weight for the cond half); `None` leaves them out of this step.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &CrossContext,
        ip_scale: Option<&IpScales>,
    ) -> candle_core::Result<Tensor> {
        let batch = sample.dim(0)?;
        let t_emb = self
            .timestep_embedding(timestep, sample.device())?
            .to_dtype(sample.dtype())?
            .repeat((batch, 1))?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&t_emb)?.silu()?)?;
        let temb_silu = temb.silu()?;
        let inputs = StepInputs {
            temb_silu: &temb_silu,
            cross: CrossInputs { context, ip_scale },
        };
        let mut xs = self.conv_in.forward(sample)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            xs = block.forward(&xs, &inputs, &mut skips)?;
        }
        xs = self.mid_block.forward(&xs, &inputs)?;
        for block in &self.up_blocks {
            xs = block.forward(&xs, &inputs, &mut skips)?;
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }

    /// Sinusoidal timestep embedding `[1, block_out_channels[0]]`, computed in f32 as diffusers does.
    fn timestep_embedding(&self, timestep: f64, device: &Device) -> candle_core::Result<Tensor> {
        let dim = self.config.block_out_channels[0];
        let half = dim / 2;
        let t = timestep as f32;
        let shift = self.config.freq_shift as f32;
        let ln_max_period = (10000f32).ln();
        let args: Vec<f32> = (0..half)
            .map(|i| t * (-ln_max_period * i as f32 / (half as f32 - shift)).exp())
            .collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        let values: Vec<f32> = if self.config.flip_sin_to_cos {
            cos.chain(sin).collect()
        } else {
            sin.chain(cos).collect()
        };
        Tensor::from_vec(values, (1, dim), device)?.to_dtype(DType::F32)
    }
}
