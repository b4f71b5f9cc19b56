//! The samplers: DDIM, Euler ancestral, DPM++ 2M and the few-step TCD and LCM, as
//! diffusers builds them from SD 1.5's scheduler config.

mod ddim;
mod dpmpp_2m;
mod euler;
mod lcm;
mod sigmas;
mod tcd;

use candle_core::Tensor;

use crate::choices::named_choices;
use crate::rng::TorchRng;

pub use ddim::Ddim;
pub use dpmpp_2m::DpmPp2M;
pub use euler::Euler;
pub use lcm::{Lcm, ORIGINAL_INFERENCE_STEPS};
pub use tcd::{DEFAULT_ETA, Tcd};

named_choices! {
    /// Which sampler to run.
    #[derive(Default)]
    pub enum SamplerKind {
        /// DDIM, eta 0, "leading" spacing.
        #[default]
        Ddim = "ddim",
        /// Euler ancestral, "linspace" spacing, fractional timesteps.
        EulerAncestral = "euler-a" | "euler-ancestral",
        /// Euler (no fresh noise), spaced as Euler ancestral; SDXL's default.
        Euler = "euler",
        /// DPM-Solver++ 2M (midpoint), "linspace" spacing.
        DpmPp2M = "dpmpp-2m" | "dpm++-2m",
        /// TCD (few steps; made for TCD-distilled weights), stochasticity `eta`.
        Tcd = "tcd",
        /// LCM (few steps; made for LCM-distilled weights).
        Lcm = "lcm",
    }
}

impl SamplerKind {
    /// The name A1111 uses, for the `parameters` text of saved PNGs.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIM",
            Self::EulerAncestral => "Euler a",
            Self::Euler => "Euler",
            Self::DpmPp2M => "DPM++ 2M",
            Self::Tcd => "TCD",
            Self::Lcm => "LCM",
        }
    }

    /// Whether the sampler can use Karras sigmas.
    pub fn supports_karras(self) -> bool {
        matches!(self, Self::EulerAncestral | Self::Euler | Self::DpmPp2M)
    }

    /// Whether the sampler reads the request's `eta`.
    pub fn uses_eta(self) -> bool {
        matches!(self, Self::Tcd)
    }

    /// The most steps the sampler takes: the few-step samplers pick their timesteps
    /// from a distilled schedule of 50.
    pub fn max_steps(self) -> usize {
        match self {
            Self::Tcd | Self::Lcm => ORIGINAL_INFERENCE_STEPS,
            Self::Ddim | Self::EulerAncestral | Self::Euler | Self::DpmPp2M => 1000,
        }
    }
}

/// SD 1.5's training noise schedule ("scaled_linear" betas).
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    /// `cumprod(1 - beta)` in float32, as torch computes it.
    pub alphas_cumprod: Vec<f32>,
    /// Added to every "leading" timestep (1 for SD 1.5).
    pub steps_offset: usize,
    /// Whether the sigma-space samplers (Euler, Euler a, DPM++ 2M) space their timesteps
    /// "leading", as SDXL's scheduler config says, rather than their own "linspace"
    /// (what SD 1.5's config, which names no spacing, gives them).
    pub leading_spacing: bool,
}

impl NoiseSchedule {
    /// The schedule for `beta_start`..`beta_end` over `train_steps` steps.
    pub fn scaled_linear(
        beta_start: f64,
        beta_end: f64,
        train_steps: usize,
        steps_offset: usize,
    ) -> Self {
        let betas = linspace_f32(
            beta_start.sqrt() as f32,
            beta_end.sqrt() as f32,
            train_steps,
        );
        let mut product = 1.0f32;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                product *= 1.0 - b * b;
                product
            })
            .collect();
        Self {
            alphas_cumprod,
            steps_offset,
            leading_spacing: false,
        }
    }

    /// SD 1.5: betas 0.00085..0.012, 1000 steps, offset 1.
    pub fn sd15() -> Self {
        Self::scaled_linear(0.00085, 0.012, 1000, 1)
    }

    /// SDXL: SD 1.5's betas, with "leading" spacing for the sigma-space samplers.
    pub fn sdxl() -> Self {
        Self {
            leading_spacing: true,
            ..Self::sd15()
        }
    }

    /// Number of training timesteps.
    pub fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }
}

