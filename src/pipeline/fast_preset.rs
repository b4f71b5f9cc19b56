//! The Fast preset: TCD's few-step sampling with guidance kept on, so the negative
//! image (which lives in the unconditioned half) still acts, and the picture decoded by
//! TAESD. The LoRA it needs is the catalogue's [`crate::weights::catalogue::TCD_LORA`].

use super::{FinalDecode, Request};
use crate::schedulers::{DEFAULT_ETA, SamplerKind};

/// Steps of the Fast preset (TCD-SD15 is trained for 2 to 8).
pub const FAST_STEPS: usize = 4;
/// CFG of the Fast preset: above 1, so the negative image keeps acting (at 1 it has no
/// effect), and low, because the distilled LoRA burns the picture at SD 1.5's 7.5.
pub const FAST_CFG: f64 = 2.0;

/// Sets the Fast preset's sampler, steps, guidance, eta and final decode.
pub fn apply_fast_preset(request: &mut Request) {
    request.sampler = SamplerKind::Tcd;
    request.steps = FAST_STEPS;
    request.cfg = FAST_CFG;
    request.eta = DEFAULT_ETA;
    request.final_decode = FinalDecode::Taesd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_keeps_guidance_and_so_the_negative_image() {
        let mut request = Request::default();
        apply_fast_preset(&mut request);
        assert!(
            !request.guidance_off(),
            "CFG {} drops the negative image",
            request.cfg
        );
        assert_eq!(
            (request.sampler, request.steps, request.final_decode),
            (SamplerKind::Tcd, FAST_STEPS, FinalDecode::Taesd)
        );
        request.validate().expect("the preset is a valid request");
    }
}
