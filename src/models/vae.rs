//! The VAE decoder of `AutoencoderKL`: latents → RGB in [-1, 1].

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config_check::{
    CheckedConfig, ConfigProblem, MAX_LAYERS, channels_and_groups, positive_at_most,
    positive_finite,
};
use super::conv::Conv2d;
use super::group_norm::GroupNorm;
use super::layers::attention;
use super::linear::{Linear, linear};
use super::resnet::{ResnetBlock2D, ResnetConfig, Upsample2D, conv1x1, conv3x3};
use super::vae_tiles::{DecodeCost, decode_as_planned, plan_decode};
use crate::device::memory::available_bytes;

/// The VAE's GroupNorm epsilon (fixed in diffusers' encoder/decoder).
const VAE_NORM_EPS: f64 = 1e-6;

/// The fields of a diffusers `AutoencoderKL` config the decoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers")]
    pub layers_per_block: usize,
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_out_channels")]
    pub out_channels: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Whether an SDXL run in f16 decodes in f32 (diffusers' default: SDXL's own VAE
    /// overflows in f16; madebyollin's fp16-fix VAE turns it off).
    #[serde(default = "default_true")]
    pub force_upcast: bool,
}

fn default_layers() -> usize {
    2
}
fn default_latent_channels() -> usize {
    4
}
fn default_out_channels() -> usize {
    3
}
fn default_groups() -> usize {
    32
}
fn default_scaling() -> f64 {
    0.18215
}
fn default_true() -> bool {
    true
}

impl Default for VaeConfig {
    /// SD 1.5's VAE.
    fn default() -> Self {
        Self {
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: default_layers(),
            latent_channels: default_latent_channels(),
            out_channels: default_out_channels(),
            norm_num_groups: default_groups(),
            scaling_factor: default_scaling(),
            use_post_quant_conv: true,
            force_upcast: true,
        }
    }
}

