//! `minus bench`: times the image encoder, one CFG UNet step, a full run, the VAE
//! decode and the previews (latent colours, TAESD) on random full-size SD 1.5 or SDXL
//! weights; prints figures (and JSON for `bench/compare_diffusers.py`, which runs
//! diffusers on the same weights).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use minus::device::{DTypeChoice, DeviceChoice, device_name, resolve_dtype, select_device};
use minus::models::family::ModelFamily;
use minus::models::timing::{self, KindTotal, LayerKind};
use minus::models::unet::{CrossContext, ImageTokens, IpScales, TextTime};
use minus::pipeline::conditioning::{EmbeddingCache, encode_pixels, encode_text};
use minus::pipeline::fast_preset::{FAST_CFG, FAST_STEPS, apply_fast_preset};
use minus::pipeline::preview::{PreviewKind, latents_to_rgb, render, taesd_to_rgb};
use minus::pipeline::{Flow, ImagePrompt, Models, Request, generate};
use minus::weights::ModelPaths;
use serde_json::json;

use super::bench_memory::{decode_only, peak_rss_mb, print_peak, reset_peak_rss};
use super::{bench_weights, bench_weights_sdxl};

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
    /// Which model's weights to write and time (SDXL's: 19 GB on disk, and a 21 GB
    /// peak of memory in f32 at 1024² on the CPU).
    #[arg(long, value_enum, default_value = "sd15")]
    family: ModelFamily,
    /// Image side in pixels (multiple of 8) [default: 512 for SD 1.5, 1024 for SDXL].
    #[arg(long)]
    size: Option<usize>,
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

