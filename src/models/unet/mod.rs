//! The `UNet2DConditionModel` of SD 1.5 and SDXL (its per-block transformer depths and
//! its "text_time" added conditioning), with IP-Adapter's decoupled image attention in
//! every cross-attention layer.

mod blocks;
mod context;
mod ip_scaling;
mod regions;
mod sinusoid;
mod text_time;
mod transformer;

pub use context::{CrossContext, ImageTokens};
pub use ip_scaling::{EmbedsScaling, IpScales};
pub use regions::{Coverage, RegionMask, Regions, downsample};
pub use text_time::TextTime;

use candle_core::{Device, Module, Tensor};
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
    AttentionShape, BlockContext, CrossLayers, DownBlock, DownBlockLayout, MidBlock, StepInputs,
    UpBlock, UpBlockChannels, UpBlockLayout,
};
use sinusoid::{SinusoidStyle, sinusoids};
use text_time::{TextTimeEmbedding, TextTimeSizes};
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

/// The fields of a diffusers UNet `config.json` that SD 1.5 and SDXL use.
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
    /// Transformer blocks in each transformer, per UNet block (SDXL: 1, 2, 10).
    #[serde(default = "default_depth")]
    pub transformer_layers_per_block: PerBlock,
    /// `"text_time"` for SDXL's added conditioning; `None` for SD 1.5.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Width of each size id's sinusoid (SDXL: 256).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Width of the added embedding's input: the pooled text width + 6 size ids.
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
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
fn default_depth() -> PerBlock {
    PerBlock::Same(1)
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

    /// The transformers of block `block`, when it has attention.
    fn attention(&self, block: usize, kind: &str) -> Option<AttentionShape> {
        kind.contains("CrossAttn").then(|| AttentionShape {
            heads: self.heads(block),
            depth: self.transformer_layers_per_block.get(block),
        })
    }

    /// The added conditioning's sizes: `Some` for SDXL's "text_time", `None` without.
    fn text_time(&self) -> Result<Option<(usize, usize)>, ConfigProblem> {
        let Some(kind) = &self.addition_embed_type else {
            return Ok(None);
        };
        if kind != "text_time" {
            return Err(ConfigProblem {
                field: "addition_embed_type",
                message: format!("is `{kind}`; Minus runs `text_time` (SDXL) or none"),
            });
        }
        let missing = |field: &'static str| ConfigProblem {
            field,
            message: "is missing; `text_time` needs it".to_string(),
        };
        let id_dim = self
            .addition_time_embed_dim
            .ok_or_else(|| missing("addition_time_embed_dim"))?;
        let input_dim = self
            .projection_class_embeddings_input_dim
            .ok_or_else(|| missing("projection_class_embeddings_input_dim"))?;
        positive_at_most("addition_time_embed_dim", id_dim, MAX_CHANNELS)?;
        positive_at_most(
            "projection_class_embeddings_input_dim",
            input_dim,
            8 * MAX_CHANNELS,
        )?;
        if input_dim <= 6 * id_dim {
            return Err(ConfigProblem {
                field: "projection_class_embeddings_input_dim",
                message: format!(
                    "is {input_dim}, not more than the six size ids' {}",
                    6 * id_dim
                ),
            });
        }
        Ok(Some((id_dim, input_dim)))
    }

    /// Whether the config is SDXL's: the "text_time" added conditioning.
    pub fn is_sdxl(&self) -> bool {
        self.addition_embed_type.as_deref() == Some("text_time")
    }

    /// Each down block's shape, as diffusers derives it from the config.
    fn down_block_layouts(&self) -> Vec<DownBlockLayout> {
        let channels = &self.block_out_channels;
        let layout = |(i, kind): (usize, &String)| DownBlockLayout {
            in_channels: if i == 0 { channels[0] } else { channels[i - 1] },
            out_channels: channels[i],
            layers: self.layers_per_block,
            attention: self.attention(i, kind),
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
            attention: self.attention(blocks - 1 - i, kind),
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
        for block in 0..blocks {
            positive_at_most(
                "transformer_layers_per_block",
                self.transformer_layers_per_block.get(block),
                MAX_LAYERS,
            )?;
        }
        self.text_time()?;
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

/// Where one `attn2` layer sits, as cubiq's weight types index them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossAttentionPlace {
    pub part: UNetPart,
    /// Its transformer's index in execution order (down blocks, the middle block, then
    /// up blocks): cubiq's `transformer_index` (SD 1.5: 16 transformers, SDXL: 11).
    pub transformer: usize,
}

/// The denoising UNet.
pub struct UNet {
    conv_in: Conv2d,
    time_linear_1: Linear,
    time_linear_2: Linear,
    /// SDXL's added conditioning.
    text_time: Option<TextTimeEmbedding>,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNetConfig,
    /// The `attn2` layers, in IP-Adapter order: down blocks, up blocks, middle block.
    cross_layers: CrossLayers,
    /// Transformers in the down blocks, the up blocks and the middle block.
    transformer_counts: [usize; 3],
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
        };
        // IP-Adapter numbers attn2 layers: down blocks, then up blocks, then the mid block.
        let mut cross_layers = CrossLayers::default();
        let mut down_blocks = Vec::new();
        for (i, layout) in config.down_block_layouts().into_iter().enumerate() {
            let vb = vb.pp(format!("down_blocks.{i}"));
            down_blocks.push(DownBlock::load(vb, &ctx, layout, &mut cross_layers)?);
        }
        let down_transformers = cross_layers.transformers();
        let mut up_blocks = Vec::new();
        for (i, layout) in config.up_block_layouts().into_iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            up_blocks.push(UpBlock::load(vb, &ctx, layout, &mut cross_layers)?);
        }
        let up_transformers = cross_layers.transformers() - down_transformers;
        let middle = config.block_out_channels.len() - 1;
        let mid_attention = AttentionShape {
            heads: config.heads(middle),
            depth: config.transformer_layers_per_block.get(middle),
        };
        let mid_block = MidBlock::load(
            vb.pp("mid_block"),
            &ctx,
            (last, mid_attention),
            &mut cross_layers,
        )?;
        Ok(Self {
            conv_in: conv3x3(config.in_channels, first, 1, vb.pp("conv_in"))?,
            time_linear_1: linear(first, temb_channels, vb.pp("time_embedding.linear_1"))?,
            time_linear_2: linear(
                temb_channels,
                temb_channels,
                vb.pp("time_embedding.linear_2"),
            )?,
            text_time: load_text_time(&vb, config, temb_channels)?,
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
            transformer_counts: [
                down_transformers,
                up_transformers,
                cross_layers.transformers() - down_transformers - up_transformers,
            ],
            cross_layers,
        })
    }

    /// The configuration the UNet was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Width of every `attn2` layer in IP-Adapter order: an adapter must bring one
    /// image projection of that width per layer.
    pub fn cross_attention_channels(&self) -> &[usize] {
        &self.cross_layers.channels
    }

    /// Number of transformers (cubiq's weight types count these).
    pub fn transformer_count(&self) -> usize {
        self.transformer_counts.iter().sum()
    }

    /// Where each `attn2` layer (IP-Adapter order) runs: its part of the UNet and its
    /// transformer's index in execution order (down blocks, the middle block, then up blocks).
    pub fn cross_attention_order(&self) -> Vec<CrossAttentionPlace> {
        let [down, up, _] = self.transformer_counts;
        let mid = self.transformer_count() - down - up;
        let place = |transformer: usize| {
            let (part, transformer) = if transformer < down {
                (UNetPart::Down, transformer)
            } else if transformer < down + up {
                (UNetPart::Up, transformer + mid)
            } else {
                (UNetPart::Middle, transformer - up)
            };
            CrossAttentionPlace { part, transformer }
        };
        self.cross_layers
            .per_transformer
            .iter()
            .enumerate()
            .flat_map(|(transformer, &layers)| std::iter::repeat_n(place(transformer), layers))
            .collect()
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
        let temb_silu = self.time_embedding(sample, timestep, context)?.silu()?;
        let batch = sample.dim(0)?;
        let inputs = StepInputs {
            temb_silu: &temb_silu,
            cross: CrossInputs {
                context,
                ip_scale,
                batch,
            },
        };
        // A CFG batch is the same latents twice at the same timestep: until the first
        // cross-attention, where the halves' contexts part, one copy is computed for both.
        let first = match equal_halves(sample, &temb_silu)? {
            Some(half) => half,
            None => sample.clone(),
        };
        let mut xs = self.conv_in.forward(&first)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            xs = block.forward(&xs, &inputs, &mut skips)?;
        }
        xs = inputs
            .cross
            .whole_batch(self.mid_block.forward(&xs, &inputs)?)?;
        for skip in &mut skips {
            *skip = inputs.cross.whole_batch(skip.clone())?;
        }
        for block in &self.up_blocks {
            xs = block.forward(&xs, &inputs, &mut skips)?;
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }

    /// `[batch, temb]`: the timestep's embedding, plus SDXL's added conditioning.
    fn time_embedding(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &CrossContext,
    ) -> candle_core::Result<Tensor> {
        let batch = sample.dim(0)?;
        let t_emb = self
            .timestep_embedding(timestep, sample.device())?
            .to_dtype(sample.dtype())?
            .repeat((batch, 1))?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&t_emb)?.silu()?)?;
        match (&self.text_time, context.text_time()) {
            (None, None) => Ok(temb),
            (Some(embedding), Some(text_time)) => temb + embedding.forward(text_time)?,
            (Some(_), None) => Err(candle_core::Error::Msg(
                "this SDXL UNet needs the pooled text embedding and size ids".into(),
            )),
            (None, Some(_)) => Err(candle_core::Error::Msg(
                "this UNet takes no pooled text embedding (an SD 1.5 UNet with SDXL text encoders?)"
                    .into(),
            )),
        }
    }

    /// Sinusoidal timestep embedding `[1, block_out_channels[0]]`, computed in f32 as diffusers does.
    fn timestep_embedding(&self, timestep: f64, device: &Device) -> candle_core::Result<Tensor> {
        let dim = self.config.block_out_channels[0];
        sinusoids(&[timestep], dim, sinusoid_style(&self.config), device)
    }
}

