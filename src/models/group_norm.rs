//! Group normalisation, with SiLU fused in where the networks apply it next.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::cpu;
use super::timing::{LayerKind, timed};

/// `torch.nn.GroupNorm` with affine weights.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
    /// candle's implementation, for devices and dtypes the CPU kernel does not cover.
    fallback: candle_nn::GroupNorm,
}

impl GroupNorm {
    /// Loads `weight` and `bias` (`[channels]`) from `vb`.
    pub fn load(
        vb: VarBuilder,
        groups: usize,
        channels: usize,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        let fallback =
            candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
        Ok(Self {
            weight,
            bias,
            groups,
            eps,
            fallback,
        })
    }

    /// The normalisation followed by SiLU.
    pub fn forward_silu(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(xs, true)
    }

    fn apply(&self, xs: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        timed(LayerKind::GroupNorm, xs.device(), || {
            self.normalise(xs, silu)
        })
    }

    fn normalise(&self, xs: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        if cpu::applies_to(xs) {
            let op = cpu::CpuGroupNorm {
                groups: self.groups,
                eps: self.eps,
                silu,
            };
            return xs
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op);
        }
        let normed = self.fallback.forward(xs)?;
        if silu { normed.silu() } else { Ok(normed) }
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(xs, false)
    }
}
