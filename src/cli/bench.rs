//! `minus bench`: times the image encoder, one CFG UNet step, a full run, the VAE
//! decode and the previews (latent colours, TAESD) on random full-size weights;
//! prints figures (and JSON for `bench/compare_diffusers.py`, which runs diffusers on
//! the same weights).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use minus::device::{DTypeChoice, DeviceChoice, device_name, resolve_dtype, select_device};
use minus::models::timing::{self, KindTotal, LayerKind};
use minus::models::unet::{CrossContext, ImageTokens, IpScales};
use minus::pipeline::conditioning::{EmbeddingCache, encode_pixels, encode_text};
use minus::pipeline::fast_preset::{FAST_CFG, FAST_STEPS, apply_fast_preset};
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

/// One UNet step timed layer kind by layer kind: the step's seconds and each kind's total.
type LayerTimes = (f64, Vec<(LayerKind, KindTotal)>);

/// Where the bench runs: the device, its number format and the CPU threads.
struct Setup {
    device: Device,
    dtype: DType,
    threads: usize,
}

/// The decoders' and previews' seconds.
struct DecodeFigures {
    vae_secs: f64,
    /// The latent colour map.
    preview_secs: f64,
    /// TAESD's preview as the window draws it.
    taesd_secs: f64,
    /// TAESD at full size.
    taesd_full_secs: f64,
}

/// The whole runs' figures.
struct RunFigures {
    /// A run with `--steps` steps of the default sampler and the VAE.
    full_secs: f64,
    its_per_sec: f64,
    /// A run with the Fast preset.
    fast_secs: f64,
}

