//! `minus generate` on the tiny SDXL models: the family is read from the files and
//! named, the size defaults to SDXL's, the saved settings name SDXL, an SD 1.5
//! adapter on SDXL is one line naming both families, and an SDXL LoRA runs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, sdxl_adapters, sdxl_folder, temp_dir};
use minus::models::family::ModelFamily;

/// `minus generate` on the tiny SDXL folder with `adapter`, its encoder, the house
/// and the lawn, Euler, one step, writing `out/x.png`.
fn sdxl_generate(adapter: &Path, encoder: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minus"));
    command
        .args([
            "generate",
            "--device",
            "cpu",
            "--sampler",
            "euler",
            "--steps",
            "1",
        ])
        .args(["--prompt", "a house", "--seed", "3"])
        .arg("--model")
        .arg(sdxl_folder())
        .arg("--ip-adapter")
        .arg(adapter)
        .arg("--image-encoder")
        .arg(encoder)
        .arg("--image")
        .arg(fixtures().join("images/house.png"))
        .arg("--negative-image")
        .arg(fixtures().join("images/lawn.png"))
        .arg("--output")
        .arg(out.join("x.png"));
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_sdxl_run_names_the_family_and_takes_its_default_size() {
    let out = temp_dir("cli-sdxl");
    let adapter = sdxl_adapters().join("ip-adapter-plus_sdxl_vit-h.safetensors");
    let output = sdxl_generate(&adapter, &sdxl_adapters().join("image_encoder"), out.path())
        .output()
        .expect("minus runs");
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("SDXL models loaded"), "{text}");
    assert!(text.contains("size: 1024x1024 (SDXL default)"), "{text}");
    let bytes = std::fs::read(out.path().join("x.png")).expect("picture written");
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.family, ModelFamily::Sdxl);
    assert_eq!((request.width, request.height), (1024, 1024));
    let image = image::load_from_memory(&bytes).expect("png");
    assert_eq!((image.width(), image.height()), (1024, 1024));
    let parameters = String::from_utf8_lossy(&bytes).into_owned();
    assert!(parameters.contains("Model family: SDXL"));
}

#[test]
fn an_sd15_adapter_on_sdxl_is_one_line_naming_both_families() {
    let out = temp_dir("cli-sdxl-mismatch");
    let sd15 = fixtures().join("models/ip-adapter/models");
    let output = sdxl_generate(
        &sd15.join("ip-adapter_sd15.safetensors"),
        &sd15.join("image_encoder"),
        out.path(),
    )
    .args(["--width", "64", "--height", "64"])
    .output()
    .expect("minus runs");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let error: Vec<&str> = text.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error.len(), 1, "{text}");
    assert!(
        error[0].contains("ip-adapter_sd15.safetensors")
            && error[0].contains("for the loaded model's family"),
        "{text}"
    );
}

#[test]
fn a_lora_on_an_sdxl_model_runs() {
    let out = temp_dir("cli-sdxl-lora");
    let adapter = sdxl_adapters().join("ip-adapter_sdxl.safetensors");
    let output = sdxl_generate(&adapter, &sdxl_adapters().join("image_encoder"), out.path())
        .args(["--width", "64", "--height", "64", "--lora"])
        .arg(fixtures().join("sdxl/lora/kohya.safetensors"))
        .output()
        .expect("minus runs");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(out.path().join("x.png").is_file(), "{text}");
}
