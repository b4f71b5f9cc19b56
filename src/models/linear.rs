//! Fully connected layers.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::cpu;
use super::timing::{LayerKind, timed};

/// `x · weightᵀ + bias`, as `torch.nn.Linear`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// candle's layer: it holds the weight, and runs where the CPU kernel does not apply.
    candle: candle_nn::Linear,
    /// The bias, or zeros for a layer without one (the CPU kernel adds it while
    /// writing the product instead of in a second pass).
    bias: Tensor,
}

impl Linear {
    fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let kernel_bias = match &bias {
            Some(bias) => bias.clone(),
            None => Tensor::zeros(weight.dim(0)?, weight.dtype(), weight.device())?,
        };
        Ok(Self {
            candle: candle_nn::Linear::new(weight, bias),
            bias: kernel_bias,
        })
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        self.candle.weight()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        timed(LayerKind::Linear, xs.device(), || {
            if cpu::applies_to(xs) && self.weight().dtype() == DType::F32 {
                return xs.contiguous()?.apply_op3_no_bwd(
                    self.weight(),
                    &self.bias,
                    &cpu::CpuLinear,
                );
            }
            self.candle.forward(xs)
        })
    }
}

/// Loads `weight` `[out, in]` and `bias` `[out]` from `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Linear::new(weight, Some(bias))
}

/// Loads a layer without bias (`weight` `[out, in]`) from `vb`.
pub fn linear_no_bias(
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, None)
}
