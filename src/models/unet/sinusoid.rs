//! The sinusoidal embedding diffusers uses for timesteps and SDXL's size ids.

use candle_core::{Device, Tensor};

/// How the UNet's config shapes its sinusoids (`flip_sin_to_cos`, `freq_shift`).
#[derive(Debug, Clone, Copy)]
pub(super) struct SinusoidStyle {
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

/// `[values.len(), dim]`: each value's sinusoids, computed in f32 as diffusers'
/// `get_timestep_embedding` does (cosines first when `flip_sin_to_cos`).
pub(super) fn sinusoids(
    values: &[f64],
    dim: usize,
    style: SinusoidStyle,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let shift = style.freq_shift as f32;
    let ln_max_period = (10000f32).ln();
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (-ln_max_period * i as f32 / (half as f32 - shift)).exp())
        .collect();
    let mut out = Vec::with_capacity(values.len() * dim);
    for &value in values {
        let t = value as f32;
        let args = frequencies.iter().map(|f| t * f);
        let sin = args.clone().map(f32::sin);
        let cos = args.map(f32::cos);
        if style.flip_sin_to_cos {
            out.extend(cos.chain(sin));
        } else {
            out.extend(sin.chain(cos));
        }
        // An odd width gets a zero column, as diffusers pads it.
        out.extend(std::iter::repeat_n(0f32, dim - 2 * half));
    }
    Tensor::from_vec(out, (values.len(), dim), device)
}
