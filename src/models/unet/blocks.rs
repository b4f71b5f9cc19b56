//! The UNet's down, mid and up blocks.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::super::conv::Conv2d;
use super::super::resnet::{ResnetBlock2D, ResnetConfig, Upsample2D, conv3x3};
use super::transformer::{CrossInputs, Transformer2D, TransformerConfig};

/// Settings every block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct BlockContext {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub context_dim: usize,
    pub linear_projection: bool,
}

/// The transformers of one block that has attention.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads: usize,
    /// Transformer blocks (each with one `attn2`) per transformer.
    pub depth: usize,
}

/// The `attn2` layers met while loading, in IP-Adapter order.
#[derive(Debug, Default)]
pub struct CrossLayers {
    /// The width of each layer.
    pub channels: Vec<usize>,
    /// How many of them each transformer holds, transformers in the same order.
    pub per_transformer: Vec<usize>,
}

impl CrossLayers {
    /// Transformers met so far.
    pub fn transformers(&self) -> usize {
        self.per_transformer.len()
    }
}

impl BlockContext {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: self.eps,
        }
    }

    fn transformer(&self, channels: usize, shape: AttentionShape) -> TransformerConfig {
        TransformerConfig {
            channels,
            context_dim: self.context_dim,
            heads: shape.heads,
            groups: self.groups,
            depth: shape.depth,
            linear_projection: self.linear_projection,
        }
    }
}

/// Loads `count` transformers of `vb.attentions.{i}` (none for a block without
/// attention, `config` `None`), appending their `attn2` layers to `cross_layers`
/// (IP-Adapter layer order).
fn load_attentions(
    vb: &VarBuilder,
    count: usize,
    config: Option<TransformerConfig>,
    cross_layers: &mut CrossLayers,
) -> candle_core::Result<Vec<Transformer2D>> {
    let Some(config) = config else {
        return Ok(Vec::new());
    };
    (0..count)
        .map(|i| {
            let first = cross_layers.channels.len();
            let t = Transformer2D::load(vb.pp(format!("attentions.{i}")), config, first)?;
            let layers = t.cross_attention_layers();
            cross_layers
                .channels
                .extend(std::iter::repeat_n(config.channels, layers));
            cross_layers.per_transformer.push(layers);
            Ok(t)
        })
        .collect()
}

/// The inputs every block's forward pass needs besides the feature map.
pub struct StepInputs<'a> {
    pub temb_silu: &'a Tensor,
    pub cross: CrossInputs<'a>,
}

impl StepInputs<'_> {
    /// The time embedding's rows for `xs`: all of them, or the first half where
    /// `xs` is one copy of the batch's two equal halves (their embeddings are equal too).
    fn temb_silu_for(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let rows = xs.dim(0)?;
        if rows == self.cross.batch {
            Ok(self.temb_silu.clone())
        } else {
            self.temb_silu.narrow(0, 0, rows)
        }
    }
}

/// `CrossAttnDownBlock2D` (with attentions) or `DownBlock2D` (without).
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<Conv2d>,
}

/// The shape of one down block, as diffusers derives it from the UNet's config.
#[derive(Debug, Clone, Copy)]
pub struct DownBlockLayout {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Resnets (and transformers, with attention) in the block.
    pub layers: usize,
    /// Its transformers; `None` for a block without attention.
    pub attention: Option<AttentionShape>,
    /// Whether a strided convolution halves the size at the end.
    pub downsample: bool,
}

impl DownBlock {
    /// Loads one down block.
    pub fn load(
        vb: VarBuilder,
        ctx: &BlockContext,
        layout: DownBlockLayout,
        cross_layers: &mut CrossLayers,
    ) -> candle_core::Result<Self> {
        let DownBlockLayout {
            in_channels,
            out_channels,
            layers,
            attention,
            downsample,
        } = layout;
        let resnets = (0..layers)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { out_channels };
                ResnetBlock2D::load(vb.pp(format!("resnets.{i}")), ctx.resnet(cin, out_channels))
            })
            .collect::<candle_core::Result<_>>()?;
        let transformer = attention.map(|shape| ctx.transformer(out_channels, shape));
        let attentions = load_attentions(&vb, layers, transformer, cross_layers)?;
        let downsampler = downsample
            .then(|| conv3x3(out_channels, out_channels, 2, vb.pp("downsamplers.0.conv")))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Runs the block, pushing every intermediate output onto `skips`.
    pub fn forward(
        &self,
        xs: &Tensor,
        inputs: &StepInputs,
        skips: &mut Vec<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(&inputs.temb_silu_for(&xs)?))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, &inputs.cross)?;
            }
            skips.push(xs.clone());
        }
        if let Some(down) = &self.downsampler {
            xs = down.forward(&xs)?;
            skips.push(xs.clone());
        }
        Ok(xs)
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
pub struct MidBlock {
    resnet_in: ResnetBlock2D,
    attention: Transformer2D,
    resnet_out: ResnetBlock2D,
}

