//! LoRAs on SDXL against stock diffusers: tiny random LoRAs for the tiny SDXL folder
//! (kohya on the UNet and both text encoders, with diffusers and SGM UNet names, and
//! diffusers/PEFT with its metadata alphas), made and run by
//! `tests/tools/make_sdxl_lora_cases.py` (`load_lora_weights` + `set_adapters` at 0.8);
//! strength 0; a change of strength without reading the model; an SDXL LoRA on SD 1.5.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use common::{
    assert_image_matches, copy_dir, fixtures, generate_images, load_error, model_paths,
    sdxl_folder, sdxl_text_request, temp_dir,
};
use minus::pipeline::{Models, Request};
use minus::weights::ModelPaths;
use minus::weights::lora::LoraChoice;

/// The strength every case ran at in diffusers.
const STRENGTH: f64 = 0.8;

fn lora_dir() -> PathBuf {
    fixtures().join("sdxl/lora")
}

fn lora(file: &str, strength: f64) -> Vec<LoraChoice> {
    vec![LoraChoice::new(lora_dir().join(file), strength)]
}

fn paths(model: PathBuf, loras: Vec<LoraChoice>) -> ModelPaths {
    ModelPaths {
        model,
        loras,
        ..ModelPaths::default()
    }
}

fn load(paths: &ModelPaths) -> Models {
    Models::load(paths, &Device::Cpu, DType::F32).expect("tiny SDXL with LoRAs loads")
}

/// The cases' settings (`cases.json`): negative prompt None, so SDXL's zeros.
fn request() -> Request {
    sdxl_text_request("")
}

fn picture(loras: Vec<LoraChoice>) -> image::RgbImage {
    generate_images(&load(&paths(sdxl_folder(), loras)), &request()).remove(0)
}

/// Minus' picture with `file` at 0.8 against diffusers' (case `name`).
fn check(name: &str, file: &str) {
    let expected = lora_dir().join("out").join(format!("{name}.png"));
    assert_image_matches(name, &picture(lora(file, STRENGTH)), &expected);
}

#[test]
fn the_cases_are_what_the_script_ran() {
    let text = std::fs::read_to_string(lora_dir().join("cases.json")).expect("cases.json");
    let cases: serde_json::Value = serde_json::from_str(&text).expect("cases.json parses");
    let kohya = &cases["kohya"];
    let request = request();
    assert_eq!(kohya["prompt"], request.prompt.as_str());
    assert!(kohya["negative_prompt"].is_null());
    assert_eq!(kohya["strength"], STRENGTH);
    assert_eq!(kohya["steps"], request.steps);
    assert_eq!(kohya["cfg"], request.cfg);
    assert_eq!(kohya["seed"], request.seed);
    assert_eq!(kohya["width"], request.width);
}

#[test]
fn no_lora_matches_diffusers() {
    assert_image_matches(
        "none",
        &picture(Vec::new()),
        &lora_dir().join("out/none.png"),
    );
}

#[test]
fn a_kohya_lora_on_the_unet_and_both_text_encoders_matches_diffusers() {
    check("kohya", "kohya.safetensors");
}

#[test]
fn a_kohya_lora_with_sgm_unet_names_matches_diffusers() {
    check("kohya_ldm", "kohya_ldm.safetensors");
}

#[test]
fn a_peft_lora_on_the_unet_and_both_text_encoders_matches_diffusers() {
    check("peft", "peft.safetensors");
}

/// The tiny SDXL folder as one Stability-layout file takes the LoRA the same way.
#[test]
fn a_kohya_lora_on_a_single_file_matches_diffusers() {
    let single_file = fixtures().join("sdxl/single_file/tiny_sdxl.safetensors");
    let paths = ModelPaths {
        configs: Some(sdxl_folder()),
        ..paths(single_file, lora("kohya.safetensors", STRENGTH))
    };
    let picture = generate_images(&load(&paths), &request()).remove(0);
    assert_image_matches(
        "single file kohya",
        &picture,
        &lora_dir().join("out/kohya.png"),
    );
}

#[test]
fn strength_zero_is_the_model_bit_for_bit() {
    assert!(picture(lora("kohya.safetensors", 0.0)) == picture(Vec::new()));
}

/// Another strength merges again into all three networks from the weights kept at
/// load (the model folder is gone by then), and the text embeddings' id changes.
#[test]
fn a_strength_change_merges_again_without_reading_the_model() {
    let scratch = temp_dir("sdxl-lora-reweigh");
    let model = scratch.join("sdxl");
    copy_dir(&sdxl_folder(), &model);
    let mut models = load(&paths(model.clone(), lora("kohya.safetensors", 0.3)));
    let first_text_id = models.text_id.clone();
    std::fs::remove_dir_all(&model).expect("model removed");
    models
        .set_lora_strengths(&[STRENGTH])
        .expect("merged again");
    assert_ne!(
        models.text_id, first_text_id,
        "text encodings would be reused"
    );
    let expected = lora_dir().join("out/kohya.png");
    assert_image_matches(
        "kohya again",
        &generate_images(&models, &request())[0],
        &expected,
    );
}

/// A LoRA that changes only the second text encoder still changes the embeddings' id.
#[test]
fn a_lora_on_the_second_text_encoder_alone_changes_the_text_id() {
    let scratch = temp_dir("sdxl-lora-te2");
    let file = scratch.join("te2.safetensors");
    let all = candle_core::safetensors::load(lora_dir().join("kohya.safetensors"), &Device::Cpu)
        .expect("kohya file");
    let te2 = all
        .into_iter()
        .filter(|(key, _)| key.starts_with("lora_te2_"))
        .collect();
    candle_core::safetensors::save(&te2, &file).expect("saved");
    let plain = load(&paths(sdxl_folder(), Vec::new()));
    let with_te2 = load(&paths(sdxl_folder(), vec![LoraChoice::new(&file, 1.0)]));
    assert_ne!(plain.text_id, with_te2.text_id);
}

#[test]
fn an_sdxl_lora_on_sd15_is_refused_in_one_line() {
    let message = load_error(&ModelPaths {
        loras: lora("kohya.safetensors", 1.0),
        ..model_paths(None)
    });
    assert!(
        message.contains("kohya.safetensors")
            && message.contains("this is an SDXL LoRA; Minus needs LoRAs made for SD 1.5"),
        "{message}"
    );
}
