//! LCM: the Latent Consistency Model sampler, as diffusers' `LCMScheduler` built from
//! SD 1.5's scheduler config (50 original steps, timestep scaling 10, epsilon prediction).

use candle_core::Tensor;

use super::{NoiseSchedule, Scheduler, StepOutput, diffused, fresh_noise, predicted_original};
use crate::rng::TorchRng;

/// The distilled schedule the few-step samplers pick their timesteps from: 50 evenly
/// spaced training timesteps (`original_inference_steps`).
pub const ORIGINAL_INFERENCE_STEPS: usize = 50;

/// Timestep multiplier in the boundary condition (`timestep_scaling`).
const TIMESTEP_SCALING: f32 = 10.0;
/// The data's standard deviation in the boundary condition (`sigma_data`).
const SIGMA_DATA: f32 = 0.5;

/// The timesteps of a few-step run (LCM's and TCD's, strength 1): `steps` picks,
/// evenly spaced by index, from the 50 distilled timesteps `20k - 1`, highest first.
pub fn consistency_timesteps(train_steps: usize, steps: usize) -> Vec<usize> {
    let spacing = train_steps / ORIGINAL_INFERENCE_STEPS;
    // numpy: floor(linspace(0, 50, steps, endpoint=False)), an index into the
    // distilled timesteps in descending order.
    let stride = ORIGINAL_INFERENCE_STEPS as f64 / steps.max(1) as f64;
    (0..steps)
        .map(|i| {
            let index = (i as f64 * stride).floor() as usize;
            (ORIGINAL_INFERENCE_STEPS - index.min(ORIGINAL_INFERENCE_STEPS - 1)) * spacing - 1
        })
        .collect()
}

/// The consistency model's boundary condition `(c_skip, c_out)` at `timestep`, in
/// float32 as torch computes it: how much of the sample and of the model's estimate
/// make the denoised latents (c_skip → 0 and c_out → 1 away from timestep 0).
fn boundary_scalings(timestep: usize) -> (f32, f32) {
    let scaled = timestep as f32 * TIMESTEP_SCALING;
    let denominator = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
    (
        SIGMA_DATA * SIGMA_DATA / denominator,
        scaled / denominator.sqrt(),
    )
}

/// What one LCM step needs, precomputed.
struct LcmStep {
    /// ᾱ at the step's timestep.
    alpha: f64,
    /// ᾱ at the timestep it steps to (the noise level it re-noises to).
    alpha_next: f64,
    c_skip: f64,
    c_out: f64,
}

/// The LCM sampler: every step jumps to a denoised estimate and, except the last,
/// noises it again with fresh noise from the run's generator to the next timestep.
pub struct Lcm {
    timesteps: Vec<f64>,
    steps: Vec<LcmStep>,
}

impl Lcm {
    /// LCM for `steps` steps (at most 50).
    pub fn new(schedule: &NoiseSchedule, steps: usize) -> Self {
        let chosen = consistency_timesteps(schedule.train_steps(), steps);
        let acp = |t: usize| f64::from(schedule.alphas_cumprod[t]);
        let plan = chosen
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                // The last step "steps to" its own timestep; it is never re-noised.
                let next = chosen.get(i + 1).copied().unwrap_or(t);
                let (c_skip, c_out) = boundary_scalings(t);
                LcmStep {
                    alpha: acp(t),
                    alpha_next: acp(next),
                    c_skip: f64::from(c_skip),
                    c_out: f64::from(c_out),
                }
            })
            .collect();
        Self {
            timesteps: chosen.iter().map(|&t| t as f64).collect(),
            steps: plan,
        }
    }
}

impl Scheduler for Lcm {
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
        let plan = &self.steps[step];
        let estimate = predicted_original(sample, noise_pred, plan.alpha)?;
        let denoised = ((estimate * plan.c_out)? + (sample * plan.c_skip)?)?;
        let prev_sample = if step + 1 < self.steps.len() {
            diffused(&denoised, &fresh_noise(rng, sample)?, plan.alpha_next)?
        } else {
            denoised.clone()
        };
        Ok(StepOutput {
            prev_sample,
            pred_original: denoised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by diffusers 0.42.1 `LCMScheduler.from_config` of SD 1.5's config.
    #[test]
    fn timesteps_match_diffusers() {
        assert_eq!(consistency_timesteps(1000, 4), [999, 759, 499, 259]);
        assert_eq!(consistency_timesteps(1000, 1), [999]);
        assert_eq!(consistency_timesteps(1000, 3), [999, 679, 339]);
        assert_eq!(
            consistency_timesteps(1000, 6),
            [999, 839, 679, 499, 339, 179]
        );
        assert_eq!(
            consistency_timesteps(1000, 7),
            [999, 859, 719, 579, 439, 299, 159]
        );
        let all = consistency_timesteps(1000, 50);
        assert_eq!((all[0], all[49], all.len()), (999, 19, 50));
    }

    #[test]
    fn boundary_condition_keeps_the_sample_only_near_timestep_zero() {
        let (c_skip, c_out) = boundary_scalings(0);
        assert_eq!((c_skip, c_out), (1.0, 0.0));
        let (c_skip, c_out) = boundary_scalings(999);
        assert!(
            c_skip < 1e-8 && (c_out - 1.0).abs() < 1e-6,
            "{c_skip} {c_out}"
        );
        // diffusers at timestep 19: c_skip 6.9252e-06, c_out 1.0000 (0.25 / 36100.25 and
        // 190 / sqrt(36100.25)).
        let (c_skip, c_out) = boundary_scalings(19);
        assert!((c_skip - 6.925_2e-6).abs() < 1e-10, "{c_skip}");
        assert!((c_out - 0.999_996_5).abs() < 1e-7, "{c_out}");
    }
}