/// Single-head self-attention over the pixels of the mid block.
struct AttentionBlock {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl AttentionBlock {
    fn load(vb: VarBuilder, channels: usize, groups: usize) -> candle_core::Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::load(vb.pp("group_norm"), groups, channels, VAE_NORM_EPS)?,
            to_q: linear(channels, channels, vb.pp("to_q"))?,
            to_k: linear(channels, channels, vb.pp("to_k"))?,
            to_v: linear(channels, channels, vb.pp("to_v"))?,
            to_out: linear(channels, channels, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let tokens = self
            .group_norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?;
        let q = self.to_q.forward(&tokens)?;
        let k = self.to_k.forward(&tokens)?;
        let v = self.to_v.forward(&tokens)?;
        let out = self.to_out.forward(&attention(&q, &k, &v, 1, None)?)?;
        let out = out
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        out + xs
    }
}

struct DecoderUpBlock {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

impl CheckedConfig for VaeConfig {
    fn check(&self) -> Result<(), ConfigProblem> {
        channels_and_groups(&self.block_out_channels, self.norm_num_groups)?;
        positive_at_most("layers_per_block", self.layers_per_block, MAX_LAYERS)?;
        positive_at_most("latent_channels", self.latent_channels, 64)?;
        positive_at_most("out_channels", self.out_channels, 64)?;
        // A zero scale divides the latents by zero: a black picture, not an error.
        positive_finite("scaling_factor", self.scaling_factor)
    }
}

/// The decoder half of the VAE (plus `post_quant_conv`).
pub struct VaeDecoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid_resnet_in: ResnetBlock2D,
    mid_attention: AttentionBlock,
    mid_resnet_out: ResnetBlock2D,
    up_blocks: Vec<DecoderUpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    scaling_factor: f64,
    /// The widest channel count at full resolution, which sets a decode's memory.
    full_res_channels: usize,
    /// The dtype of its weights, which latents are cast to before decoding.
    dtype: candle_core::DType,
}

impl VaeDecoder {
    /// Loads the decoder; `vb` points at the VAE's tensors (`decoder.*`, `post_quant_conv.*`).
    pub fn load(vb: VarBuilder, config: &VaeConfig) -> candle_core::Result<Self> {
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            return Err(candle_core::Error::Msg(
                "block_out_channels is empty".into(),
            ));
        };
        let groups = config.norm_num_groups;
        let resnet = |cin, cout| ResnetConfig {
            in_channels: cin,
            out_channels: cout,
            temb_channels: None,
            groups,
            eps: VAE_NORM_EPS,
        };
        let dec = vb.pp("decoder");
        let mut up_blocks = Vec::with_capacity(channels.len());
        let mut prev = last;
        for (i, &out) in channels.iter().rev().enumerate() {
            let block = dec.pp(format!("up_blocks.{i}"));
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let cin = if j == 0 { prev } else { out };
                    ResnetBlock2D::load(block.pp(format!("resnets.{j}")), resnet(cin, out))
                })
                .collect::<candle_core::Result<_>>()?;
            let upsampler = (i + 1 < channels.len())
                .then(|| Upsample2D::load(block.pp("upsamplers.0"), out))
                .transpose()?;
            up_blocks.push(DecoderUpBlock { resnets, upsampler });
            prev = out;
        }
        let latent = config.latent_channels;
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| conv1x1(latent, latent, vb.pp("post_quant_conv")))
            .transpose()?;
        Ok(Self {
            post_quant_conv,
            conv_in: conv3x3(latent, last, 1, dec.pp("conv_in"))?,
            mid_resnet_in: ResnetBlock2D::load(dec.pp("mid_block.resnets.0"), resnet(last, last))?,
            mid_attention: AttentionBlock::load(dec.pp("mid_block.attentions.0"), last, groups)?,
            mid_resnet_out: ResnetBlock2D::load(dec.pp("mid_block.resnets.1"), resnet(last, last))?,
            up_blocks,
            conv_norm_out: GroupNorm::load(dec.pp("conv_norm_out"), groups, first, VAE_NORM_EPS)?,
            conv_out: conv3x3(first, config.out_channels, 1, dec.pp("conv_out"))?,
            scaling_factor: config.scaling_factor,
            // The last upsampler's output (the next-to-first channel count) and the last block.
            full_res_channels: channels.get(1).map_or(first, |&c| c.max(first)),
            dtype: vb.dtype(),
        })
    }

    /// The dtype it decodes in (f32 for an upcast SDXL VAE in an f16 run).
    pub fn dtype(&self) -> candle_core::DType {
        self.dtype
    }

    /// Decodes SD latents (as the sampler produces them, i.e. before dividing by the
    /// scaling factor) into images `[batch, 3, 8h, 8w]`, roughly in [-1, 1], unclamped.
    ///
    /// One image at a time: the full-resolution activations of a batch of four at
    /// 768² take gigabytes (more where a GPU rounds buffers up), and every operation
    /// of the decoder works within one sample (GroupNorm's statistics too), so the
    /// images are the same as [`Self::decode_batched`]'s, bit for bit. An image larger
    /// than one 512² tile decodes in blended tiles (see [`crate::models::vae_tiles`])
    /// above 1024² pixels, where the memory left on its device would not hold a whole
    /// decode, or once a whole decode has run out of device memory.
    pub fn decode(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, _, height, width) = latents.dims4()?;
        let device = latents.device();
        let cost = self.decode_cost(device, latents.dtype());
        let one = |latents: &Tensor| {
            let plan = plan_decode(height, width, &cost, available_bytes(device));
            decode_as_planned(latents, plan, |part| self.decode_batched(part))
        };
        if batch <= 1 {
            return one(latents);
        }
        let images = (0..batch)
            .map(|i| one(&latents.narrow(0, i, 1)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&images, 0)
    }

    /// The memory one image's decode takes on `device` in `dtype`.
    pub fn decode_cost(
        &self,
        device: &candle_core::Device,
        dtype: candle_core::DType,
    ) -> DecodeCost {
        DecodeCost::on(device, dtype, self.full_res_channels)
    }

    /// [`Self::decode`] of the whole batch in one pass and untiled, at `batch` times
    /// the peak memory.
    pub fn decode_batched(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = (latents / self.scaling_factor)?;
        if let Some(conv) = &self.post_quant_conv {
            xs = conv.forward(&xs)?;
        }
        xs = self.conv_in.forward(&xs)?;
        xs = self.mid_resnet_in.forward(&xs, None)?;
        xs = self.mid_attention.forward(&xs)?;
        xs = self.mid_resnet_out.forward(&xs, None)?;
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                xs = resnet.forward(&xs, None)?;
            }
            if let Some(up) = &block.upsampler {
                let (_, _, h, w) = xs.dims4()?;
                xs = up.forward(&xs, 2 * h, 2 * w)?;
            }
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}
