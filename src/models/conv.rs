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
    /// A 1×1 kernel, stride 1, no padding: a matrix multiply over the pixels.
    pointwise: bool,
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
        let bias = vb.get(out_channels, "bias")?;
        Self::load_weight(
            vb,
            (in_channels, out_channels, kernel),
            stride,
            padding,
            bias,
        )
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
        let bias = Tensor::zeros(out_channels, vb.dtype(), vb.device())?;
        Self::load_weight(
            vb,
            (in_channels, out_channels, kernel),
            stride,
            padding,
            bias,
        )
    }

    /// Loads the weight of `(in, out, kernel)` and puts it beside `bias`.
    fn load_weight(
        vb: VarBuilder,
        (in_channels, out_channels, kernel): (usize, usize, usize),
        stride: usize,
        padding: usize,
        bias: Tensor,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias,
            stride,
            padding,
            pointwise: (kernel, stride, padding) == (1, 1, 0),
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
        if self.pointwise {
            return self.pointwise(xs);
        }
        let out = xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        out.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }

    /// A 1×1 convolution as one GEMM `[out, in] × [in, h·w]` per sample: GPUs'
    /// convolution kernels would first copy the input into im2col form.
    fn pointwise(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let out_channels = self.weight.dim(0)?;
        let weight = self.weight.reshape((out_channels, channels))?;
        let pixels = xs.reshape((batch, channels, height * width))?;
        weight
            .broadcast_matmul(&pixels)?
            .broadcast_add(&self.bias.reshape((1, (), 1))?)?
            .reshape((batch, out_channels, height, width))
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        timed(LayerKind::Convolution, xs.device(), || self.convolve(xs))
    }
}
