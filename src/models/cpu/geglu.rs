//! The GEGLU gate: `hidden · gelu(gate)` for a projection that holds both halves.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::{dispatch, gelu_erf};
use super::{contiguous_f32, with_last_dim};

/// Input `[..., 2·n]` (hidden then gate, as `net.0.proj` writes them), output `[..., n]`.
#[derive(Debug, Clone, Copy)]
pub struct CpuGeglu;

/// Rows handled per parallel task.
const ROWS_PER_TASK: usize = 64;

impl CustomOp1 for CpuGeglu {
    fn name(&self) -> &'static str {
        "minus-geglu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims = layout.shape().dims();
        let width = dims.last().copied().unwrap_or(0);
        if width == 0 || width % 2 != 0 {
            candle_core::bail!("{name}: last dimension of {:?} is not even", layout.shape());
        }
        let half = width / 2;
        let xs = contiguous_f32(xs, layout, name)?;
        let mut out = vec![0f32; xs.len() / 2];
        out.par_chunks_mut(half * ROWS_PER_TASK)
            .zip(xs.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(dst, src)| dispatch!(|| gate_rows(src, dst, half)));
        Ok((CpuStorage::F32(out), with_last_dim(dims, half)))
    }
}

#[inline(always)]
fn gate_rows(src: &[f32], dst: &mut [f32], half: usize) {
    for (dst, src) in dst.chunks_exact_mut(half).zip(src.chunks_exact(2 * half)) {
        let (hidden, gate) = src.split_at(half);
        for ((d, &h), &g) in dst.iter_mut().zip(hidden).zip(gate) {
            *d = h * gelu_erf(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CpuGeglu;
    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};

    #[test]
    fn matches_hidden_times_exact_gelu_of_gate() -> candle_core::Result<()> {
        let xs = seeded_randn(1, 2.0, &[2, 70, 12])?;
        let ours = xs.apply_op1_no_bwd(&CpuGeglu)?;
        let expected = (xs.narrow(2, 0, 6)? * xs.narrow(2, 6, 6)?.gelu_erf()?)?;
        assert!(max_relative_difference(&ours, &expected)? < 2e-6);
        Ok(())
    }
}
