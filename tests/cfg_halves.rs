//! A CFG batch, the same latents twice, computes its shared start once (up to the
//! first cross-attention); each half must come out as it does beside any other half.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{adapter_file, context_with_random_image_tokens, load_models, relative_error};
use minus::models::unet::IpScales;
use minus::pipeline::conditioning::encode_text;

#[test]
fn equal_halves_give_what_each_half_gives_beside_another() -> anyhow::Result<()> {
    let models = load_models(Some(adapter_file("plus")));
    let device = Device::Cpu;
    // Different prompts and image tokens per half, as CFG has.
    let uncond = encode_text(&models, "")?.tokens;
    let cond = encode_text(&models, "a house in winter")?.tokens;
    let context = context_with_random_image_tokens(&models, Tensor::cat(&[&uncond, &cond], 0)?);
    let ip_scale = IpScales::uniform(
        Tensor::new(&[[[0.5f32]], [[1.0]]], &device)?,
        models.unet.cross_attention_channels().len(),
    );
    let latents = Tensor::randn(0f32, 1f32, (1, 4, 16, 16), &device)?;
    let other = Tensor::randn(0f32, 1f32, (1, 4, 16, 16), &device)?;
    let step = |first: &Tensor, second: &Tensor| -> anyhow::Result<Tensor> {
        let sample = Tensor::cat(&[first, second], 0)?;
        let out = models
            .unet
            .forward(&sample, 500.0, &context, Some(&ip_scale))?;
        Ok(out.to_dtype(DType::F32)?)
    };
    let shared = step(&latents, &latents)?;
    let uncond_alone = step(&latents, &other)?.i(0)?;
    let cond_alone = step(&other, &latents)?.i(1)?;
    assert_eq!(shared.dims(), &[2, 4, 16, 16]);
    // Only rounding differs (the shared start multiplies half as many rows).
    let uncond_error = relative_error(&shared.i(0)?, &uncond_alone);
    let cond_error = relative_error(&shared.i(1)?, &cond_alone);
    assert!(uncond_error < 1e-5, "uncond half: {uncond_error}");
    assert!(cond_error < 1e-5, "cond half: {cond_error}");
    // The halves differ, so a step that returned one of them twice would fail.
    assert!(relative_error(&shared.i(0)?, &shared.i(1)?) > 1e-3);
    Ok(())
}