impl BenchArgs {
    /// The image side: `--size`, or the size the family was trained at.
    fn side_px(&self) -> usize {
        self.size.unwrap_or(self.family.default_side_px())
    }
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
    /// `None` for SDXL, whose runs take too long on the CPU to time by default.
    runs: Option<RunFigures>,
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
    let weights = match args.family {
        ModelFamily::Sd15 => bench_weights::ensure(&dir)?,
        ModelFamily::Sdxl => bench_weights_sdxl::ensure(&dir)?,
    };
    let chosen = select_device(args.device, args.dtype)?;
    if let Some(fallback) = &chosen.fallback {
        eprintln!("{fallback}");
    }
    let device = chosen.device;
    let dtype = resolve_dtype(&device, args.dtype)?;
    if args.only == Some(BenchPart::Decode) {
        return decode_only(&weights.model, &device, dtype, args.side_px(), args.batch);
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
    figures.print(args.steps);
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
    if !args.family.is_sd15() {
        println!("model: {}", args.family.display_name());
    }
    println!(
        "device: {} ({dtype:?}), {threads} CPU threads, {}x{}, batch {}, adapter {}, loaded in {load_secs:.1}s",
        device_name(device),
        args.side_px(),
        args.side_px(),
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
    let runs = match args.family {
        ModelFamily::Sd15 => Some(time_full_runs(args, models, dir)?),
        ModelFamily::Sdxl => None,
    };
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

/// Times one CFG UNet step (batch `[uncond, cond]`, image tokens in every attn2, SDXL's
/// added conditioning), and
/// with `--layers` one more, layer kind by layer kind.
fn time_unet_step(
    args: &BenchArgs,
    models: &Models,
    pixels: &Tensor,
    setup: &Setup,
) -> anyhow::Result<(f64, Option<LayerTimes>)> {
    let Setup { device, dtype, .. } = setup;
    let n = args.batch;
    let latent = args.side_px() / 8;
    // The same latents twice, [uncond, cond], as a denoising step passes them.
    let latents = Tensor::randn(0f32, 1f32, (n, 4, latent, latent), device)?.to_dtype(*dtype)?;
    let sample = Tensor::cat(&[&latents, &latents], 0)?;
    let context = step_context(models, pixels, 2 * n, args.side_px())?;
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

/// What every step of a CFG batch of `batch` `side_px`² pictures attends to: the
/// empty prompt, the image tokens of `pixels` (for the positive and the negative
/// image), and for SDXL the pooled text embedding and size ids.
fn step_context<'a>(
    models: &'a Models,
    pixels: &Tensor,
    batch: usize,
    side_px: usize,
) -> anyhow::Result<CrossContext<'a>> {
    let image = models.image.as_ref().context("image models")?;
    let text = encode_text(models, "")?;
    let tokens = image
        .adapter
        .project(&encode_pixels(image, pixels)?)?
        .repeat((batch, 1, 1))?;
    let context = CrossContext::new(
        text.tokens.repeat((batch, 1, 1))?,
        Some(ImageTokens {
            tokens,
            layers: image.adapter.attention_weights(),
        }),
    );
    Ok(match text.pooled {
        Some(pooled) => context.with_text_time(TextTime::uncropped(
            pooled.repeat((batch, 1))?,
            side_px,
            side_px,
        )),
        None => context,
    })
}

/// Times the VAE decode and the previews of `batch` random latents.
fn time_decoders(
    args: &BenchArgs,
    models: &Models,
    setup: &Setup,
) -> anyhow::Result<DecodeFigures> {
    let Setup { device, dtype, .. } = setup;
    let latent = args.side_px() / 8;
    let latents =
        Tensor::randn(0f32, 1f32, (args.batch, 4, latent, latent), device)?.to_dtype(*dtype)?;
    let vae_secs = time(args.repeats, || {
        models.vae.decode(&latents)?;
        sync(device)
    })?;
    let preview_secs = time(args.repeats.max(5), || {
        latents_to_rgb(&latents, models.family)?;
        Ok(())
    })?;
    // TAESD's preview of the first image as every step of a run in the window draws it
    // (averaged down first on the CPU), and at full size.
    let taesd = models.taesd.as_ref().context("TAESD")?;
    let taesd_secs = time(args.repeats.max(3), || {
        render(&latents, PreviewKind::Taesd, Some(taesd), models.family)?;
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
        width: args.side_px(),
        height: args.side_px(),
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
    /// What an untimed full run of `steps` steps would take: both images encoded, the
    /// steps and the VAE decode (the text encoders and the sampler's own work aside).
    fn full_run_estimate_secs(&self, steps: usize) -> f64 {
        2.0 * self.encoder_secs + steps as f64 * self.step_secs + self.decode.vae_secs
    }

    /// Prints the figures as a table, then the runs, the shares and the peak memory.
    fn print(&self, steps: usize) {
        let decode = &self.decode;
        println!("{:<28} {:>10}", "figure", "seconds");
        let mut rows = vec![
            ("image encoder (1 image)", self.encoder_secs),
            ("UNet step (CFG batch)", self.step_secs),
            ("VAE decode", decode.vae_secs),
            ("preview (latent colours)", decode.preview_secs),
            ("preview (TAESD, as drawn)", decode.taesd_secs),
            ("TAESD at full size", decode.taesd_full_secs),
        ];
        rows.extend(self.runs.as_ref().map(|runs| ("full run", runs.full_secs)));
        for (name, secs) in rows {
            println!("{name:<28} {secs:>10.4}");
        }
        match &self.runs {
            Some(runs) => {
                println!(
                    "Fast preset (TCD, {FAST_STEPS} steps, CFG {FAST_CFG}, TAESD decode): {:.1} s to a picture",
                    runs.fast_secs
                );
                let its = runs.its_per_sec;
                println!("denoising: {its:.3} it/s ({:.3} s/step)", 1.0 / its);
            }
            None => println!(
                "full run: not timed; {steps} steps would take about {:.0} s (2 images encoded, {steps} UNet steps, the VAE decode)",
                self.full_run_estimate_secs(steps)
            ),
        }
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
            "size": args.side_px(), "steps": args.steps, "batch": args.batch,
            "adapter": args.adapter.name(), "threads": setup.threads,
            "image_encoder_secs": self.encoder_secs, "unet_step_secs": self.step_secs,
            "vae_decode_secs": decode.vae_secs, "preview_secs": decode.preview_secs,
            "taesd_preview_secs": decode.taesd_secs,
            "taesd_full_size_secs": decode.taesd_full_secs,
            "family": args.family.name(),
            "full_run_secs": self.runs.as_ref().map(|runs| runs.full_secs),
            "it_per_sec": self.runs.as_ref().map(|runs| runs.its_per_sec),
            "fast_preset_secs": self.runs.as_ref().map(|runs| runs.fast_secs),
            "full_run_estimate_secs": self.runs.is_none()
                .then(|| self.full_run_estimate_secs(args.steps)),
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

#[cfg(test)]
mod tests;
