//! The convolutional blocks shared by the UNet and the VAE: ResNet blocks and
//! the resampling convolutions.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::group_norm::GroupNorm;
use super::linear::{Linear, linear};

/// A 3×3 convolution with padding 1 (and the given stride).
pub fn conv3x3(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    Conv2d::load(vb, in_channels, out_channels, 3, stride, 1)
}

/// A 1×1 convolution.
pub fn conv1x1(
    in_channels: usize,
    out_channels: usize,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    Conv2d::load(vb, in_channels, out_channels, 1, 1, 0)
}

/// Sizes of one ResNet block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding, `None` for the VAE (no time conditioning).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

/// diffusers' `ResnetBlock2D` (time-shift "default", output scale 1).
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// Loads a block from `vb`.
    pub fn load(vb: VarBuilder, config: ResnetConfig) -> candle_core::Result<Self> {
        let (cin, cout) = (config.in_channels, config.out_channels);
        let time_emb_proj = config
            .temb_channels
            .map(|t| linear(t, cout, vb.pp("time_emb_proj")))
            .transpose()?;
        let conv_shortcut = (cin != cout)
            .then(|| conv1x1(cin, cout, vb.pp("conv_shortcut")))
            .transpose()?;
        Ok(Self {
            norm1: GroupNorm::load(vb.pp("norm1"), config.groups, cin, config.eps)?,
            conv1: conv3x3(cin, cout, 1, vb.pp("conv1"))?,
            time_emb_proj,
            norm2: GroupNorm::load(vb.pp("norm2"), config.groups, cout, config.eps)?,
            conv2: conv3x3(cout, cout, 1, vb.pp("conv2"))?,
            conv_shortcut,
        })
    }

    /// `xs`: `[batch, in, h, w]`; `temb_silu`: the time embedding after SiLU, `[batch, temb]`.
    pub fn forward(&self, xs: &Tensor, temb_silu: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb_silu) {
            h = h.broadcast_add(&proj.forward(temb)?.unsqueeze(2)?.unsqueeze(3)?)?;
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        shortcut + h
    }
}

/// Nearest-neighbour upsampling to an exact size, then a 3×3 convolution
/// (`upsamplers.0.conv`).
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Loads the convolution from `vb` (pointing at `upsamplers.0`).
    pub fn load(vb: VarBuilder, channels: usize) -> candle_core::Result<Self> {
        Ok(Self {
            conv: conv3x3(channels, channels, 1, vb.pp("conv"))?,
        })
    }

    /// Upsamples `xs` to `(height, width)` (twice its size, or the size of the
    /// matching skip connection when the latent is not a multiple of 8).
    pub fn forward(&self, xs: &Tensor, height: usize, width: usize) -> candle_core::Result<Tensor> {
        self.conv.forward(&xs.upsample_nearest2d(height, width)?)
    }
}
