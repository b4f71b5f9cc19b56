//! DPM-Solver++ 2M (midpoint, `lower_order_final`, final sigma 0) with "linspace"
//! spacing and, optionally, Karras sigmas.

use candle_core::Tensor;

use super::sigmas::{LinspaceTimesteps, step_sigmas};
use super::{NoiseSchedule, Scheduler, StepOutput};
use crate::rng::TorchRng;

/// The DPM++ 2M sampler; keeps the previous step's data prediction.
pub struct DpmPp2M {
    timesteps: Vec<f64>,
    /// One sigma per step plus a final 0.
    sigmas: Vec<f64>,
    previous_x0: Option<Tensor>,
}

impl DpmPp2M {
    /// DPM++ 2M for `steps` steps.
    pub fn new(schedule: &NoiseSchedule, steps: usize, karras: bool) -> Self {
        let (sigmas, timesteps) = step_sigmas(schedule, steps, karras, LinspaceTimesteps::Rounded);
        Self {
            timesteps,
            sigmas,
            previous_x0: None,
        }
    }

    /// λ = log(α) − log(σ) for a sigma in the VE parameterisation.
    fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let sigma_t = sigma * alpha;
        (alpha, sigma_t, alpha.ln() - sigma_t.ln())
    }
}

impl Scheduler for DpmPp2M {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        noise_pred: &Tensor,
        step: usize,
        sample: &Tensor,
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let (alpha_s, sigma_s, lambda_s) = Self::alpha_sigma_lambda(self.sigmas[step]);
        let x0 = ((sample - (noise_pred * sigma_s)?)? / alpha_s)?;
        let sigma_next = self.sigmas[step + 1];
        let is_last = step + 1 == self.timesteps.len();
        let prev_sample = if sigma_next == 0.0 {
            // First order towards sigma 0 lands exactly on the data prediction.
            x0.clone()
        } else {
            let (alpha_t, sigma_t, lambda_t) = Self::alpha_sigma_lambda(sigma_next);
            let h = lambda_t - lambda_s;
            let coeff = alpha_t * ((-h).exp() - 1.0);
            let base = (sample * (sigma_t / sigma_s))?;
            match (&self.previous_x0, is_last) {
                (Some(previous), false) if step > 0 => {
                    let (_, _, lambda_prev) = Self::alpha_sigma_lambda(self.sigmas[step - 1]);
                    let r0 = (lambda_s - lambda_prev) / h;
                    let d1 = ((&x0 - previous)? * (1.0 / r0))?;
                    ((base - (&x0 * coeff)?)? - (d1 * (0.5 * coeff))?)?
                }
                _ => (base - (&x0 * coeff)?)?,
            }
        };
        self.previous_x0 = Some(x0.clone());
        Ok(StepOutput {
            prev_sample,
            pred_original: x0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by diffusers 0.42.1 `DPMSolverMultistepScheduler` from SD 1.5's config.
    #[test]
    fn linspace_timesteps_match_diffusers() {
        let dpm = DpmPp2M::new(&NoiseSchedule::sd15(), 7, false);
        assert_eq!(
            dpm.timesteps(),
            &[999.0, 856.0, 714.0, 571.0, 428.0, 285.0, 143.0]
        );
    }

    #[test]
    fn karras_schedule_matches_diffusers() {
        let dpm = DpmPp2M::new(&NoiseSchedule::sd15(), 12, true);
        let expected_t = [
            999.0, 933.0, 854.0, 761.0, 646.0, 506.0, 345.0, 190.0, 78.0, 23.0, 4.0, 0.0,
        ];
        assert_eq!(dpm.timesteps(), &expected_t);
        let expected_sigmas = [
            14.614647, 9.945206, 6.617723, 4.294073, 2.708041, 1.653179, 0.972118, 0.547242,
            0.292625, 0.147136, 0.068640, 0.029168, 0.0,
        ];
        for (ours, theirs) in dpm.sigmas.iter().zip(expected_sigmas) {
            assert!((ours - theirs).abs() < 1e-5, "{ours} vs {theirs}");
        }
    }
}
