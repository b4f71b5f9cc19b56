//! `minus generate`: one generation from flags, progress on stderr, PNGs with settings.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minus::device::{DTypeChoice, DeviceChoice, device_name, resolve_dtype, select_device};
use minus::models::family::ModelFamily;
use minus::output::format::{SaveFormat, save_result};
use minus::output::{check_replaceable, numbered_paths};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::preprocess::FitMode;
use minus::pipeline::{
    Combine, EmbedsScaling, FinalDecode, Flow, ImagePrompt, MaskFile, Models, Phase, Request,
    WeightType, Window, generate,
};
use minus::rng::random_seed;

use super::UsageError;
use super::defaults::{Needs, fill_from_cache};
use minus::schedulers::{DEFAULT_ETA, SamplerKind};
use minus::weights::ModelPaths;
use minus::weights::hub::Hub;
use minus::weights::lora::LoraChoice;

/// Flags of `minus generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    models: ModelPaths,
    /// LoRA file (.safetensors: kohya LoRA/LoCon or diffusers/PEFT; repeatable), merged
    /// into the UNet and text encoders.
    #[arg(long = "lora")]
    loras: Vec<PathBuf>,
    /// Strengths of the --lora files, comma separated, in order (default 1 each;
    /// negative strengths push the other way).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    lora_weights: Vec<f64>,
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
    /// Mask of a positive image (repeatable, the i-th for the i-th --image; `none`: no
    /// mask): a grayscale picture, white where the image acts.
    #[arg(long = "image-mask")]
    image_masks: Vec<PathBuf>,
    /// Mask of a negative image (repeatable, the i-th for the i-th --negative-image;
    /// `none`: no mask).
    #[arg(long = "negative-image-mask")]
    negative_image_masks: Vec<PathBuf>,
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
    /// Sampler (`--scheduler`, diffusers' word for it, is accepted too).
    #[arg(long, alias = "scheduler", value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Use Karras sigmas (euler-a, dpmpp-2m).
    #[arg(long)]
    karras: bool,
    /// TCD's stochasticity, 0..1 (tcd only): 0 is deterministic.
    #[arg(long, default_value_t = DEFAULT_ETA)]
    eta: f64,
    /// Denoising steps.
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    cfg: f64,
    /// Seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Image width in pixels (multiple of 8; default 512 for SD 1.5, 1024 for SDXL).
    #[arg(long)]
    width: Option<usize>,
    /// Image height in pixels (multiple of 8; default 512 for SD 1.5, 1024 for SDXL).
    #[arg(long)]
    height: Option<usize>,
    /// Images per run; files are named `<stem>-<i>.png` when more than one.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How non-square prompt images are fitted.
    #[arg(long, value_enum, default_value_t = FitMode::Crop)]
    fit: FitMode,
    /// cubiq's noise, 0..1: the unconditioned side sees noised copies of the negative
    /// images (of the positive images when there are none).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// How several positive images become one (subtract: the first minus the rest,
    /// negative images included).
    #[arg(long, value_enum, default_value_t = Combine::WeightedAverage)]
    combine: Combine,
    /// Per-layer shape of the positive image scale over the UNet.
    #[arg(long, value_enum, default_value_t = WeightType::Linear)]
    weight_type: WeightType,
    /// Per-layer shape of the negative image scale over the UNet.
    #[arg(long, value_enum, default_value_t = WeightType::Linear)]
    negative_weight_type: WeightType,
    /// Where the image scale enters the image attention.
    #[arg(long, value_enum, default_value_t = EmbedsScaling::VOnly)]
    embeds_scaling: EmbedsScaling,
    /// Decoder of the final picture: the full VAE, or TAESD for a draft in about a
    /// second on the CPU (softer in fine detail; needs --taesd or TAESD downloaded).
    #[arg(long = "decode", value_name = "DECODER", value_enum, default_value_t = FinalDecode::Vae)]
    final_decode: FinalDecode,
    /// Compute device (auto: CUDA, then Metal on Apple silicon, then the CPU; a GPU that
    /// fails a first test falls back to the CPU).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Number format (bf16 on GPUs only; default: f16 on GPUs, f32 on the CPU).
    #[arg(long, value_enum)]
    dtype: Option<DTypeChoice>,
    /// Output image: .png (settings embedded, restorable), .jpg/.jpeg or .webp
    /// (settings as EXIF text).
    #[arg(long, short, default_value = "minus.png")]
    output: PathBuf,
}

