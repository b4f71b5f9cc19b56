//! Helpers shared by the integration tests: fixture paths, model loading, comparisons.
#![allow(dead_code)]

pub mod stand_in_hub;
pub mod ui;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use minus::models::unet::{CrossContext, ImageTokens};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::{Flow, Models, Request, generate};
use minus::scratch::ScratchDir;
use minus::weights::ModelPaths;

/// `tests/fixtures`, the copy of the reference data.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies the folder `from` (and its sub-folders) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("fixture folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The tiny SDXL diffusers folder (`tests/tools/make_sdxl_cases.py`).
pub fn sdxl_folder() -> PathBuf {
    fixtures().join("sdxl/models/sdxl")
}

/// The tiny SDXL adapters in h94's `sdxl_models/` layout, with their image encoder.
pub fn sdxl_adapters() -> PathBuf {
    fixtures().join("sdxl/models/ip-adapter/sdxl_models")
}

/// The text-only SDXL request of the reference cases: "a photo of a cat", Euler, 4
/// steps, CFG 6, 64², seed 42, with `negative_prompt` (empty: SDXL's zeros).
pub fn sdxl_text_request(negative_prompt: &str) -> Request {
    Request {
        prompt: "a photo of a cat".to_string(),
        negative_prompt: negative_prompt.to_string(),
        sampler: minus::schedulers::SamplerKind::Euler,
        karras: false,
        steps: 4,
        cfg: 6.0,
        seed: 42,
        width: 64,
        height: 64,
        ..Request::default()
    }
}

/// Paths of the tiny reference models, with the given adapter file (if any).
pub fn model_paths(adapter: Option<&str>) -> ModelPaths {
    let root = fixtures().join("models");
    let ip = root.join("ip-adapter/models");
    ModelPaths {
        model: root.join("sd15"),
        vae: None,
        ip_adapter: adapter.map(|file| ip.join(file)),
        image_encoder: adapter.map(|_| ip.join("image_encoder")),
        taesd: None,
        configs: None,
        loras: Vec::new(),
    }
}

/// `minus generate` on the CPU with the tiny models, the IP-Adapter file `adapter` and
/// its image encoder, and the house as the first image prompt; callers add the rest.
pub fn generate_command(adapter: &str) -> std::process::Command {
    let paths = model_paths(Some(adapter));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_minus"));
    command
        .args(["generate", "--device", "cpu"])
        .arg("--model")
        .arg(&paths.model)
        .arg("--ip-adapter")
        .arg(paths.ip_adapter.as_ref().expect("adapter"))
        .arg("--image-encoder")
        .arg(paths.image_encoder.as_ref().expect("encoder"))
        .arg("--image")
        .arg(fixtures().join("images/house.png"));
    command
}

/// The adapter file of a reference case's `adapter` value.
pub fn adapter_file(kind: &str) -> &'static str {
    match kind {
        "plus" => "ip-adapter-plus_sd15.safetensors",
        _ => "ip-adapter_sd15.safetensors",
    }
}

/// Loads the tiny models on the CPU in f32.
pub fn load_models(adapter: Option<&str>) -> Models {
    Models::load(&model_paths(adapter), &Device::Cpu, DType::F32).expect("reference models load")
}

/// A CFG batch's context: `text` (`[2, tokens, dim]`) and random image tokens for
/// the adapter's layers (the models must have been loaded with an adapter).
pub fn context_with_random_image_tokens(models: &Models, text: Tensor) -> CrossContext<'_> {
    let image = models.image.as_ref().expect("image models");
    let tokens_shape = (2, 16, text.dim(2).expect("text tokens [2, tokens, dim]"));
    CrossContext::new(
        text,
        Some(ImageTokens {
            tokens: Tensor::randn(0f32, 1f32, tokens_shape, &Device::Cpu).expect("random tokens"),
            layers: image.adapter.attention_weights(),
        }),
    )
}

/// The images of `request`, run to the end with a fresh embedding cache.
pub fn generate_images(models: &Models, request: &Request) -> Vec<image::RgbImage> {
    let mut cache = EmbeddingCache::default();
    generate(models, request, &mut cache, &mut |_| {}, &mut |_| {
        Flow::Continue
    })
    .expect("generation runs")
    .images
}

