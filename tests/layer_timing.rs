//! `minus bench --layers`: one UNet step timed layer kind by layer kind counts every
//! layer of the step exactly once; later steps of a run skip the context's projections.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{adapter_file, context_with_random_image_tokens, fixtures, load_models};
use minus::models::timing::{self, LayerKind};
use minus::models::unet::IpScales;
use minus::pipeline::conditioning::encode_text;

/// How many tensors of the tiny UNet's file have names ending in `suffix` and `rank` dimensions.
fn count_unet_tensors(suffix: &str, rank: usize) -> usize {
    let path = fixtures().join("models/sd15/unet/diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("UNet file loads");
    tensors
        .iter()
        .filter(|(name, tensor)| name.ends_with(suffix) && tensor.rank() == rank)
        .count()
}

#[test]
fn a_timed_unet_step_counts_each_layer_once() -> anyhow::Result<()> {
    let models = load_models(Some(adapter_file("plus")));
    let device = Device::Cpu;
    let text = encode_text(&models, "a house")?.tokens.repeat((2, 1, 1))?;
    let context = context_with_random_image_tokens(&models, text);
    let ip_scale = IpScales::uniform(
        Tensor::ones((2, 1, 1), DType::F32, &device)?,
        models.unet.cross_attention_channels().len(),
    );
    let sample = Tensor::randn(0f32, 1f32, (2, 4, 16, 16), &device)?;
    let timed_step = || -> anyhow::Result<_> {
        timing::start();
        let out = models
            .unet
            .forward(&sample, 500.0, &context, Some(&ip_scale));
        let totals = timing::finish();
        assert_eq!(out?.dims(), sample.dims());
        Ok(totals)
    };
    let totals = timed_step()?;
    let second_step = timed_step()?;

    let calls = |kind: LayerKind| totals[kind as usize].1.calls;
    let blocks = count_unet_tensors("attn1.to_q.weight", 2);
    assert!(blocks > 0);
    // Every convolution weight (rank 4) is applied once per step.
    assert_eq!(
        calls(LayerKind::Convolution),
        count_unet_tensors(".weight", 4)
    );
    // Each transformer block: self-attention, text attention, image attention.
    assert_eq!(calls(LayerKind::Attention), 3 * blocks);
    assert_eq!(calls(LayerKind::Geglu), blocks);
    // Every matrix of the UNet (rank 2), and each block's two image projections.
    let linears = count_unet_tensors(".weight", 2) + 2 * blocks;
    assert_eq!(calls(LayerKind::Linear), linears);
    // Vectors named `weight` are group norms, or the blocks' three layer norms.
    let group_norms = count_unet_tensors(".weight", 1) - 3 * blocks;
    assert_eq!(calls(LayerKind::GroupNorm), group_norms);
    assert!(totals.iter().all(|(_, total)| total.secs > 0.0));

    // The second step reuses every attn2's text and image keys and values.
    let linears_later = second_step[LayerKind::Linear as usize].1.calls;
    assert_eq!(linears_later, linears - 4 * blocks);
    let unchanged = [
        LayerKind::Convolution,
        LayerKind::Attention,
        LayerKind::GroupNorm,
    ];
    for kind in unchanged {
        assert_eq!(second_step[kind as usize].1.calls, calls(kind));
    }
    Ok(())
}
