//! Random numbers that reproduce PyTorch's CPU generator, so a seed gives the
//! same latents as diffusers and ComfyUI with a CPU generator.

use candle_core::{Device, Tensor};

const MT_N: usize = 624;
const MT_M: usize = 397;

/// torch's CPU generator: MT19937 seeded with `init_genrand(seed)`, plus the
/// cached second Box–Muller value of its double-precision normal sampler.
#[derive(Clone)]
pub struct TorchRng {
    state: [u32; MT_N],
    index: usize,
    cached_normal: Option<f64>,
}

impl TorchRng {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        // torch seeds the 32-bit Mersenne Twister with the low 32 bits of the seed.
        state[0] = seed as u32;
        for i in 1..MT_N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            state,
            index: MT_N,
            cached_normal: None,
        }
    }

    /// The next raw 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// A float32 uniform in [0, 1) from 24 random bits: one value of `torch.rand`
    /// (which draws serially, one `u32` per value).
    pub fn rand_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// A float64 uniform in [0, 1) from 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// torch's scalar normal sampler (used for tensors of fewer than 16 values).
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// One value of torch's serial normal sampler, which `randn`/`normal_` take on a
    /// non-contiguous float32 tensor: a double-precision Box–Muller value cast to f32.
    pub fn randn_serial(&mut self) -> f32 {
        self.normal_f64() as f32
    }

    /// `torch.randn(n, generator=g)` as float32 values.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.rand_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !n.is_multiple_of(16) {
            // torch redraws the last 16 values from fresh uniforms.
            let tail = &mut data[n - 16..];
            for value in tail.iter_mut() {
                *value = self.rand_f32();
            }
            box_muller_16(tail);
        }
        data
    }

    /// `torch.randn(shape, generator=g)` as an f32 tensor on `device`.
    pub fn randn_tensor(
        &mut self,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.iter().product();
        Tensor::from_vec(self.randn(n), shape, &Device::Cpu)?.to_device(device)
    }
}

/// A fresh 32-bit seed from the clock, for runs without a fixed seed.
pub fn random_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (u64::from(now.subsec_nanos()) ^ now.as_secs().rotate_left(17)) % (1 << 32)
}

/// Turns 16 uniforms into 16 normals in place, torch's `normal_fill_16`.
fn box_muller_16(values: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - values[j];
        let u2 = values[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        values[j] = radius * theta.cos();
        values[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: &[f32], expected: &[f32]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-4, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn matches_torch_seed_0_randn_4x4() {
        let values = TorchRng::new(0).randn(16);
        assert_close(&values[..4], &[-1.1258, -1.1524, -0.2506, -0.4339]);
    }

    #[test]
    fn matches_torch_seed_42_randn_2x3x4_with_tail() {
        let values = TorchRng::new(42).randn(24);
        assert_close(&values[..4], &[1.9269, 1.4873, 0.9007, -2.1055]);
    }

    #[test]
    fn matches_torch_tail_values() {
        let values = TorchRng::new(42).randn(24);
        assert_close(
            &values[16..],
            &[
                -0.3097268, -0.3957105, 0.8034093, -0.6215954, -0.5920005, -0.0630744, -0.8285543,
                0.3308984,
            ],
        );
    }

    #[test]
    fn matches_torch_small_tensors_and_stream_continuation() {
        let mut rng = TorchRng::new(0);
        assert_close(
            &rng.randn(5),
            &[1.5409961, -0.2934289, -2.1787894, 0.5684313, -1.0845224],
        );
        assert_close(&rng.randn(3), &[-1.3985955, 0.4033468, 0.8380263]);
        let mut rng = TorchRng::new(1);
        assert_close(&rng.randn(1), &[0.6613522]);
        assert_close(&rng.randn(3), &[0.2669241, 0.0616773, 0.6213173]);
    }

    /// `torch.rand` takes one `u32` a value, so its stream lines up with what follows:
    /// cubiq's noise draws the flips' `torch.rand(1)` coins between two other draws.
    #[test]
    fn matches_torch_rand_one_draw_per_value() {
        let mut rng = TorchRng::new(0);
        let values: Vec<f32> = (0..3).map(|_| rng.rand_f32()).collect();
        assert_close(&values, &[0.496_256_6, 0.768_221_8, 0.088_477_43]);
        let mut skipped = TorchRng::new(0);
        skipped.next_u32();
        assert_eq!(skipped.rand_f32(), values[1]);
    }

    #[test]
    fn matches_mt19937_reference_output() {
        // First output of the reference mt19937 seeded with 5489 (C++ std::mt19937 default).
        assert_eq!(TorchRng::new(5489).next_u32(), 3_499_211_612);
    }
}
