//! 2-D convolution layers.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::cpu;
use super::timing::{LayerKind, timed};

/// A convolution with bias, square stride and padding (dilation 1, one group):
/// every convolution of the UNet and the VAE.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Loads `weight` `[out, in, kernel, kernel]` and `bias` `[out]` from `vb`.
    pub fn load(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias: vb.get(out_channels, "bias")?,
            stride,
            padding,
        })
    }

    /// Loads `weight` `[out, in, kernel, kernel]` of a convolution without bias (the
    /// bias is zero, so one kernel serves both kinds).
    pub fn load_without_bias(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias: Tensor::zeros(out_channels, vb.dtype(), vb.device())?,
            stride,
            padding,
        })
    }

    fn convolve(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if cpu::applies_to(xs) {
            let op = cpu::CpuConv2d {
                stride: self.stride,
                padding: self.padding,
            };
            return xs
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op);
        }
        let out = xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        out.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        timed(LayerKind::Convolution, xs.device(), || self.convolve(xs))
    }
}
