//! `minus bench`: times the image encoder, one CFG UNet step, a full run, the VAE
//! decode and the previews (latent colours, TAESD) on random full-size weights;
//! prints figures (and JSON for `bench/compare_diffusers.py`, which runs diffusers on
//! the same weights).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use minus::device::{DTypeChoice, DeviceChoice, device_name, resolve_dtype, select_device};
use minus::models::timing::{self, KindTotal, LayerKind};
use minus::models::unet::{CrossContext, ImageTokens, IpScales};
use minus::pipeline::conditioning::{EmbeddingCache, encode_pixels, encode_text};
use minus::pipeline::preview::{PreviewKind, latents_to_rgb, render, taesd_to_rgb};
use minus::pipeline::{Flow, ImagePrompt, Models, Request, generate};
use minus::weights::ModelPaths;
use serde_json::json;

use super::bench_memory::{decode_only, peak_rss_mb, print_peak, reset_peak_rss};
use super::bench_weights;

/// One part of the bench run alone, for its peak memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchPart {
    /// Load every model, print the loading peak and stop.
    Load,
    /// Load only the VAE and decode one batch of random latents.
    Decode,
}

/// The adapters the bench writes weights for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchAdapter {
    /// The base adapter (4 tokens from the projected class token).
    Base,
    /// IP-Adapter Plus (the resampler over all image tokens).
    Plus,
}

impl BenchAdapter {
    fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Plus => "plus",
        }
    }
}

/// Flags of `minus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Image side in pixels (multiple of 8).
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Steps of the full run.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed repetitions of each figure (after one warm-up).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Which adapter's image path to time.
    #[arg(long, value_enum, default_value_t = BenchAdapter::Plus)]
    adapter: BenchAdapter,
    /// Compute device (auto: CUDA, then Metal on Apple silicon, then the CPU; a GPU that
    /// fails a first test falls back to the CPU).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Number format (bf16 on GPUs only; default: f16 on GPUs, f32 on the CPU).
    #[arg(long, value_enum)]
    dtype: Option<DTypeChoice>,
    /// Where the random weights are written once (default: the user cache folder).
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also time one UNet step layer kind by layer kind (convolution, linear, attention,
    /// group norm, GEGLU), waiting for the device around each layer.
    #[arg(long)]
    layers: bool,
    /// Run one part alone and print its peak resident memory.
    #[arg(long, value_enum)]
    only: Option<BenchPart>,
}

