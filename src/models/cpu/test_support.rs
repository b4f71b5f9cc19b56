//! Inputs and comparisons for the kernels' tests.
//!
//! Inputs come from a seeded generator so a failure reproduces on every run and
//! machine, and differences are measured relative to the expected value's size,
//! because f32 rounding grows with magnitude: an absolute bound that holds for
//! values near 1 fails for the occasional value near 50.

use candle_core::{Device, Tensor};

use crate::rng::TorchRng;

/// Normal values with standard deviation `std`, the same for the same `seed`.
pub fn seeded_randn(seed: u64, std: f64, shape: &[usize]) -> candle_core::Result<Tensor> {
    TorchRng::new(seed).randn_tensor(shape, &Device::Cpu)? * std
}

/// The largest `|ours - expected| / (1 + |expected|)` over all elements.
pub fn max_relative_difference(ours: &Tensor, expected: &Tensor) -> candle_core::Result<f32> {
    let scale = (expected.abs()? + 1.0)?;
    ((ours - expected)?.abs()? / scale)?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()
}
