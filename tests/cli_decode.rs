//! The fast final decode: `minus generate --decode taesd` makes TAESD's picture of the
//! run's final latents (the decode tests/taesd_parity.rs checks against diffusers), says
//! so in the saved settings, and refuses clearly when TAESD is not there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use common::{fixtures, model_paths, temp_dir};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::preview::taesd_to_rgb;
use minus::pipeline::{FinalDecode, Flow, Models, Request, generate};
use minus::weights::ModelPaths;

fn taesd_dir() -> PathBuf {
    fixtures().join("models/taesd")
}

/// The tiny models with the base adapter and the TAESD fixture.
fn paths_with_taesd() -> ModelPaths {
    ModelPaths {
        taesd: Some(taesd_dir()),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    }
}

/// `minus generate` on the CPU with the tiny models, the house as image prompt and the
/// lawn as negative, 64×48, 2 steps, seed 11, writing `out`; `args` come last. The hub
/// cache is `hub_cache` (an empty folder: nothing is found there).
fn generate_cli(args: &[&str], hub_cache: &Path, out: &Path) -> Output {
    let paths = model_paths(Some("ip-adapter_sd15.safetensors"));
    let images = fixtures().join("images");
    let named = [
        ("--model", paths.model),
        ("--ip-adapter", paths.ip_adapter.expect("adapter")),
        ("--image-encoder", paths.image_encoder.expect("encoder")),
        ("--image", images.join("house.png")),
        ("--negative-image", images.join("lawn.png")),
        ("--output", out.to_path_buf()),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_minus"));
    command
        .env("HF_HUB_CACHE", hub_cache)
        .args([
            "generate", "--device", "cpu", "--width", "64", "--height", "48",
        ])
        .args(["--steps", "2", "--seed", "11", "--cfg", "3"]);
    for (flag, path) in named {
        command.arg(flag).arg(path);
    }
    command.args(args).output().expect("minus runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `request` in this process with the VAE decode; returns the VAE's image and the
/// final latents.
fn run_with_vae(models: &Models, request: &Request) -> (image::RgbImage, Tensor) {
    let request = Request {
        final_decode: FinalDecode::Vae,
        ..request.clone()
    };
    let mut last = None;
    let generation = generate(
        models,
        &request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
        &mut |report| {
            last = Some(report.latents.clone());
            Flow::Continue
        },
    )
    .expect("generation");
    let image = generation.images.into_iter().next().expect("one image");
    (image, last.expect("at least one step"))
}

/// Mean and max |Δ| of two 8-bit images, in 1/255 units.
fn differences(a: &image::RgbImage, b: &image::RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    (mean, diffs.into_iter().max().unwrap_or(0))
}

#[test]
fn decode_taesd_saves_taesds_picture_of_the_final_latents() {
    let scratch = temp_dir("cli-decode-taesd");
    let out = scratch.join("draft.png");
    let taesd = taesd_dir().display().to_string();
    let output = generate_cli(&["--decode", "taesd", "--taesd", &taesd], &scratch, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&out).expect("output");
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.final_decode, FinalDecode::Taesd);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(", Decode: TAESD"), "the settings text");
    let draft = image::load_from_memory(&bytes).expect("png").to_rgb8();
    assert_eq!(draft.dimensions(), (64, 48));
    // The same request in this process: TAESD's picture of its final latents through
    // the previews' decode (tests/taesd_parity.rs), and the VAE's picture.
    let models = Models::load(&paths_with_taesd(), &Device::Cpu, DType::F32).expect("models");
    let (vae_image, latents) = run_with_vae(&models, &request);
    let taesd_model = models.taesd.as_ref().expect("TAESD loaded");
    let expected = taesd_to_rgb(taesd_model, &latents).expect("TAESD decode");
    let (mean, max) = differences(&draft, &expected);
    println!("--decode taesd vs TAESD of the latents: mean |Δ| {mean:.4}/255, max {max}/255");
    // Measured 0: the same latents through the same decoder.
    assert!(max <= 1, "max |Δ| {max}/255");
    let (mean, max) = differences(&draft, &vae_image);
    println!("--decode taesd vs the VAE's picture: mean |Δ| {mean:.2}/255, max {max}/255");
    assert!(
        mean > 1.0,
        "the draft is the VAE's picture: mean |Δ| {mean}/255"
    );
}

#[test]
fn decode_vae_is_the_default_and_leaves_the_settings_as_they_were() {
    let scratch = temp_dir("cli-decode-vae");
    let (default, vae) = (scratch.join("default.png"), scratch.join("vae.png"));
    for (args, out) in [(&[][..], &default), (&["--decode", "vae"][..], &vae)] {
        let output = generate_cli(args, &scratch, out);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let bytes = std::fs::read(&default).expect("output");
    assert_eq!(bytes, std::fs::read(&vae).expect("output"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("Decode:"), "the settings name a decoder");
    assert!(
        !text.contains("final_decode"),
        "the settings name a decoder"
    );
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.final_decode, FinalDecode::Vae);
}

/// (A TAESD decode with no --taesd and none in the cache: tests/cli_defaults.rs.)
#[test]
fn a_taesd_folder_that_is_not_there_is_named_before_anything_runs() {
    let scratch = temp_dir("cli-decode-no-taesd");
    let out = scratch.join("x.png");
    let output = generate_cli(
        &["--decode", "taesd", "--taesd", "/no/such/taesd"],
        &scratch,
        &out,
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("error: /no/such/taesd: TAESD folder not found"),
        "{message}"
    );
    assert!(!message.contains("step 1/"), "{message}");
    assert!(!out.exists());
}

#[test]
fn a_taesd_decode_without_taesd_loaded_fails_before_the_first_step() {
    let models = common::load_models(Some("ip-adapter_sd15.safetensors"));
    let request = Request {
        steps: 2,
        width: 64,
        height: 48,
        final_decode: FinalDecode::Taesd,
        ..Request::default()
    };
    let mut steps = 0;
    let result = generate(
        &models,
        &request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
        &mut |_| {
            steps += 1;
            Flow::Continue
        },
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("needs TAESD"), "{message}");
    assert_eq!(steps, 0);
}
