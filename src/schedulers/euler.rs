//! Euler and Euler ancestral (diffusers' `EulerDiscreteScheduler` without churn and
//! `EulerAncestralDiscreteScheduler`), "linspace" spacing with fractional timesteps, or
//! "leading" where the schedule says so (SDXL), and optionally Karras sigmas.

use candle_core::Tensor;

use super::sigmas::{LinspaceTimesteps, initial_sigma, step_sigmas};
use super::{NoiseSchedule, Scheduler, StepOutput, fresh_noise};
use crate::rng::TorchRng;

/// The Euler sampler; the ancestral one draws fresh noise from the run's generator
/// every step.
pub struct Euler {
    timesteps: Vec<f64>,
    /// One sigma per step plus a final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    ancestral: bool,
}

impl Euler {
    /// Euler (`ancestral`: Euler a) for `steps` steps.
    pub fn new(schedule: &NoiseSchedule, steps: usize, karras: bool, ancestral: bool) -> Self {
        let (sigmas, timesteps) =
            step_sigmas(schedule, steps, karras, LinspaceTimesteps::Fractional);
        Self {
            timesteps,
            init_noise_sigma: initial_sigma(schedule, &sigmas),
            sigmas,
            ancestral,
        }
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &Tensor, step: usize) -> candle_core::Result<Tensor> {
        let sigma = self.sigmas[step];
        sample / (sigma * sigma + 1.0).sqrt()
    }

    fn step(
        &mut self,
        noise_pred: &Tensor,
        step: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let sigma = self.sigmas[step];
        let sigma_to = self.sigmas[step + 1];
        let pred_original = (sample - (noise_pred * sigma)?)?;
        let derivative = ((sample - &pred_original)? / sigma)?;
        let prev_sample = if self.ancestral {
            let sigma_up = (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to)
                / (sigma * sigma))
                .sqrt();
            let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).max(0.0).sqrt();
            let prev = (sample + (derivative * (sigma_down - sigma))?)?;
            prev.add(&(fresh_noise(rng, sample)? * sigma_up)?)?
        } else {
            (sample + (derivative * (sigma_to - sigma))?)?
        };
        Ok(StepOutput {
            prev_sample,
            pred_original,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by diffusers 0.42.1 `EulerAncestralDiscreteScheduler` from SD 1.5's config.
    #[test]
    fn fractional_timesteps_and_sigma_max_match_diffusers() {
        let euler = Euler::new(&NoiseSchedule::sd15(), 25, false, true);
        assert_eq!(&euler.timesteps()[..3], &[999.0, 957.375, 915.75]);
        assert!((euler.sigmas[1] - 11.435_942).abs() < 1e-5);
        assert!((euler.init_noise_sigma() - 14.614_647).abs() < 1e-5);
        assert_eq!(euler.sigmas.len(), 26);
    }

    // Values of diffusers 0.42.1 `EulerDiscreteScheduler` from SDXL's scheduler config
    // (tests/fixtures/sdxl/cases/base_posneg/case.json).
    #[test]
    fn leading_timesteps_and_sigmas_match_diffusers_for_sdxl() {
        let euler = Euler::new(&NoiseSchedule::sdxl(), 4, false, false);
        assert_eq!(euler.timesteps(), &[751.0, 501.0, 251.0, 1.0]);
        let expected = [4.116_698_3, 1.623_693, 0.698_398_6, 0.041_314_48, 0.0];
        for (got, want) in euler.sigmas.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!((euler.init_noise_sigma() - 4.236_414).abs() < 1e-5);
    }
}
