//! The CFG denoising loop and decoding: `generate` is what the CLI, the engine
//! thread and the tests call.

use std::time::Instant;

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::conditioning::{Conditioning, EmbeddingCache, prepare_with_masks};
// Kept under this path too, where the parity tests have always found it.
use super::decoded::FinalDecode;
pub use super::decoded::to_images;
use super::methods::WeightType;
use super::models::Models;
use super::phase::Phase;
use super::preview::{PreviewKind, render};
use super::request::Request;
use super::slots::{cross_context, repeat_batch};
use crate::models::family::ModelFamily;
use crate::models::taesd::TaesdDecoder;
use crate::models::unet::{Coverage, IpScales, TextTime};
use crate::rng::TorchRng;
use crate::schedulers;
use crate::{MinusError, Result};

/// What the step callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Cancel,
}

/// Everything known after one denoising step.
pub struct StepReport<'a> {
    /// 0-based index of the step just done.
    pub step: usize,
    /// Number of steps in the run.
    pub total: usize,
    /// The timestep the UNet saw.
    pub timestep: f64,
    /// UNet input `[2n, 4, h, w]`, batch `[uncond.., cond..]`.
    pub unet_input: &'a Tensor,
    /// UNet output (noise prediction before guidance), same layout.
    pub unet_output: &'a Tensor,
    /// Latents after the step `[n, 4, h, w]`.
    pub latents: &'a Tensor,
    /// The sampler's estimate of the clean latents.
    pub pred_original: &'a Tensor,
    /// `(uncond, cond)` IP-Adapter scales used in this step.
    pub ip_scales: (f64, f64),
    /// Seconds since the denoising loop started, the step's device work included.
    pub elapsed_secs: f64,
    /// The loaded TAESD, for previews.
    pub taesd: Option<&'a TaesdDecoder>,
    /// The model's family, whose latent colours the preview without TAESD uses.
    pub family: ModelFamily,
}

impl StepReport<'_> {
    /// The live preview of the first image drawn as `kind` asks, and the kind drawn
    /// (the latent colour map when TAESD is not loaded).
    pub fn preview(&self, kind: PreviewKind) -> Result<(RgbImage, PreviewKind)> {
        render(self.pred_original, kind, self.taesd, self.family)
    }
}

/// The result of one run.
pub struct Generation {
    /// The images, in batch order.
    pub images: Vec<RgbImage>,
    /// The request as run (image hashes filled in).
    pub request: Request,
    /// Raw decoder output `[n, 3, H, W]` (the VAE's, or TAESD's when the request asks
    /// for it), before clamping.
    pub decoded: Tensor,
    /// Seconds spent in the denoising loop.
    pub denoise_secs: f64,
}

/// Runs one generation. `on_phase` hears each stage outside the denoising loop as it
/// begins; `on_step` is called after every step and may cancel.
pub fn generate(
    models: &Models,
    request: &Request,
    cache: &mut EmbeddingCache,
    on_phase: &mut dyn FnMut(Phase),
    on_step: &mut dyn FnMut(&StepReport) -> Flow,
) -> Result<Generation> {
    request.validate()?;
    // Before any step: a run that cannot decode must not cost its denoising first.
    final_decoder(models, request.final_decode)?;
    super::memory::check_request(models, request)?;
    let mut request = request.clone();
    request.loras = models.loras();
    request.family = models.family;
    let prepared = prepare_with_masks(models, &mut request, cache, on_phase)?;
    let started = Instant::now();
    on_phase(Phase::FirstStep);
    let (conditioning, slots) = (&prepared.conditioning, prepared.slots.as_deref());
    let latents = denoise_in_slots(models, &request, conditioning, slots, on_step)?;
    let denoise_secs = started.elapsed().as_secs_f64();
    on_phase(Phase::Decoding);
    let decoded = decode_final(models, request.final_decode, &latents)?;
    let images = to_images(&decoded)?;
    Ok(Generation {
        images,
        request,
        decoded,
        denoise_secs,
    })
}

/// The TAESD that `kind` needs (`None` for the VAE), or the error saying it is not loaded.
fn final_decoder(models: &Models, kind: FinalDecode) -> Result<Option<&TaesdDecoder>> {
    match (kind, &models.taesd) {
        (FinalDecode::Vae, _) => Ok(None),
        (FinalDecode::Taesd, Some(taesd)) => Ok(Some(taesd)),
        (FinalDecode::Taesd, None) => Err(MinusError::InvalidRequest(
            "the fast final decode needs TAESD, which is not loaded: download it \
             (Download TAESD in the window, `minus models download taesd`) or decode \
             with the VAE"
                .to_string(),
        )),
    }
}

/// The final latents (f32, as the sampler leaves them) decoded by `kind`'s decoder.
pub fn decode_final(models: &Models, kind: FinalDecode, latents: &Tensor) -> Result<Tensor> {
    Ok(match final_decoder(models, kind)? {
        Some(taesd) => taesd.decode(&latents.to_dtype(taesd.dtype())?)?,
        None => models.vae.decode(&latents.to_dtype(models.vae.dtype())?)?,
    })
}

/// The CFG sampling loop of a run without masks; returns the final latents (f32).
pub fn denoise(
    models: &Models,
    request: &Request,
    conditioning: &Conditioning,
    on_step: &mut dyn FnMut(&StepReport) -> Flow,
) -> Result<Tensor> {
    denoise_in_slots(models, request, conditioning, None, on_step)
}

