//! GroupNorm, optionally followed by SiLU, in two passes over each group.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;
use super::math::{dispatch, silu};

/// `group_norm(x, groups, eps) · gamma + beta`, then SiLU when `silu` is set.
/// `x` is `[batch, channels, ...]`; gamma and beta are `[channels]`.
#[derive(Debug, Clone, Copy)]
pub struct CpuGroupNorm {
    pub groups: usize,
    pub eps: f64,
    pub silu: bool,
}

impl CustomOp3 for CpuGroupNorm {
    fn name(&self) -> &'static str {
        "minus-group-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims = xs_layout.shape().dims();
        let channels = dims.get(1).copied().unwrap_or(0);
        if dims.len() < 2 || self.groups == 0 || channels % self.groups != 0 {
            candle_core::bail!(
                "{name}: cannot split {:?} into {} groups",
                xs_layout.shape(),
                self.groups
            );
        }
        let xs = contiguous_f32(xs, xs_layout, name)?;
        let gamma = contiguous_f32(gamma, gamma_layout, name)?;
        let beta = contiguous_f32(beta, beta_layout, name)?;
        if gamma.len() != channels || beta.len() != channels {
            candle_core::bail!("{name}: {channels} channels but {} weights", gamma.len());
        }
        let plane = dims[2..].iter().product::<usize>();
        let group_channels = channels / self.groups;
        let group_len = group_channels * plane;
        if group_len == 0 {
            candle_core::bail!("{name}: {:?} has empty groups", xs_layout.shape());
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(group_len)
            .zip(xs.par_chunks(group_len))
            .enumerate()
            .for_each(|(index, (dst, src))| {
                let first_channel = (index % self.groups) * group_channels;
                let affine = (
                    &gamma[first_channel..first_channel + group_channels],
                    &beta[first_channel..first_channel + group_channels],
                );
                dispatch!(|| normalize_group(src, dst, plane, affine, self.eps, self.silu));
            });
        Ok((CpuStorage::F32(out), xs_layout.shape().clone()))
    }
}

/// Normalises one group (`gamma.len()` channels of `plane` values each).
#[inline(always)]
fn normalize_group(
    src: &[f32],
    dst: &mut [f32],
    plane: usize,
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    with_silu: bool,
) {
    // Mean and variance in two passes, accumulated in f64 lanes: as exact as
    // torch's and independent of the group size.
    let count = src.len() as f64;
    let mean = sum_mapped(src, |x| x as f64) / count;
    let variance = sum_mapped(src, |x| (x as f64 - mean) * (x as f64 - mean)) / count;
    let inv_std = 1.0 / (variance + eps).sqrt();
    for ((dst, src), (&g, &b)) in dst
        .chunks_exact_mut(plane)
        .zip(src.chunks_exact(plane))
        .zip(gamma.iter().zip(beta))
    {
        let scale = (inv_std * g as f64) as f32;
        let shift = (b as f64 - mean * inv_std * g as f64) as f32;
        if with_silu {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = silu(s * scale + shift);
            }
        } else {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s * scale + shift;
            }
        }
    }
}

/// Sums `f` over `values` with eight independent accumulators, so the loop vectorises.
#[inline(always)]
fn sum_mapped(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};

    use super::CpuGroupNorm;

    #[test]
    fn matches_candle_with_and_without_silu() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let xs = (seeded_randn(6, 2.0, &[2, 6, 5, 3])? + 3.0)?;
        let gamma = seeded_randn(7, 1.0, &[6])?;
        let beta = seeded_randn(8, 1.0, &[6])?;
        let reference = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), 6, 3, 1e-5)?;
        for silu in [false, true] {
            let op = CpuGroupNorm {
                groups: 3,
                eps: 1e-5,
                silu,
            };
            let ours = xs.apply_op3_no_bwd(&gamma, &beta, &op)?;
            let mut expected = reference.forward(&xs)?;
            if silu {
                expected = expected.silu()?;
            }
            assert!(
                max_relative_difference(&ours, &expected)? < 1e-5,
                "silu {silu}"
            );
        }
        let error = |xs: &Tensor, groups: usize| {
            let op = CpuGroupNorm {
                groups,
                eps: 1e-5,
                silu: false,
            };
            xs.apply_op3_no_bwd(&gamma, &beta, &op)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let uneven = error(&xs, 4);
        assert!(
            uneven.contains("cannot split [2, 6, 5, 3] into 4 groups"),
            "{uneven}"
        );
        // Groups that divide the channels, so that the empty plane is what is refused.
        let empty = Tensor::zeros((1, 6, 0), candle_core::DType::F32, &device)?;
        let message = error(&empty, 3);
        assert!(message.contains("[1, 6, 0] has empty groups"), "{message}");
        Ok(())
    }
}
