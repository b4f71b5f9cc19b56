//! DDIM (eta 0) with "leading" timestep spacing and `set_alpha_to_one = false`.

use candle_core::Tensor;

use super::{NoiseSchedule, Scheduler, StepOutput, diffused, predicted_original};
use crate::rng::TorchRng;

/// The deterministic DDIM sampler.
pub struct Ddim {
    timesteps: Vec<f64>,
    /// ᾱ at each step's timestep and at the timestep it steps to.
    alphas: Vec<(f64, f64)>,
}

impl Ddim {
    /// DDIM for `steps` steps: `t_k = (N-1-k)·(T/N) + offset`.
    pub fn new(schedule: &NoiseSchedule, steps: usize) -> Self {
        let train = schedule.train_steps();
        let ratio = train / steps.max(1);
        let acp =
            |t: i64| f64::from(schedule.alphas_cumprod[t.clamp(0, train as i64 - 1) as usize]);
        // With `set_alpha_to_one = false` the step past the end uses ᾱ[0].
        let final_alpha = f64::from(schedule.alphas_cumprod[0]);
        let mut timesteps = Vec::with_capacity(steps);
        let mut alphas = Vec::with_capacity(steps);
        for k in (0..steps).rev() {
            let t = (k * ratio + schedule.steps_offset) as i64;
            let prev = t - ratio as i64;
            timesteps.push(t as f64);
            alphas.push((acp(t), if prev >= 0 { acp(prev) } else { final_alpha }));
        }
        Self { timesteps, alphas }
    }
}

impl Scheduler for Ddim {
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
        let (alpha, alpha_prev) = self.alphas[step];
        let pred_original = predicted_original(sample, noise_pred, alpha)?;
        let prev_sample = diffused(&pred_original, noise_pred, alpha_prev)?;
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
    fn leading_timesteps_match_diffusers() {
        let ddim = Ddim::new(&NoiseSchedule::sd15(), 8);
        assert_eq!(
            ddim.timesteps(),
            &[876.0, 751.0, 626.0, 501.0, 376.0, 251.0, 126.0, 1.0]
        );
        let ddim = Ddim::new(&NoiseSchedule::sd15(), 10);
        assert_eq!(ddim.timesteps()[0], 901.0);
        assert_eq!(ddim.timesteps()[9], 1.0);
        let ddim = Ddim::new(&NoiseSchedule::sd15(), 25);
        assert_eq!(&ddim.timesteps()[..3], &[961.0, 921.0, 881.0]);
    }
}