/// The CFG sampling loop, the image tokens in `slots` when masks split them (see
/// `conditioning::Prepared`); returns the final latents (f32).
pub fn denoise_in_slots(
    models: &Models,
    request: &Request,
    conditioning: &Conditioning,
    slots: Option<&[[Coverage; 2]]>,
    on_step: &mut dyn FnMut(&StepReport) -> Flow,
) -> Result<Tensor> {
    let n = request.batch;
    let device = &models.device;
    let mut scheduler = schedulers::build(
        request.sampler,
        request.karras,
        request.eta,
        request.steps,
        &models.schedule,
    );
    let mut rng = TorchRng::new(request.seed);
    let shape = [n, 4, request.height / 8, request.width / 8];
    let mut latents = (rng.randn_tensor(&shape, device)? * scheduler.init_noise_sigma())?;
    let text = Tensor::cat(
        &[
            repeat_batch(&conditioning.text_uncond, n)?,
            repeat_batch(&conditioning.text_cond, n)?,
        ],
        0,
    )?;
    let has_image_tokens = conditioning.ip_tokens.is_some() && models.image.is_some();
    let mut context = cross_context(models, conditioning.ip_tokens.as_ref(), slots, text, n)?;
    if let Some((uncond, cond)) = &conditioning.pooled {
        let pooled = Tensor::cat(&[repeat_batch(uncond, n)?, repeat_batch(cond, n)?], 0)?;
        let pooled = pooled.to_dtype(models.dtype)?;
        context =
            context.with_text_time(TextTime::uncropped(pooled, request.width, request.height));
    }
    let timesteps = scheduler.timesteps().to_vec();
    let total = timesteps.len();
    let started = Instant::now();
    for (step, &timestep) in timesteps.iter().enumerate() {
        let scaled = scheduler.scale_model_input(&latents, step)?;
        let unet_input = Tensor::cat(&[&scaled, &scaled], 0)?;
        let ip_scales = ip_scales(request, step, total, has_image_tokens);
        let ip_scale = match ip_scales {
            (0.0, 0.0) => None,
            scales => Some(layer_scales(models, request, scales, n)?),
        };
        let unet_output = models
            .unet
            .forward(
                &unet_input.to_dtype(models.dtype)?,
                timestep,
                &context,
                ip_scale.as_ref(),
            )?
            .to_dtype(DType::F32)?;
        let guided = guide(&unet_output, n, request.cfg)?;
        let out = scheduler.step(&guided, step, &latents, &mut rng)?;
        latents = out.prev_sample;
        // A GPU runs behind the host: wait for the step, so times and rates are real.
        device.synchronize()?;
        let report = StepReport {
            step,
            total,
            timestep,
            unet_input: &unet_input,
            unet_output: &unet_output,
            latents: &latents,
            pred_original: &out.pred_original,
            ip_scales,
            elapsed_secs: started.elapsed().as_secs_f64(),
            taesd: models.taesd.as_ref(),
            family: models.family,
        };
        if on_step(&report) == Flow::Cancel {
            return Err(MinusError::Cancelled);
        }
    }
    Ok(latents)
}

/// `(uncond, cond)` scales at `step`: each side's weight inside its own window, else 0.
fn ip_scales(request: &Request, step: usize, total: usize, has_tokens: bool) -> (f64, f64) {
    if !has_tokens {
        return (0.0, 0.0);
    }
    let cond = if request.ip_window.contains(step, total) {
        request.ip_weight
    } else {
        0.0
    };
    let uncond = if request.negative_ip_window.contains(step, total) {
        request.negative_ip_weight
    } else {
        0.0
    };
    (uncond, cond)
}

/// Every `attn2` layer's `[2n, 1, 1]` scales: each half's weight times its weight
/// type's factor for the layer (cubiq's `ipadapter_attention`, with the index of the
/// layer's transformer in execution order as his `transformer_index`).
fn layer_scales(
    models: &Models,
    request: &Request,
    (uncond, cond): (f64, f64),
    n: usize,
) -> candle_core::Result<IpScales> {
    let transformers = models.unet.transformer_count();
    let sdxl = models.unet.config().is_sdxl();
    let layers = models
        .unet
        .cross_attention_order()
        .into_iter()
        .map(|place| {
            let factor = |kind: WeightType| kind.factor(place, transformers, sdxl);
            let scales = (
                uncond * factor(request.negative_weight_type),
                cond * factor(request.weight_type),
            );
            half_scales(scales, n, models.dtype, &models.device)
        })
        .collect::<candle_core::Result<_>>()?;
    Ok(IpScales {
        layers,
        scaling: request.embeds_scaling,
    })
}

/// `[2n, 1, 1]`: the uncond scale for the first half, the cond scale for the second.
fn half_scales(
    (uncond, cond): (f64, f64),
    n: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = std::iter::repeat_n(uncond as f32, n)
        .chain(std::iter::repeat_n(cond as f32, n))
        .collect();
    Tensor::from_vec(values, (2 * n, 1, 1), device)?.to_dtype(dtype)
}

/// The guided noise prediction from a UNet output of `n` unconditioned then `n`
/// conditioned samples: `uncond + cfg·(cond − uncond)`.
fn guide(unet_output: &Tensor, n: usize, cfg: f64) -> candle_core::Result<Tensor> {
    let uncond = unet_output.narrow(0, 0, n)?;
    let cond = unet_output.narrow(0, n, n)?;
    if cfg == 1.0 {
        // The conditioned half alone, as in diffusers: the sum would let the negative
        // half in through rounding.
        return Ok(cond);
    }
    &uncond + ((cond - &uncond)? * cfg)?
}