/// The first half of `sample` when its two halves are equal, and so are those of
/// the time embedding `temb` (SDXL's differs per half when the size ids do).
fn equal_halves(sample: &Tensor, temb: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let batch = sample.dim(0)?;
    if batch < 2 || batch % 2 != 0 {
        return Ok(None);
    }
    let half = batch / 2;
    for tensor in [sample, temb] {
        let same = tensor
            .narrow(0, 0, half)?
            .eq(&tensor.narrow(0, half, half)?)?
            .flatten_all()?
            .min(0)?
            .to_scalar::<u8>()?;
        if same == 0 {
            return Ok(None);
        }
    }
    sample.narrow(0, 0, half).map(Some)
}

fn sinusoid_style(config: &UNetConfig) -> SinusoidStyle {
    SinusoidStyle {
        flip_sin_to_cos: config.flip_sin_to_cos,
        freq_shift: config.freq_shift,
    }
}

/// SDXL's `add_embedding`, when the config asks for it.
fn load_text_time(
    vb: &VarBuilder,
    config: &UNetConfig,
    temb_channels: usize,
) -> candle_core::Result<Option<TextTimeEmbedding>> {
    let sizes = config
        .text_time()
        .map_err(|p| candle_core::Error::Msg(format!("`{}` {}", p.field, p.message)))?;
    sizes
        .map(|(id_dim, input_dim)| {
            let sizes = TextTimeSizes {
                id_dim,
                input_dim,
                temb_channels,
                style: sinusoid_style(config),
            };
            TextTimeEmbedding::load(vb, sizes)
        })
        .transpose()
}
