//! TCD: Trajectory Consistency Distillation's strategic stochastic sampling, as diffusers'
//! `TCDScheduler` built from SD 1.5's scheduler config (LCM's timesteps, epsilon prediction).

use candle_core::Tensor;

use super::lcm::consistency_timesteps;
use super::{NoiseSchedule, Scheduler, StepOutput, diffused, fresh_noise, predicted_original};
use crate::rng::TorchRng;

/// The default `eta` (the paper's gamma), as in diffusers' `TCDScheduler.step`.
pub const DEFAULT_ETA: f64 = 0.3;

/// ᾱ at the three timesteps of one TCD step.
struct TcdAlphas {
    /// At the step's timestep t.
    current: f64,
    /// At the timestep it steps to, t'.
    next: f64,
    /// At the intermediate s = ⌊(1 − eta)·t'⌋ the estimate is first brought to.
    intermediate: f64,
}

/// The TCD sampler: each step moves the model's estimate to s, below the next timestep,
/// then (eta > 0, all but the last step) noises it up to the next timestep with fresh
/// noise from the run's generator. eta 0 is deterministic; eta 1 goes down to the clean
/// estimate each step and re-noises it whole, like LCM.
pub struct Tcd {
    timesteps: Vec<f64>,
    alphas: Vec<TcdAlphas>,
    eta: f64,
}

/// s = ⌊(1 − eta)·t'⌋ in float32, as torch computes it from a long timestep.
fn intermediate_timestep(eta: f64, next: usize) -> usize {
    ((1.0 - eta) as f32 * next as f32).floor() as usize
}

impl Tcd {
    /// TCD for `steps` steps (at most 50) with stochasticity `eta` (0..=1).
    pub fn new(schedule: &NoiseSchedule, steps: usize, eta: f64) -> Self {
        let chosen = consistency_timesteps(schedule.train_steps(), steps);
        let acp = |t: usize| f64::from(schedule.alphas_cumprod[t]);
        let alphas = chosen
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                // The last step steps to timestep 0.
                let next = chosen.get(i + 1).copied().unwrap_or(0);
                TcdAlphas {
                    current: acp(t),
                    next: acp(next),
                    intermediate: acp(intermediate_timestep(eta, next)),
                }
            })
            .collect();
        Self {
            timesteps: chosen.iter().map(|&t| t as f64).collect(),
            alphas,
            eta,
        }
    }
}

impl Scheduler for Tcd {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        noise_pred: &Tensor,
        step: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let alphas = &self.alphas[step];
        let pred_original = predicted_original(sample, noise_pred, alphas.current)?;
        let at_intermediate = diffused(&pred_original, noise_pred, alphas.intermediate)?;
        let prev_sample = if self.eta > 0.0 && step + 1 < self.alphas.len() {
            // From s up to the next timestep: ᾱ shrinks by ᾱ_next / ᾱ_s.
            let kept = alphas.next / alphas.intermediate;
            diffused(&at_intermediate, &fresh_noise(rng, sample)?, kept)?
        } else {
            at_intermediate
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

    #[test]
    fn intermediate_timesteps_round_as_torch_does() {
        // torch: floor((1 - 0.3) * tensor(759)) = 531; in float64 0.2·500 = 99.99… would
        // floor to 99 where torch's float32 gives 100.
        assert_eq!(intermediate_timestep(0.3, 759), 531);
        assert_eq!(intermediate_timestep(0.8, 500), 100);
        assert_eq!(intermediate_timestep(0.9, 300), 30);
        assert_eq!(intermediate_timestep(1.0, 999), 0);
        assert_eq!(intermediate_timestep(0.0, 259), 259);
    }

    #[test]
    fn eta_zero_draws_no_noise() -> candle_core::Result<()> {
        let mut tcd = Tcd::new(&NoiseSchedule::sd15(), 4, 0.0);
        let mut rng = TorchRng::new(1);
        let sample = Tensor::ones(
            (1, 4, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )?;
        tcd.step(&sample, 0, &sample, &mut rng)?;
        assert_eq!(rng.next_u32(), TorchRng::new(1).next_u32());
        Ok(())
    }
}
