//! Euler (diffusers' `EulerDiscreteScheduler` without churn): the deterministic twin
//! of Euler ancestral, and the scheduler SDXL's own folder names.

use candle_core::Tensor;

use super::sigmas::{LinspaceTimesteps, initial_sigma, step_sigmas};
use super::{NoiseSchedule, Scheduler, StepOutput};
use crate::rng::TorchRng;

/// The Euler sampler.
pub struct Euler {
    timesteps: Vec<f64>,
    /// One sigma per step plus a final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
}

impl Euler {
    /// Euler for `steps` steps.
    pub fn new(schedule: &NoiseSchedule, steps: usize, karras: bool) -> Self {
        let (sigmas, timesteps) =
            step_sigmas(schedule, steps, karras, LinspaceTimesteps::Fractional);
        Self {
            timesteps,
            init_noise_sigma: initial_sigma(schedule, &sigmas),
            sigmas,
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
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let sigma = self.sigmas[step];
        let pred_original = (sample - (noise_pred * sigma)?)?;
        let derivative = ((sample - &pred_original)? / sigma)?;
        let prev_sample = (sample + (derivative * (self.sigmas[step + 1] - sigma))?)?;
        Ok(StepOutput {
            prev_sample,
            pred_original,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values of diffusers 0.42.1 `EulerDiscreteScheduler` from SDXL's scheduler config
    // (tests/fixtures/sdxl/cases/base_posneg/case.json).
    #[test]
    fn leading_timesteps_and_sigmas_match_diffusers_for_sdxl() {
        let euler = Euler::new(&NoiseSchedule::sdxl(), 4, false);
        assert_eq!(euler.timesteps(), &[751.0, 501.0, 251.0, 1.0]);
        let expected = [4.116_698_3, 1.623_693, 0.698_398_6, 0.041_314_48, 0.0];
        for (got, want) in euler.sigmas.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!((euler.init_noise_sigma() - 4.236_414).abs() < 1e-5);
    }
}