/// Median seconds of `repeats` runs of `f` after one warm-up run.
fn time(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Waits for the device to finish queued work, so timings are real.
fn sync(device: &Device) -> anyhow::Result<()> {
    device.synchronize()?;
    Ok(())
}

/// Prints one UNet step's time per layer kind, and what the kinds leave over.
fn print_layers(timed_step_secs: f64, totals: &[(LayerKind, KindTotal)]) {
    println!("one UNet step by layer kind (a device sync around each layer):");
    println!("{:<14} {:>10} {:>7} {:>6}", "kind", "ms", "share", "calls");
    let share = |secs: f64| 100.0 * secs / timed_step_secs;
    for (kind, total) in totals {
        println!(
            "{:<14} {:>10.1} {:>6.1}% {:>6}",
            kind.name(),
            1e3 * total.secs,
            share(total.secs),
            total.calls
        );
    }
    let rest = timed_step_secs - totals.iter().map(|(_, t)| t.secs).sum::<f64>();
    println!(
        "{:<14} {:>10.1} {:>6.1}%",
        "the rest",
        1e3 * rest,
        share(rest)
    );
    println!("{:<14} {:>10.1}", "timed step", 1e3 * timed_step_secs);
}

/// Runs `minus bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = match &args.weights_dir {
        Some(dir) => dir.clone(),
        None => directories::ProjectDirs::from("", "", "Minus")
            .map(|p| p.cache_dir().join("bench-weights"))
            .context("no cache folder; pass --weights-dir")?,
    };
    let weights = bench_weights::ensure(&dir)?;
    let chosen = select_device(args.device, args.dtype)?;
    if let Some(fallback) = &chosen.fallback {
        eprintln!("{fallback}");
    }
    let device = chosen.device;
    let dtype = resolve_dtype(&device, args.dtype)?;
    let adapter = match args.adapter {
        BenchAdapter::Base => weights.base_adapter.clone(),
        BenchAdapter::Plus => weights.plus_adapter.clone(),
    };
    let paths = ModelPaths {
        model: weights.model.clone(),
        vae: None,
        ip_adapter: Some(adapter),
        image_encoder: Some(weights.image_encoder.clone()),
        taesd: Some(weights.taesd.clone()),
        configs: None,
    };
    if args.only == Some(BenchPart::Decode) {
        return decode_only(&weights.model, &device, dtype, args.size, args.batch);
    }
    reset_peak_rss();
    let load_started = Instant::now();
    let models = Models::load(&paths, &device, dtype)?;
    sync(&device)?;
    let load_secs = load_started.elapsed().as_secs_f64();
    let load_peak = peak_rss_mb();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "device: {} ({dtype:?}), {threads} CPU threads, {}x{}, batch {}, adapter {}, loaded in {load_secs:.1}s",
        device_name(&device),
        args.size,
        args.size,
        args.batch,
        args.adapter.name()
    );
    print_peak("loading peak resident memory", load_peak);
    if args.only == Some(BenchPart::Load) {
        return Ok(());
    }
    let image = models.image.as_ref().context("image models")?;

    // Image encoder: one 224×224 image.
    let side = image.encoder.config().image_size;
    let pixels = Tensor::randn(0f32, 1f32, (1, 3, side, side), &device)?.to_dtype(dtype)?;
    let encoder_secs = time(args.repeats, || {
        let features = encode_pixels(image, &pixels)?;
        features
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(())
    })?;

    // One CFG UNet step: batch [uncond, cond], image tokens in every attn2.
    let n = args.batch;
    let latent = args.size / 8;
    let sample = Tensor::randn(0f32, 1f32, (2 * n, 4, latent, latent), &device)?.to_dtype(dtype)?;
    let text = encode_text(&models, "")?.repeat((2 * n, 1, 1))?;
    let tokens = image
        .adapter
        .project(&encode_pixels(image, &pixels)?)?
        .repeat((2 * n, 1, 1))?;
    let context = CrossContext::new(
        text,
        Some(ImageTokens {
            tokens,
            layers: image.adapter.attention_weights(),
        }),
    );
    let ip_scale = IpScales::uniform(
        Tensor::ones((2 * n, 1, 1), dtype, &device)?,
        models.unet.cross_attention_channels().len(),
    );
    // A step as all but the first of a run: the warm-up has projected the context.
    let step = || -> anyhow::Result<()> {
        models
            .unet
            .forward(&sample, 500.0, &context, Some(&ip_scale))?;
        sync(&device)
    };
    let step_secs = time(args.repeats, step)?;
    let layers = if args.layers {
        timing::start();
        let started = Instant::now();
        let outcome = step();
        let timed_step_secs = started.elapsed().as_secs_f64();
        let totals = timing::finish();
        outcome?;
        Some((timed_step_secs, totals))
    } else {
        None
    };

    // VAE decode and the preview of `n` latents.
    let latents = Tensor::randn(0f32, 1f32, (n, 4, latent, latent), &device)?.to_dtype(dtype)?;
    let vae_secs = time(args.repeats, || {
        models.vae.decode(&latents)?;
        sync(&device)
    })?;
    let preview_secs = time(args.repeats.max(5), || {
        latents_to_rgb(&latents)?;
        Ok(())
    })?;
    // TAESD's preview of the first image as every step of a run in the window draws it
    // (averaged down first on the CPU), and at full size.
    let taesd = models.taesd.as_ref().context("TAESD")?;
    let taesd_secs = time(args.repeats.max(3), || {
        render(&latents, PreviewKind::Taesd, Some(taesd))?;
        Ok(())
    })?;
    let taesd_full_secs = time(args.repeats, || {
        taesd_to_rgb(taesd, &latents)?;
        Ok(())
    })?;

    // A full run as users make it (text and image conditioning, N steps, decode).
    let prompt_image = dir.join("bench-prompt.png");
    image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
    .save(&prompt_image)?;
    let request = Request {
        images: vec![ImagePrompt::new(&prompt_image)],
        negative_images: vec![ImagePrompt::new(&prompt_image)],
        steps: args.steps,
        width: args.size,
        height: args.size,
        batch: n,
        ..Request::default()
    };
    let started = Instant::now();
    let generation = generate(
        &models,
        &request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
        &mut |_| Flow::Continue,
    )?;
    let full_secs = started.elapsed().as_secs_f64();
    let its = args.steps as f64 / generation.denoise_secs;

    let peak = peak_rss_mb();
    println!("{:<28} {:>10}", "figure", "seconds");
    for (name, secs) in [
        ("image encoder (1 image)", encoder_secs),
        ("UNet step (CFG batch)", step_secs),
        ("VAE decode", vae_secs),
        ("preview (latent colours)", preview_secs),
        ("preview (TAESD, as drawn)", taesd_secs),
        ("TAESD at full size", taesd_full_secs),
        ("full run", full_secs),
    ] {
        println!("{name:<28} {secs:>10.4}");
    }
    println!("denoising: {its:.3} it/s ({:.3} s/step)", 1.0 / its);
    println!(
        "preview / UNet step: latent colours {:.4}%, TAESD as drawn {:.2}%, at full size {:.2}%",
        100.0 * preview_secs / step_secs,
        100.0 * taesd_secs / step_secs,
        100.0 * taesd_full_secs / step_secs
    );
    print_peak("peak resident memory from loading on", peak);
    if let Some((timed_step_secs, totals)) = &layers {
        print_layers(*timed_step_secs, totals);
    }
    if let Some(path) = &args.json {
        let figures = json!({
            "device": device_name(&device), "dtype": format!("{dtype:?}"), "size": args.size,
            "steps": args.steps, "batch": n, "adapter": args.adapter.name(), "threads": threads,
            "image_encoder_secs": encoder_secs, "unet_step_secs": step_secs, "vae_decode_secs": vae_secs,
            "preview_secs": preview_secs, "taesd_preview_secs": taesd_secs,
            "taesd_full_size_secs": taesd_full_secs,
            "full_run_secs": full_secs, "it_per_sec": its,
            "peak_rss_mb": peak, "load_peak_rss_mb": load_peak, "weights_dir": dir,
            "layers": layers.as_ref().map(|(timed_step_secs, totals)| json!({
                "timed_step_secs": timed_step_secs,
                "kinds": totals.iter().map(|(kind, total)| json!({
                    "kind": kind.name(), "secs": total.secs, "calls": total.calls,
                })).collect::<Vec<_>>(),
            })),
        });
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}
