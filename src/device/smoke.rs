//! A first test of a GPU before a run trusts it: a convolution, a matrix multiply
//! and a softmax in the run's number format, read back and compared with the CPU.
//!
//! A device can open and still fail at its first kernel (candle's Metal matrix
//! multiply needs `simdgroup_matrix`, which Intel Macs lack; CUDA's bf16 kernels are
//! missing below compute capability 8.0), so opening it proves little.

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::softmax_last_dim;

/// Largest difference from the CPU's f32 result a working device may show (bf16
/// keeps 8 bits of mantissa; the values are below 1).
const TOLERANCE: f32 = 0.05;

/// The test's arithmetic on `device` in `dtype`, as f32 values on the host.
fn smoke_values(device: &Device, dtype: DType) -> candle_core::Result<Vec<f32>> {
    let image = (Tensor::arange(0f32, 32.0, device)?.reshape((1, 2, 4, 4))? / 32.0)?;
    let kernel = (Tensor::arange(0f32, 36.0, device)?.reshape((2, 2, 3, 3))? / 36.0)?;
    let features = image
        .to_dtype(dtype)?
        .conv2d(&kernel.to_dtype(dtype)?, 1, 1, 1, 1)?
        .reshape((2, 16))?;
    let scores = (features.matmul(&features.t()?)? / 16.0)?;
    softmax_last_dim(&scores)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// Runs the test on `device` in `dtype`; an error says what failed or differed.
pub fn smoke_test(device: &Device, dtype: DType) -> candle_core::Result<()> {
    let got = smoke_values(device, dtype)?;
    let want = smoke_values(&Device::Cpu, DType::F32)?;
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, |worst, d| {
            if d.is_nan() {
                f32::INFINITY
            } else {
                worst.max(d)
            }
        });
    if got.len() != want.len() || worst > TOLERANCE {
        candle_core::bail!("wrong results (off by {worst} from the CPU's)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_on_the_cpu_in_f32_and_f16() -> candle_core::Result<()> {
        smoke_test(&Device::Cpu, DType::F32)?;
        smoke_test(&Device::Cpu, DType::F16)
    }

    #[test]
    fn the_values_are_not_trivial() -> candle_core::Result<()> {
        // A softmax of equal scores would pass whatever the convolution computed.
        let values = smoke_values(&Device::Cpu, DType::F32)?;
        assert!(values.iter().any(|v| (v - 0.5).abs() > 0.05), "{values:?}");
        Ok(())
    }
}