/// What one bench run measured, in seconds unless named otherwise.
struct Figures {
    encoder_secs: f64,
    step_secs: f64,
    layers: Option<LayerTimes>,
    decode: DecodeFigures,
    runs: RunFigures,
    peak_mb: Option<f64>,
    load_peak_mb: Option<f64>,
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
    if args.only == Some(BenchPart::Decode) {
        return decode_only(&weights.model, &device, dtype, args.size, args.batch);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let setup = Setup {
        device,
        dtype,
        threads,
    };
    let (models, load_peak_mb) = load_models(args, &weights, &setup)?;
    if args.only == Some(BenchPart::Load) {
        return Ok(());
    }
    let figures = time_everything(args, &models, &setup, &dir, load_peak_mb)?;
    figures.print();
    if let Some(path) = &args.json {
        let json = figures.json(args, &setup, &dir);
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// Loads every model the bench times, printing where and how fast; returns them and the
/// loading's peak resident memory.
fn load_models(
    args: &BenchArgs,
    weights: &bench_weights::BenchWeights,
    setup: &Setup,
) -> anyhow::Result<(Models, Option<f64>)> {
    let Setup {
        device,
        dtype,
        threads,
    } = setup;
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
        loras: Vec::new(),
    };
    reset_peak_rss();
    let load_started = Instant::now();
    let models = Models::load(&paths, device, *dtype)?;
    sync(device)?;
    let load_secs = load_started.elapsed().as_secs_f64();
    let load_peak = peak_rss_mb();
    println!(
        "device: {} ({dtype:?}), {threads} CPU threads, {}x{}, batch {}, adapter {}, loaded in {load_secs:.1}s",
        device_name(device),
        args.size,
        args.size,
        args.batch,
        args.adapter.name()
    );
    print_peak("loading peak resident memory", load_peak);
    Ok((models, load_peak))
}

/// Times the image encoder, one CFG UNet step (and its layers, with `--layers`), the
/// decoders and previews, then a full run.
fn time_everything(
    args: &BenchArgs,
    models: &Models,
    setup: &Setup,
    dir: &Path,
    load_peak_mb: Option<f64>,
) -> anyhow::Result<Figures> {
    let Setup { device, dtype, .. } = setup;
    let image = models.image.as_ref().context("image models")?;

    // Image encoder: one 224×224 image.
    let side = image.encoder.config().image_size;
    let pixels = Tensor::randn(0f32, 1f32, (1, 3, side, side), device)?.to_dtype(*dtype)?;
    let encoder_secs = time(args.repeats, || {
        let features = encode_pixels(image, &pixels)?;
        features
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(())
    })?;
    let (step_secs, layers) = time_unet_step(args, models, &pixels, setup)?;
    let decode = time_decoders(args, models, setup)?;
    let runs = time_full_runs(args, models, dir)?;
    Ok(Figures {
        encoder_secs,
        step_secs,
        layers,
        decode,
        runs,
        peak_mb: peak_rss_mb(),
        load_peak_mb,
    })
}

/// Times one CFG UNet step (batch `[uncond, cond]`, image tokens in every attn2), and
/// with `--layers` one more, layer kind by layer kind.
fn time_unet_step(
    args: &BenchArgs,
    models: &Models,
    pixels: &Tensor,
    setup: &Setup,
) -> anyhow::Result<(f64, Option<LayerTimes>)> {
    let Setup { device, dtype, .. } = setup;
    let image = models.image.as_ref().context("image models")?;
    let n = args.batch;
    let latent = args.size / 8;
    let sample = Tensor::randn(0f32, 1f32, (2 * n, 4, latent, latent), device)?.to_dtype(*dtype)?;
    let text = encode_text(models, "")?.tokens.repeat((2 * n, 1, 1))?;
    let tokens = image
        .adapter
        .project(&encode_pixels(image, pixels)?)?
        .repeat((2 * n, 1, 1))?;
    let context = CrossContext::new(
        text,
        Some(ImageTokens {
            tokens,
            layers: image.adapter.attention_weights(),
        }),
    );
    let ip_scale = IpScales::uniform(
        Tensor::ones((2 * n, 1, 1), *dtype, device)?,
        models.unet.cross_attention_channels().len(),
    );
    // A step as all but the first of a run: the warm-up has projected the context.
    let step = || -> anyhow::Result<()> {
        models
            .unet
            .forward(&sample, 500.0, &context, Some(&ip_scale))?;
        sync(device)
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
    Ok((step_secs, layers))
}

/// Times the VAE decode and the previews of `batch` random latents.
fn time_decoders(
    args: &BenchArgs,
    models: &Models,
    setup: &Setup,
) -> anyhow::Result<DecodeFigures> {
    let Setup { device, dtype, .. } = setup;
    let latent = args.size / 8;
    let latents =
        Tensor::randn(0f32, 1f32, (args.batch, 4, latent, latent), device)?.to_dtype(*dtype)?;
    let vae_secs = time(args.repeats, || {
        models.vae.decode(&latents)?;
        sync(device)
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
    Ok(DecodeFigures {
        vae_secs,
        preview_secs,
        taesd_secs,
        taesd_full_secs,
    })
}

/// A request as users make one: a positive and a negative image, `args`' size and batch.
fn bench_request(args: &BenchArgs, dir: &Path) -> anyhow::Result<Request> {
    let prompt_image = dir.join("bench-prompt.png");
    image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
    .save(&prompt_image)?;
    Ok(Request {
        images: vec![ImagePrompt::new(&prompt_image)],
        negative_images: vec![ImagePrompt::new(&prompt_image)],
        steps: args.steps,
        width: args.size,
        height: args.size,
        batch: args.batch,
        ..Request::default()
    })
}

/// Times one whole run of `request` from nothing cached (text and image conditioning,
/// the steps, the decode); returns its seconds and the denoising's iterations per second.
fn time_run(models: &Models, request: &Request) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let generation = generate(
        models,
        request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
        &mut |_| Flow::Continue,
    )?;
    let full_secs = started.elapsed().as_secs_f64();
    Ok((full_secs, request.steps as f64 / generation.denoise_secs))
}

/// Times a full run as users make it, and one with the Fast preset (TCD, its steps, CFG
/// kept on, TAESD decode; its LoRA changes the weights, not the time of a run).
fn time_full_runs(args: &BenchArgs, models: &Models, dir: &Path) -> anyhow::Result<RunFigures> {
    let request = bench_request(args, dir)?;
    let (full_secs, its_per_sec) = time_run(models, &request)?;
    let mut fast = request;
    apply_fast_preset(&mut fast);
    let (fast_secs, _) = time_run(models, &fast)?;
    Ok(RunFigures {
        full_secs,
        its_per_sec,
        fast_secs,
    })
}

impl Figures {
    /// Prints the figures as a table, then the shares and the peak memory.
    fn print(&self) {
        let decode = &self.decode;
        println!("{:<28} {:>10}", "figure", "seconds");
        for (name, secs) in [
            ("image encoder (1 image)", self.encoder_secs),
            ("UNet step (CFG batch)", self.step_secs),
            ("VAE decode", decode.vae_secs),
            ("preview (latent colours)", decode.preview_secs),
            ("preview (TAESD, as drawn)", decode.taesd_secs),
            ("TAESD at full size", decode.taesd_full_secs),
            ("full run", self.runs.full_secs),
        ] {
            println!("{name:<28} {secs:>10.4}");
        }
        println!(
            "Fast preset (TCD, {FAST_STEPS} steps, CFG {FAST_CFG}, TAESD decode): {:.1} s to a picture",
            self.runs.fast_secs
        );
        let its = self.runs.its_per_sec;
        println!("denoising: {its:.3} it/s ({:.3} s/step)", 1.0 / its);
        println!(
            "preview / UNet step: latent colours {:.4}%, TAESD as drawn {:.2}%, at full size {:.2}%",
            100.0 * decode.preview_secs / self.step_secs,
            100.0 * decode.taesd_secs / self.step_secs,
            100.0 * decode.taesd_full_secs / self.step_secs
        );
        print_peak("peak resident memory from loading on", self.peak_mb);
        if let Some((timed_step_secs, totals)) = &self.layers {
            print_layers(*timed_step_secs, totals);
        }
    }

    /// The figures and what they were measured on, for `bench/compare_diffusers.py`.
    fn json(&self, args: &BenchArgs, setup: &Setup, dir: &Path) -> serde_json::Value {
        let decode = &self.decode;
        json!({
            "device": device_name(&setup.device), "dtype": format!("{:?}", setup.dtype),
            "size": args.size, "steps": args.steps, "batch": args.batch,
            "adapter": args.adapter.name(), "threads": setup.threads,
            "image_encoder_secs": self.encoder_secs, "unet_step_secs": self.step_secs,
            "vae_decode_secs": decode.vae_secs, "preview_secs": decode.preview_secs,
            "taesd_preview_secs": decode.taesd_secs,
            "taesd_full_size_secs": decode.taesd_full_secs,
            "full_run_secs": self.runs.full_secs, "it_per_sec": self.runs.its_per_sec,
            "fast_preset_secs": self.runs.fast_secs,
            "peak_rss_mb": self.peak_mb, "load_peak_rss_mb": self.load_peak_mb,
            "weights_dir": dir,
            "layers": self.layers.as_ref().map(|(timed_step_secs, totals)| json!({
                "timed_step_secs": timed_step_secs,
                "kinds": totals.iter().map(|(kind, total)| json!({
                    "kind": kind.name(), "secs": total.secs, "calls": total.calls,
                })).collect::<Vec<_>>(),
            })),
        })
    }
}