impl MidBlock {
    /// Loads the mid block.
    pub fn load(
        vb: VarBuilder,
        ctx: &BlockContext,
        (channels, shape): (usize, AttentionShape),
        cross_layers: &mut CrossLayers,
    ) -> candle_core::Result<Self> {
        let transformer = Some(ctx.transformer(channels, shape));
        let mut attentions = load_attentions(&vb, 1, transformer, cross_layers)?;
        Ok(Self {
            resnet_in: ResnetBlock2D::load(vb.pp("resnets.0"), ctx.resnet(channels, channels))?,
            attention: attentions.remove(0),
            resnet_out: ResnetBlock2D::load(vb.pp("resnets.1"), ctx.resnet(channels, channels))?,
        })
    }

    /// Runs the mid block.
    pub fn forward(&self, xs: &Tensor, inputs: &StepInputs) -> candle_core::Result<Tensor> {
        let xs = self
            .resnet_in
            .forward(xs, Some(&inputs.temb_silu_for(xs)?))?;
        let xs = self.attention.forward(&xs, &inputs.cross)?;
        self.resnet_out
            .forward(&xs, Some(&inputs.temb_silu_for(&xs)?))
    }
}

/// Channel counts of one up block, as diffusers derives them.
#[derive(Debug, Clone, Copy)]
pub struct UpBlockChannels {
    /// Output channels of the previous (deeper) up block.
    pub prev_out: usize,
    /// Output channels of this block.
    pub out: usize,
    /// Channels of the down block that feeds this block's last skip connection.
    pub skip_in: usize,
}

/// `CrossAttnUpBlock2D` (with attentions) or `UpBlock2D` (without).
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Upsample2D>,
}

/// The shape of one up block, as diffusers derives it from the UNet's config.
#[derive(Debug, Clone, Copy)]
pub struct UpBlockLayout {
    pub channels: UpBlockChannels,
    /// Resnets (and transformers, with attention) in the block: layers_per_block + 1.
    pub layers: usize,
    /// Its transformers; `None` for a block without attention.
    pub attention: Option<AttentionShape>,
    /// Whether an upsampler doubles the size at the end.
    pub upsample: bool,
}

impl UpBlock {
    /// Loads one up block.
    pub fn load(
        vb: VarBuilder,
        ctx: &BlockContext,
        layout: UpBlockLayout,
        cross_layers: &mut CrossLayers,
    ) -> candle_core::Result<Self> {
        let UpBlockLayout {
            channels,
            layers,
            attention,
            upsample,
        } = layout;
        let resnets = (0..layers)
            .map(|i| {
                let skip = if i + 1 == layers {
                    channels.skip_in
                } else {
                    channels.out
                };
                let cin = if i == 0 {
                    channels.prev_out
                } else {
                    channels.out
                };
                ResnetBlock2D::load(
                    vb.pp(format!("resnets.{i}")),
                    ctx.resnet(cin + skip, channels.out),
                )
            })
            .collect::<candle_core::Result<_>>()?;
        let transformer = attention.map(|shape| ctx.transformer(channels.out, shape));
        let attentions = load_attentions(&vb, layers, transformer, cross_layers)?;
        let upsampler = upsample
            .then(|| Upsample2D::load(vb.pp("upsamplers.0"), channels.out))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Runs the block, taking its skip connections from the end of `skips`; the
    /// upsampler (if any) scales to the size of the next remaining skip.
    pub fn forward(
        &self,
        xs: &Tensor,
        inputs: &StepInputs,
        skips: &mut Vec<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .ok_or_else(|| candle_core::Error::Msg("UNet skip stack underflow".into()))?;
            xs = resnet.forward(&Tensor::cat(&[&xs, &skip], 1)?, Some(inputs.temb_silu))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, &inputs.cross)?;
            }
        }
        if let Some(up) = &self.upsampler {
            let (height, width) = match skips.last() {
                Some(skip) => (skip.dim(2)?, skip.dim(3)?),
                None => (xs.dim(2)? * 2, xs.dim(3)? * 2),
            };
            xs = up.forward(&xs, height, width)?;
        }
        Ok(xs)
    }
}
