//! Sigma schedules shared by the Karras-style samplers (Euler, Euler a, DPM++ 2M).

use super::NoiseSchedule;

/// `sqrt((1 - ᾱ) / ᾱ)` for every training timestep, in float32 as torch computes it.
pub fn training_sigmas(schedule: &NoiseSchedule) -> Vec<f32> {
    schedule
        .alphas_cumprod
        .iter()
        .map(|a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// `linspace(0, train_steps - 1, n)` reversed, in float64 as numpy computes it.
pub fn linspace_timesteps(train_steps: usize, n: usize) -> Vec<f64> {
    let last = (train_steps - 1) as f64;
    if n < 2 {
        return vec![last; n];
    }
    let step = last / (n - 1) as f64;
    (0..n).rev().map(|i| i as f64 * step).collect()
}

/// `np.interp(t, arange(len), sigmas)`: piecewise-linear lookup at fractional timesteps.
pub fn interpolate(sigmas: &[f32], t: f64) -> f64 {
    let last = sigmas.len() - 1;
    if t <= 0.0 {
        return f64::from(sigmas[0]);
    }
    if t >= last as f64 {
        return f64::from(sigmas[last]);
    }
    let low = t.floor() as usize;
    let frac = t - low as f64;
    let (a, b) = (f64::from(sigmas[low]), f64::from(sigmas[low + 1]));
    a + frac * (b - a)
}

/// The Karras et al. (2022) schedule with rho 7 between the extreme training sigmas.
pub fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let min_inv = sigma_min.powf(1.0 / RHO);
    let max_inv = sigma_max.powf(1.0 / RHO);
    (0..n)
        .map(|i| {
            let ramp = if n < 2 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            (max_inv + ramp * (min_inv - max_inv)).powf(RHO)
        })
        .collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, interpolating in log space.
pub fn sigma_to_t(sigma: f64, training: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let logs: Vec<f64> = training.iter().map(|s| f64::from(s.ln())).collect();
    let low = logs
        .iter()
        .rposition(|l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(logs.len() - 2);
    let (lo, hi) = (logs[low], logs[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Karras sigmas for `n` steps and their timesteps (rounded when `round` is set).
pub fn karras_schedule(training: &[f32], n: usize, round: bool) -> (Vec<f64>, Vec<f64>) {
    let sigma_min = f64::from(training[0]);
    let sigma_max = f64::from(training[training.len() - 1]);
    let sigmas = karras(sigma_min, sigma_max, n);
    let timesteps = sigmas
        .iter()
        .map(|s| {
            let t = sigma_to_t(*s, training);
            if round { t.round_ties_even() } else { t }
        })
        .collect();
    (sigmas, timesteps)
}

/// How a sampler with "linspace" spacing picks its timesteps when not using Karras sigmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinspaceTimesteps {
    /// `linspace(0, T-1, N)[::-1]`, kept fractional (Euler ancestral).
    Fractional,
    /// `round(linspace(0, T-1, N+1))[::-1][:-1]`, rounding half to even as numpy does
    /// (DPM++ 2M); its Karras timesteps are rounded too.
    Rounded,
}

/// The per-step sigmas (plus a final 0) and timesteps of a Karras-style sampler, both
/// at float32 precision as diffusers stores them.
pub fn step_sigmas(
    schedule: &NoiseSchedule,
    steps: usize,
    karras: bool,
    spacing: LinspaceTimesteps,
) -> (Vec<f64>, Vec<f64>) {
    let training = training_sigmas(schedule);
    let rounded = spacing == LinspaceTimesteps::Rounded;
    let (mut sigmas, mut timesteps) = if karras {
        karras_schedule(&training, steps, rounded)
    } else if schedule.leading_spacing {
        let timesteps = leading_timesteps(schedule, steps, rounded);
        let sigmas = timesteps
            .iter()
            .map(|t| interpolate(&training, *t))
            .collect();
        (sigmas, timesteps)
    } else {
        let timesteps: Vec<f64> = if rounded {
            linspace_timesteps(schedule.train_steps(), steps + 1)
                .into_iter()
                .take(steps)
                .map(f64::round_ties_even)
                .collect()
        } else {
            linspace_timesteps(schedule.train_steps(), steps)
        };
        let sigmas = timesteps
            .iter()
            .map(|t| interpolate(&training, *t))
            .collect();
        (sigmas, timesteps)
    };
    sigmas.push(0.0);
    to_f32_precision(&mut sigmas);
    to_f32_precision(&mut timesteps);
    (sigmas, timesteps)
}

/// Rounds to float32 precision (sigmas and timesteps are stored as float32 tensors).
pub fn to_f32_precision(values: &mut [f64]) {
    for v in values {
        *v = f64::from(*v as f32);
    }
}

/// "leading" spacing, as SDXL's scheduler config asks: every `T / N`-th training
/// timestep from 0, reversed, plus `steps_offset`. DPM-Solver (`rounded`) divides by
/// `N + 1` and drops the last (diffusers' `set_timesteps` of each).
fn leading_timesteps(schedule: &NoiseSchedule, steps: usize, rounded: bool) -> Vec<f64> {
    let count = if rounded { steps + 1 } else { steps };
    let ratio = schedule.train_steps() / count.max(1);
    (0..count)
        .rev()
        .take(steps)
        .map(|i| (i * ratio + schedule.steps_offset) as f64)
        .collect()
}

/// The initial noise's scale for the sigma-space samplers: `sigma_max` with "linspace"
/// spacing, `sqrt(sigma_max² + 1)` with "leading" (diffusers' `init_noise_sigma`).
pub fn initial_sigma(schedule: &NoiseSchedule, sigmas: &[f64]) -> f64 {
    let max = sigmas.iter().copied().fold(0.0, f64::max);
    if schedule.leading_spacing {
        (max * max + 1.0).sqrt()
    } else {
        max
    }
}
