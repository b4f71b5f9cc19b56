//! `x · weightᵀ + bias` as one GEMM into an output that already holds the bias.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};

use super::{Product, contiguous_f32, gemm, with_last_dim};

/// Input `[..., in]`, weight `[out, in]`, bias `[out]`; output `[..., out]`.
#[derive(Debug, Clone, Copy)]
pub struct CpuLinear;

impl CustomOp3 for CpuLinear {
    fn name(&self) -> &'static str {
        "minus-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (out_dim, in_dim) = weight_layout.shape().dims2()?;
        let dims = xs_layout.shape().dims();
        if dims.last() != Some(&in_dim)
            || bias_layout.shape().elem_count() != out_dim
            || in_dim == 0
            || out_dim == 0
        {
            candle_core::bail!(
                "{name}: input {:?} does not fit weight {:?} and bias {:?}",
                xs_layout.shape(),
                weight_layout.shape(),
                bias_layout.shape()
            );
        }
        let xs = contiguous_f32(xs, xs_layout, name)?;
        let weight = contiguous_f32(weight, weight_layout, name)?;
        let bias = contiguous_f32(bias, bias_layout, name)?;
        let rows = xs.len() / in_dim.max(1);
        // Every row starts as the bias (written once: a zeroed buffer would be written twice).
        let mut out = Vec::with_capacity(rows * out_dim);
        for _ in 0..rows {
            out.extend_from_slice(bias);
        }
        // SAFETY: out is [rows, out_dim], xs [rows, in_dim], and weight [out_dim, in_dim]
        // read as its transpose [in_dim, out_dim] (row stride 1, column stride in_dim).
        unsafe {
            gemm(
                (rows, out_dim, in_dim),
                out.as_mut_ptr(),
                out_dim,
                xs.as_ptr(),
                in_dim,
                weight.as_ptr(),
                (1, in_dim),
                Product {
                    scale: 1.0,
                    accumulate: true,
                    parallel: true,
                },
            )
        };
        Ok((CpuStorage::F32(out), with_last_dim(dims, out_dim)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use super::CpuLinear;
    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};

    #[test]
    fn matches_candle_linear() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let xs = seeded_randn(3, 1.0, &[2, 9, 7])?;
        let weight = seeded_randn(4, 1.0, &[5, 7])?;
        let bias = seeded_randn(5, 1.0, &[5])?;
        let ours = xs.apply_op3_no_bwd(&weight, &bias, &CpuLinear)?;
        let expected = candle_nn::Linear::new(weight.clone(), Some(bias.clone())).forward(&xs)?;
        assert_eq!(ours.dims(), &[2, 9, 5]);
        assert!(max_relative_difference(&ours, &expected)? < 1e-5);
        let wrong = Tensor::zeros((5, 6), candle_core::DType::F32, &device)?;
        let no_outputs = Tensor::zeros((0, 7), candle_core::DType::F32, &device)?;
        let no_bias = Tensor::zeros(0, candle_core::DType::F32, &device)?;
        for (weight, bias, expected) in [
            (
                &wrong,
                &bias,
                "input [2, 9, 7] does not fit weight [5, 6] and bias [5]",
            ),
            (
                &no_outputs,
                &no_bias,
                "does not fit weight [0, 7] and bias [0]",
            ),
        ] {
            let message = xs
                .apply_op3_no_bwd(weight, bias, &CpuLinear)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(expected), "{message}");
        }
        Ok(())
    }
}