/// A usage error saying `message(given, images)` unless `given` is 0 or one per image.
fn one_per_image(
    given: usize,
    images: usize,
    message: impl FnOnce(usize, usize) -> String,
) -> anyhow::Result<()> {
    if given == 0 || given == images {
        return Ok(());
    }
    Err(UsageError(message(given, images)).into())
}

fn prompts(
    paths: &[PathBuf],
    (weights, masks): (&[f64], &[PathBuf]),
    flag: &str,
) -> anyhow::Result<Vec<ImagePrompt>> {
    one_per_image(weights.len(), paths.len(), |given, images| {
        format!("--{flag}-weights has {given} values for {images} images")
    })?;
    one_per_image(masks.len(), paths.len(), |given, images| {
        format!(
            "{given} --{flag}-mask flags for {images} images (one per image, in order; \
             `none` for no mask)"
        )
    })?;
    Ok(paths
        .iter()
        .enumerate()
        .map(|(i, path)| ImagePrompt {
            weight: weights.get(i).copied().unwrap_or(1.0),
            mask: masks
                .get(i)
                .filter(|mask| mask.as_os_str() != "none")
                .map(MaskFile::new),
            ..ImagePrompt::new(path)
        })
        .collect())
}

/// `request` at the family's default size on each side the command line leaves open.
fn sized_for_family(args: &GenerateArgs, mut request: Request, family: ModelFamily) -> Request {
    let side = family.default_side_px();
    let (width, height) = (args.width.unwrap_or(side), args.height.unwrap_or(side));
    if (width, height) != (request.width, request.height) {
        eprintln!("size: {width}x{height} ({} default)", family.display_name());
    }
    (request.width, request.height) = (width, height);
    request
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
            images: prompts(
                &self.images,
                (&self.image_weights, &self.image_masks),
                "image",
            )?,
            negative_images: prompts(
                &self.negative_images,
                (&self.negative_image_weights, &self.negative_image_masks),
                "negative-image",
            )?,
            ip_weight: self.ip_weight,
            negative_ip_weight: self.negative_ip_weight.unwrap_or(self.ip_weight),
            ip_window,
            negative_ip_window: Window {
                start: self.negative_ip_start.unwrap_or(ip_window.start),
                end: self.negative_ip_end.unwrap_or(ip_window.end),
            },
            sampler: self.sampler,
            karras: self.karras,
            eta: self.eta,
            steps: self.steps,
            cfg: self.cfg,
            seed: self.seed.unwrap_or_else(random_seed),
            // The model's family, which sets the default, is known once it loads.
            width: self.width.unwrap_or(ModelFamily::Sd15.default_side_px()),
            height: self.height.unwrap_or(ModelFamily::Sd15.default_side_px()),
            batch: self.batch,
            fit: self.fit,
            noise: self.noise,
            combine: self.combine,
            weight_type: self.weight_type,
            negative_weight_type: self.negative_weight_type,
            embeds_scaling: self.embeds_scaling,
            // `generate` fills these in from the models that run.
            loras: Vec::new(),
            family: ModelFamily::Sd15,
            final_decode: self.final_decode,
        })
    }
}

/// Said when negative images come with CFG ≤ 1, where they cannot act as negatives.
const NEGATIVE_IMAGES_NEED_GUIDANCE: &str = "note: the negative image prompt needs CFG > 1: at CFG 1 \
     (guidance off) it has no effect, below 1 it pulls the picture towards itself";