/// The folder of one reference case (`case.json`, `tensors.safetensors`, `out.png`).
pub fn case_dir(case: &str) -> PathBuf {
    fixtures().join("cases").join(case)
}

/// The saved tensors of one reference case.
pub fn case_tensors(case: &str) -> HashMap<String, Tensor> {
    let path = case_dir(case).join("tensors.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).expect("reference tensors load")
}

/// `‖a − b‖ / ‖b‖`.
pub fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    let actual = actual.to_dtype(DType::F64).unwrap();
    let expected = expected.to_dtype(DType::F64).unwrap();
    assert_eq!(actual.dims(), expected.dims(), "shape mismatch");
    let diff = (&actual - &expected)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let norm = expected.sqr().unwrap().sum_all().unwrap();
    (diff.to_scalar::<f64>().unwrap() / norm.to_scalar::<f64>().unwrap().max(1e-30)).sqrt()
}

/// Largest absolute difference.
pub fn max_abs_diff(actual: &Tensor, expected: &Tensor) -> f64 {
    let actual = actual.to_dtype(DType::F64).unwrap();
    let expected = expected.to_dtype(DType::F64).unwrap();
    (&actual - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Asserts `‖a − b‖ / ‖b‖ ≤ tolerance`, naming the tensor.
pub fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tolerance: f64) -> f64 {
    let error = relative_error(actual, expected);
    assert!(
        error <= tolerance,
        "{name}: relative error {error:.3e} > {tolerance:.0e}"
    );
    error
}

/// |Δ| of every 8-bit channel of `image` against the PNG at `expected`, in 1/255 units.
fn channel_differences(name: &str, image: &image::RgbImage, expected: &Path) -> Vec<f64> {
    let expected = image::open(expected).expect("expected image").to_rgb8();
    assert_eq!(
        image.dimensions(),
        expected.dimensions(),
        "{name}: image size"
    );
    image
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .collect()
}

/// Asserts an 8-bit image is within mean 0.5/255 and max 4/255 of the PNG at `expected`.
pub fn assert_image_matches(name: &str, image: &image::RgbImage, expected: &Path) {
    assert_image_within(name, image, expected, 0.5, 4.0);
}

/// Asserts an 8-bit image is within mean `mean_limit`/255 and max `max_limit`/255 of
/// the PNG at `expected`.
pub fn assert_image_within(
    name: &str,
    image: &image::RgbImage,
    expected: &Path,
    mean_limit: f64,
    max_limit: f64,
) {
    let diffs = channel_differences(name, image, expected);
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().copied().fold(0.0, f64::max);
    println!("{name}: image mean |Δ| {mean:.4}/255, max |Δ| {max:.0}/255");
    assert!(mean <= mean_limit, "{name}: image mean |Δ| {mean}/255");
    assert!(max <= max_limit, "{name}: image max |Δ| {max}/255");
}

/// Mean |Δ| over the 8-bit channels of `image` and the PNG at `expected`, in 1/255 units.
pub fn mean_abs_difference(name: &str, image: &image::RgbImage, expected: &Path) -> f64 {
    let diffs = channel_differences(name, image, expected);
    diffs.iter().sum::<f64>() / diffs.len() as f64
}

/// A fresh, empty folder under the system temp dir for one test, removed when the
/// returned guard drops: bind it for as long as the test uses the folder.
pub fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("test-{name}"))
}

/// The one-line error of loading `paths`, which must fail.
pub fn load_error(paths: &ModelPaths) -> String {
    match Models::load(paths, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{paths:?} should not load"),
        Err(error) => {
            let message = error.to_string();
            assert!(!message.contains('\n'), "not one line: {message}");
            message
        }
    }
}

/// A command running `program` under `prlimit --as=<cap_bytes>`, so that an allocation
/// abort or runaway memory fails the test. Where `prlimit` is missing this fails at once
/// and says what to install: a run without the cap would pass while checking less.
/// (Tests that use it are Linux only: `prlimit` is util-linux's.)
pub fn capped_command(
    cap_bytes: u64,
    program: impl AsRef<std::ffi::OsStr>,
) -> std::process::Command {
    let found = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "prlimit not found: install util-linux (the tests' memory cap needs it)"
    );
    let mut command = std::process::Command::new("prlimit");
    command.arg(format!("--as={cap_bytes}")).arg(program);
    command
}
