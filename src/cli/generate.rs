//! `minus generate`: one generation from flags, progress on stderr, PNGs with settings.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use minus::output::format::{SaveFormat, save_result};
use minus::output::{check_replaceable, numbered_paths};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::models::{device_name, resolve_dtype, select_device};
use minus::pipeline::noise::random_seed;
use minus::pipeline::preprocess::FitMode;
use minus::pipeline::{Flow, ImagePrompt, ModelPaths, Models, Request, Window, generate};
use minus::schedulers::SamplerKind;

/// Flags of `minus generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Diffusers SD 1.5 model folder, or a single-file checkpoint (.safetensors/.ckpt).
    #[arg(long)]
    model: PathBuf,
    /// VAE (diffusers folder or single file) replacing the model's own.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Diffusers folder whose config.json files describe a single-file checkpoint
    /// of unusual size (default: SD 1.5's configuration).
    #[arg(long)]
    config_from: Option<PathBuf>,
    /// IP-Adapter weights file (h94 layout, .safetensors or .bin).
    #[arg(long)]
    ip_adapter: Option<PathBuf>,
    /// CLIP image encoder folder (h94 `models/image_encoder`).
    #[arg(long)]
    image_encoder: Option<PathBuf>,
    /// Positive image prompt (repeatable).
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// Negative image prompt (repeatable).
    #[arg(long = "negative-image")]
    negative_images: Vec<PathBuf>,
    /// Per-image weights of the positive images, comma separated.
    #[arg(long, value_delimiter = ',')]
    image_weights: Vec<f64>,
    /// Per-image weights of the negative images, comma separated.
    #[arg(long, value_delimiter = ',')]
    negative_image_weights: Vec<f64>,
    /// Text prompt.
    #[arg(long, default_value = "")]
    prompt: String,
    /// Negative text prompt.
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// IP-Adapter scale of the positive side.
    #[arg(long, default_value_t = 1.0)]
    ip_weight: f64,
    /// IP-Adapter scale of the negative side (default: the positive weight).
    #[arg(long)]
    negative_ip_weight: Option<f64>,
    /// Fraction of the run where the positive image prompt starts acting.
    #[arg(long, default_value_t = 0.0)]
    ip_start: f64,
    /// Fraction of the run where the positive image prompt stops acting.
    #[arg(long, default_value_t = 1.0)]
    ip_end: f64,
    /// Start of the negative image prompt (default: the positive start).
    #[arg(long)]
    negative_ip_start: Option<f64>,
    /// End of the negative image prompt (default: the positive end).
    #[arg(long)]
    negative_ip_end: Option<f64>,
    /// Sampler: ddim, euler-a or dpmpp-2m.
    #[arg(long, default_value = "ddim")]
    scheduler: SamplerKind,
    /// Use Karras sigmas (euler-a, dpmpp-2m).
    #[arg(long)]
    karras: bool,
    /// Denoising steps.
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    cfg: f64,
    /// Seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Image width in pixels (multiple of 8).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Image height in pixels (multiple of 8).
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Images per run; files are named `<stem>-<i>.png` when more than one.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How non-square prompt images are fitted: crop, pad or squash.
    #[arg(long, default_value = "crop", value_parser = parse_fit)]
    fit: FitMode,
    /// auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, f16 or bf16 (bf16 on GPUs only; default: f16 on GPUs, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Output image: .png (settings embedded, restorable), .jpg/.jpeg or .webp
    /// (settings as EXIF text).
    #[arg(long, short, default_value = "minus.png")]
    output: PathBuf,
}

fn parse_fit(value: &str) -> Result<FitMode, String> {
    FitMode::ALL
        .into_iter()
        .find(|mode| mode.name() == value)
        .ok_or_else(|| format!("unknown fit `{value}` (expected crop, pad or squash)"))
}

fn prompts(paths: &[PathBuf], weights: &[f64], flag: &str) -> anyhow::Result<Vec<ImagePrompt>> {
    if !weights.is_empty() && weights.len() != paths.len() {
        bail!(
            "--{flag}-weights has {} values for {} images",
            weights.len(),
            paths.len()
        );
    }
    Ok(paths
        .iter()
        .enumerate()
        .map(|(i, path)| ImagePrompt {
            weight: weights.get(i).copied().unwrap_or(1.0),
            ..ImagePrompt::new(path)
        })
        .collect())
}

impl GenerateArgs {
    fn request(&self) -> anyhow::Result<Request> {
        let ip_window = Window {
            start: self.ip_start,
            end: self.ip_end,
        };
        Ok(Request {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            images: prompts(&self.images, &self.image_weights, "image")?,
            negative_images: prompts(
                &self.negative_images,
                &self.negative_image_weights,
                "negative-image",
            )?,
            ip_weight: self.ip_weight,
            negative_ip_weight: self.negative_ip_weight.unwrap_or(self.ip_weight),
            ip_window,
            negative_ip_window: Window {
                start: self.negative_ip_start.unwrap_or(ip_window.start),
                end: self.negative_ip_end.unwrap_or(ip_window.end),
            },
            sampler: self.scheduler,
            karras: self.karras,
            steps: self.steps,
            cfg: self.cfg,
            seed: self.seed.unwrap_or_else(random_seed),
            width: self.width,
            height: self.height,
            batch: self.batch,
            fit: self.fit,
        })
    }
}

/// Runs `minus generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    request.validate()?;
    // Checked before any work: a run must not end in a file that cannot be written.
    let outputs = numbered_paths(&args.output, request.batch);
    for path in &outputs {
        check_replaceable(path)?;
        SaveFormat::from_path(path)?;
    }
    let device = select_device(&args.device)?;
    let dtype = resolve_dtype(&device, args.dtype.as_deref())?;
    eprintln!("device: {} ({dtype:?})", device_name(&device));
    let paths = ModelPaths {
        model: args.model.clone(),
        vae: args.vae.clone(),
        ip_adapter: args.ip_adapter.clone(),
        image_encoder: args.image_encoder.clone(),
        configs: args.config_from.clone(),
    };
    let load_started = std::time::Instant::now();
    let models = Models::load(&paths, &device, dtype)?;
    eprintln!(
        "models loaded in {:.1}s",
        load_started.elapsed().as_secs_f64()
    );
    let mut cache = EmbeddingCache::default();
    let generation = generate(&models, &request, &mut cache, &mut |report| {
        let done = report.step + 1;
        let rate = done as f64 / report.elapsed_secs.max(1e-9);
        eprint!("\rstep {done}/{}  {rate:.2} it/s", report.total);
        // Progress only; a closed stderr must not stop the run.
        let _ = std::io::stderr().flush();
        Flow::Continue
    })
    .context("generation failed")?;
    eprintln!();
    let model_name = args
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (path, image) in outputs.iter().zip(&generation.images) {
        save_result(path, image, &generation.request, &model_name)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