/// `torch.linspace(start, end, n)` in float32 (both halves computed from their own end).
pub fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n < 2 {
        return vec![start; n];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// What one sampler step produces.
pub struct StepOutput {
    /// The latents for the next step.
    pub prev_sample: Tensor,
    /// The model's current estimate of the clean latents (for previews).
    pub pred_original: Tensor,
}

/// The clean latents an epsilon prediction implies at noise level `alpha` (ᾱ):
/// `(x − √(1−ᾱ)·ε) / √ᾱ`.
fn predicted_original(
    sample: &Tensor,
    noise_pred: &Tensor,
    alpha: f64,
) -> candle_core::Result<Tensor> {
    (sample - (noise_pred * (1.0 - alpha).sqrt())?)? / alpha.sqrt()
}

/// `√ᾱ·clean + √(1−ᾱ)·noise`: `clean` taken to noise level `alpha` (ᾱ) with `noise`.
fn diffused(clean: &Tensor, noise: &Tensor, alpha: f64) -> candle_core::Result<Tensor> {
    (clean * alpha.sqrt())? + (noise * (1.0 - alpha).sqrt())?
}

/// Fresh Gaussian noise shaped like `like`, drawn from the run's generator in one go,
/// as diffusers' `randn_tensor` draws a batch.
fn fresh_noise(rng: &mut TorchRng, like: &Tensor) -> candle_core::Result<Tensor> {
    rng.randn_tensor(like.dims(), like.device())?
        .to_dtype(like.dtype())
}

/// A sampler configured for one run of `timesteps().len()` steps.
pub trait Scheduler: Send {
    /// The timesteps fed to the UNet, one per step.
    fn timesteps(&self) -> &[f64];

    /// Factor applied to the initial noise (1 for samplers working in the VP parameterisation).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// Scales the latents before they enter the UNet at `step` (identity by default).
    fn scale_model_input(&self, sample: &Tensor, _step: usize) -> candle_core::Result<Tensor> {
        Ok(sample.clone())
    }

    /// Advances `sample` by one step given the guided noise prediction.
    fn step(
        &mut self,
        noise_pred: &Tensor,
        step: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput>;
}

/// Builds a sampler for `steps` steps over `schedule` (`karras` and `eta` are read only
/// by the samplers that use them).
pub fn build(
    kind: SamplerKind,
    karras: bool,
    eta: f64,
    steps: usize,
    schedule: &NoiseSchedule,
) -> Box<dyn Scheduler> {
    match kind {
        SamplerKind::Ddim => Box::new(Ddim::new(schedule, steps)),
        SamplerKind::EulerAncestral => Box::new(Euler::new(schedule, steps, karras, true)),
        SamplerKind::Euler => Box::new(Euler::new(schedule, steps, karras, false)),
        SamplerKind::DpmPp2M => Box::new(DpmPp2M::new(schedule, steps, karras)),
        SamplerKind::Tcd => Box::new(Tcd::new(schedule, steps, eta)),
        SamplerKind::Lcm => Box::new(Lcm::new(schedule, steps)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_names_and_their_older_spellings_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(SamplerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(
            SamplerKind::from_name("euler-ancestral"),
            Some(SamplerKind::EulerAncestral)
        );
        assert_eq!(SamplerKind::from_name("plms"), None);
    }

    #[test]
    fn sd15_schedule_matches_known_values() {
        let schedule = NoiseSchedule::sd15();
        // diffusers: alphas_cumprod[0] = 0.99915, [999] ~= 0.0046601.
        assert!((schedule.alphas_cumprod[0] - 0.99915).abs() < 1e-6);
        assert!((schedule.alphas_cumprod[999] - 0.004_660_1).abs() < 1e-6);
        assert!((schedule.alphas_cumprod[500] - 0.276_332_5).abs() < 1e-6);
    }
}