/// The `--lora` files at their `--lora-weights`.
fn loras(paths: &[PathBuf], strengths: &[f64]) -> anyhow::Result<Vec<LoraChoice>> {
    if !strengths.is_empty() && strengths.len() != paths.len() {
        let message = format!(
            "--lora-weights has {} values for {} --lora files",
            strengths.len(),
            paths.len()
        );
        return Err(UsageError(message).into());
    }
    let loras: Vec<LoraChoice> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| LoraChoice::new(path, strengths.get(i).copied().unwrap_or(1.0)))
        .collect();
    for lora in &loras {
        lora.check_strength()
            .map_err(|error| UsageError(error.to_string()))?;
    }
    Ok(loras)
}

/// The model files of the run: the flags', the rest from the download cache, and the
/// `--lora` files.
fn model_paths(args: &GenerateArgs, request: &Request) -> anyhow::Result<ModelPaths> {
    let mut paths = ModelPaths {
        loras: loras(&args.loras, &args.lora_weights)?,
        ..args.models.clone()
    };
    let needs = Needs {
        image_prompts: request.has_image_prompts(),
        taesd: request.final_decode == FinalDecode::Taesd,
    };
    fill_from_cache(&mut paths, needs, &Hub::from_env())?;
    // A folder the models would quietly do without (TAESD's) must be there when asked for.
    if let Some(taesd) = paths.taesd.as_ref().filter(|_| needs.taesd)
        && !taesd.is_dir()
    {
        anyhow::bail!(
            "{}: TAESD folder not found (--decode taesd needs its config.json and weights)",
            taesd.display()
        );
    }
    Ok(paths)
}

/// Runs `minus generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    request
        .validate()
        .map_err(|error| UsageError(error.to_string()))?;
    let paths = model_paths(args, &request)?;
    if request.guidance_off() && request.negative_images.iter().any(|image| image.enabled) {
        eprintln!("{NEGATIVE_IMAGES_NEED_GUIDANCE}");
    }
    // Checked before any work: a run must not end in a file that cannot be written.
    let outputs = numbered_paths(&args.output, request.batch);
    for path in &outputs {
        check_replaceable(path)?;
        SaveFormat::from_path(path)?;
    }
    let chosen = select_device(args.device, args.dtype)?;
    if let Some(fallback) = &chosen.fallback {
        eprintln!("{fallback}");
    }
    let device = chosen.device;
    let dtype = resolve_dtype(&device, args.dtype)?;
    eprintln!("device: {} ({dtype:?})", device_name(&device));
    let load_started = std::time::Instant::now();
    let models = Models::load(&paths, &device, dtype)?;
    for lora in models.loras() {
        let hash = lora.short_hash().unwrap_or_default().to_string();
        eprintln!("LoRA {} ({hash}) at {}", lora.name(), lora.strength);
    }
    eprintln!(
        "{} models loaded in {:.1}s",
        models.family.display_name(),
        load_started.elapsed().as_secs_f64()
    );
    let request = sized_for_family(args, request, models.family);
    let mut cache = EmbeddingCache::default();
    let mut on_phase = |phase: Phase| {
        match phase {
            // Steps report themselves on one line.
            Phase::FirstStep => {}
            // The step line ends with a carriage return, not a newline.
            Phase::Decoding => eprintln!("\n{}...", phase.label()),
            _ => eprintln!("{}...", phase.label()),
        }
    };
    let generation = generate(
        &models,
        &request,
        &mut cache,
        &mut on_phase,
        &mut |report| {
            let done = report.step + 1;
            let rate = done as f64 / report.elapsed_secs.max(1e-9);
            eprint!("\rstep {done}/{}  {rate:.2} it/s", report.total);
            // Progress only; a closed stderr must not stop the run.
            let _ = std::io::stderr().flush();
            Flow::Continue
        },
    )
    .context("generation failed")?;
    let model_name = paths.model_name();
    for (path, image) in outputs.iter().zip(&generation.images) {
        save_result(path, image, &generation.request, &model_name)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
