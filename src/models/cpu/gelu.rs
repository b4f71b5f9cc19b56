//! The exact (erf) GELU, elementwise.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;
use super::math::{dispatch, gelu_erf};

/// `x · Φ(x)` for every element.
#[derive(Debug, Clone, Copy)]
pub struct CpuGelu;

/// Elements handled per parallel task.
const ELEMENTS_PER_TASK: usize = 16 << 10;

impl CustomOp1 for CpuGelu {
    fn name(&self) -> &'static str {
        "minus-gelu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(xs, layout, self.name())?;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(xs.par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(dst, src)| dispatch!(|| apply(src, dst)));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[inline(always)]
fn apply(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = gelu_erf(s);
    }
}

#[cfg(test)]
mod tests {
    use super::CpuGelu;
    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};

    #[test]
    fn matches_candle_gelu_erf() -> candle_core::Result<()> {
        let xs = seeded_randn(2, 3.0, &[3, 50_000])?;
        let ours = xs.apply_op1_no_bwd(&CpuGelu)?;
        assert!(max_relative_difference(&ours, &xs.gelu_erf()?)? < 2e-6);
        Ok(())
    }
}
