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
            // candle's CPU matmul of a transposed batch (the VAE's attention tokens)
            // with its broadcast weight gets every sample after the first wrong, in f16
            // and f32 alike (huggingface/candle#3744, still open when this was written):
            // give it contiguous rows (free when they already are).
            self.candle.forward(&xs.contiguous()?)
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Tensor};

    use super::Linear;

    #[test]
    fn transposed_batches_give_each_sample_its_own_product() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.1, (8, 8), &device)?.to_dtype(DType::F16)?;
        let linear = Linear::new(weight, None)?;
        // `[3, tokens, channels]` as the VAE's attention makes it: a transposed view.
        let channels_first = Tensor::randn(0f32, 1.0, (3, 8, 16), &device)?.to_dtype(DType::F16)?;
        let tokens = channels_first.transpose(1, 2)?;
        let batched = linear.forward(&tokens)?;
        for i in 0..3 {
            let one = linear.forward(&tokens.narrow(0, i, 1)?)?;
            let apart = (one - batched.narrow(0, i, 1)?)?
                .abs()?
                .to_dtype(DType::F32)?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(apart, 0.0, "sample {i} differs from its own product");
        }
        Ok(())
    }
}
