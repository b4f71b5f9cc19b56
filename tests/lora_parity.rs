//! LoRA files against stock diffusers: tiny random LoRAs in each format users have
//! (kohya with diffusers and LDM module names, LoCon convolutions, diffusers/PEFT with its
//! metadata alphas, an f16 file), alone, two at once and with image prompts, made and run
//! by `tests/tools/make_lora_cases.py` (`load_lora_weights` + `set_adapters`); what Minus
//! refuses; and a change of strength that merges again without reading the model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use common::{
    adapter_file, assert_image_matches, fixtures, generate_images, load_error, model_paths,
    temp_dir,
};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::{Flow, ImagePrompt, Models, Request, generate};
use minus::weights::ModelPaths;
use minus::weights::lora::LoraChoice;
use serde_json::Value;

fn lora_dir() -> PathBuf {
    fixtures().join("lora")
}

/// `cases.json`: each case's settings, and each file's addnet hash as Python computed it.
fn cases_file() -> Value {
    let text = std::fs::read_to_string(lora_dir().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn case(name: &str) -> Value {
    cases_file()["cases"][name].clone()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

/// The case's LoRA files at their strengths.
fn case_loras(case: &Value) -> Vec<LoraChoice> {
    let loras = case["loras"].as_array().expect("loras");
    loras
        .iter()
        .map(|pair| LoraChoice::new(lora_dir().join(text(&pair[0])), number(&pair[1])))
        .collect()
}

/// The models of a case: the tiny SD 1.5, the case's adapter if any, and `loras`.
fn paths_with(case: &Value, loras: Vec<LoraChoice>) -> ModelPaths {
    let adapter = case["adapter"].as_str().map(|_| adapter_file("base"));
    ModelPaths {
        loras,
        ..model_paths(adapter)
    }
}

fn load(paths: &ModelPaths) -> Models {
    Models::load(paths, &Device::Cpu, DType::F32).expect("models with LoRAs load")
}

fn image(name: &str) -> Vec<ImagePrompt> {
    vec![ImagePrompt::new(fixtures().join("images").join(name))]
}

/// The settings of a case, as the script gave them to diffusers (DDIM, weights 1).
fn case_request(case: &Value) -> Request {
    Request {
        prompt: text(&case["prompt"]),
        negative_prompt: text(&case["negative_prompt"]),
        images: case["image"].as_str().map(image).unwrap_or_default(),
        negative_images: case["negative_image"]
            .as_str()
            .map(image)
            .unwrap_or_default(),
        steps: number(&case["steps"]) as usize,
        cfg: number(&case["cfg"]),
        seed: number(&case["seed"]) as u64,
        width: number(&case["width"]) as usize,
        height: number(&case["height"]) as usize,
        ..Request::default()
    }
}

/// Minus' picture of case `name` with `loras` instead of the case's own.
fn picture_with(name: &str, loras: Vec<LoraChoice>) -> image::RgbImage {
    let case = case(name);
    let models = load(&paths_with(&case, loras));
    generate_images(&models, &case_request(&case)).remove(0)
}

/// Runs case `name` and compares it with diffusers' picture.
fn check(name: &str) -> image::RgbImage {
    let picture = picture_with(name, case_loras(&case(name)));
    let expected = lora_dir().join("out").join(format!("{name}.png"));
    assert_image_matches(name, &picture, &expected);
    picture
}

/// Mean |Δ| of two pictures, in 1/255 units.
fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum();
    sum / a.as_raw().len() as f64
}

#[test]
fn a_kohya_lora_on_the_unet_and_text_encoder_matches_diffusers() {
    let with_lora = check("kohya");
    let without = picture_with("kohya", Vec::new());
    // The LoRA moves the picture far beyond the tolerance, so the match means something.
    assert!(mean_difference(&with_lora, &without) > 3.0);
}

#[test]
fn a_peft_lora_with_its_metadata_alphas_matches_diffusers() {
    check("peft");
}

#[test]
fn a_locon_lora_on_convolutions_matches_diffusers() {
    check("locon");
}

#[test]
fn two_loras_one_at_a_negative_strength_match_diffusers() {
    check("two");
}

#[test]
fn a_lora_with_positive_and_negative_images_matches_diffusers() {
    check("posneg");
}

#[test]
fn an_f16_lora_file_matches_diffusers() {
    check("kohya_f16");
}

#[test]
fn without_loras_the_picture_is_diffusers_own() {
    check("none");
}

/// diffusers 0.42 reads LDM-named SD 1.5 kohya files only when handed the UNet config,
/// so these are checked against the picture of their diffusers-named twin.
#[test]
fn ldm_named_kohya_files_give_their_diffusers_named_twins_picture() {
    for (ldm, twin) in [("kohya_ldm", "kohya"), ("locon_ldm", "locon")] {
        let lora = |file: &str| vec![LoraChoice::new(lora_dir().join(file), 1.0)];
        let picture = picture_with(twin, lora(&format!("{ldm}.safetensors")));
        let twins = picture_with(twin, lora(&format!("{twin}.safetensors")));
        assert!(picture == twins, "{ldm} differs from {twin}");
    }
}

/// Some trainers store a linear layer's LoRA as 1×1 convolutions (`[rank, in, 1, 1]`).
#[test]
fn linear_layers_stored_as_1x1_convolutions_give_the_same_picture() {
    let scratch = temp_dir("lora-one-by-one");
    let original = lora_dir().join("kohya.safetensors");
    let tensors = candle_core::safetensors::load(&original, &Device::Cpu).expect("loads");
    let as_convolutions: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(key, tensor)| {
            let tensor = match tensor.dims() {
                &[rows, columns] => tensor.reshape((rows, columns, 1, 1)).expect("reshape"),
                _ => tensor,
            };
            (key, tensor)
        })
        .collect();
    let stored = scratch.join("kohya_1x1.safetensors");
    candle_core::safetensors::save(&as_convolutions, &stored).expect("saved");
    let picture = picture_with("kohya", vec![LoraChoice::new(stored, 1.0)]);
    assert!(picture == picture_with("kohya", vec![LoraChoice::new(original, 1.0)]));
}

#[test]
fn strength_zero_is_the_model_bit_for_bit() {
    let at_zero = case_loras(&case("two"))
        .into_iter()
        .map(|lora| LoraChoice {
            strength: 0.0,
            ..lora
        })
        .collect();
    let zero = picture_with("two", at_zero);
    assert!(zero == picture_with("two", Vec::new()));
}

/// An f16 run merges in f32 and casts the sum once: strength 0 is still the f16 model
/// bit for bit, and the LoRA's picture stays near the f32 one.
#[test]
fn an_f16_run_merges_in_f32_and_keeps_strength_zero_exact() {
    let case = case("kohya");
    let request = Request {
        steps: 3,
        ..case_request(&case)
    };
    let picture = |loras: Vec<LoraChoice>, dtype| {
        let models = Models::load(&paths_with(&case, loras), &Device::Cpu, dtype).expect("loads");
        generate_images(&models, &request).remove(0)
    };
    let kohya = |strength| {
        vec![LoraChoice::new(
            lora_dir().join("kohya.safetensors"),
            strength,
        )]
    };
    let plain = picture(Vec::new(), DType::F16);
    assert!(picture(kohya(0.0), DType::F16) == plain);
    let half = picture(kohya(1.0), DType::F16);
    let full = picture(kohya(1.0), DType::F32);
    assert!(mean_difference(&half, &plain) > 3.0);
    let apart = mean_difference(&half, &full);
    println!("f16 vs f32 with the LoRA: mean |Δ| {apart:.3}/255");
    assert!(apart < 1.0, "f16 and f32 pictures {apart}/255 apart");
}

/// Copies the files of folder `from` into `to`, folders included.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("readable folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn a_strength_change_merges_again_without_reading_the_model() {
    let case = case("kohya");
    let request = case_request(&case);
    let scratch = temp_dir("lora-reweigh");
    let model = scratch.join("sd15");
    copy_folder(&fixtures().join("models/sd15"), &model);
    let mut paths = paths_with(&case, case_loras(&case));
    paths.model = model.clone();
    let mut models = load(&paths);
    let first_text_id = models.text_id.clone();
    std::fs::remove_dir_all(&model).expect("model removed");
    models.set_lora_strengths(&[0.6]).expect("merged again");
    assert_ne!(
        models.text_id, first_text_id,
        "text encodings would be reused"
    );
    assert_eq!(models.loras()[0].strength, 0.6);
    let again = generate_images(&models, &request).remove(0);
    let kohya = |strength| {
        vec![LoraChoice::new(
            lora_dir().join("kohya.safetensors"),
            strength,
        )]
    };
    assert!(again == picture_with("kohya", kohya(0.6)));
    models.set_lora_strengths(&[0.0]).expect("merged again");
    let off = generate_images(&models, &request).remove(0);
    assert!(
        off == picture_with("kohya", Vec::new()),
        "strength 0 after 0.6"
    );
    let refused = models.set_lora_strengths(&[1.0, 1.0]);
    assert!(refused.is_err() && models.loras()[0].strength == 0.0);
}

fn refusal(file: &Path) -> String {
    load_error(&ModelPaths {
        loras: vec![LoraChoice::new(file, 1.0)],
        ..model_paths(None)
    })
}

/// A file whose tensors are `keys`, each `[2, 2]`.
fn write_lora(path: &Path, keys: &[&str]) {
    let tensors: Vec<(String, Tensor)> = keys
        .iter()
        .map(|key| {
            let tensor = Tensor::ones((2, 2), DType::F32, &Device::Cpu).expect("tensor");
            (key.to_string(), tensor)
        })
        .collect();
    candle_core::safetensors::save(&tensors.into_iter().collect(), path).expect("saved");
}

#[test]
fn loha_pickled_and_foreign_loras_are_refused_naming_the_file() {
    let loha = refusal(&lora_dir().join("loha.safetensors"));
    assert!(
        loha.contains("loha.safetensors") && loha.contains("LoHa is not supported yet"),
        "{loha}"
    );
    let scratch = temp_dir("lora-refused");
    let pickle = scratch.join("style.pt");
    std::fs::copy(lora_dir().join("kohya.safetensors"), &pickle).expect("copy");
    let pickled = refusal(&pickle);
    assert!(
        pickled.contains("style.pt") && pickled.contains(".safetensors only"),
        "{pickled}"
    );
    let foreign = scratch.join("sdxl_unet.safetensors");
    let layers: Vec<String> = (0..5)
        .flat_map(|i| {
            let name = format!("lora_unet_input_blocks_{i}_1_transformer_blocks_3_attn1_to_q");
            [
                format!("{name}.lora_down.weight"),
                format!("{name}.lora_up.weight"),
            ]
        })
        .collect();
    write_lora(
        &foreign,
        &layers.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let unmatched = refusal(&foreign);
    assert!(
        unmatched.contains("sdxl_unet.safetensors")
            && unmatched.contains("5 layers match no layer of the UNet")
            && unmatched.contains("`input_blocks_0_1_transformer_blocks_3_attn1_to_q`")
            && unmatched.contains("and 2 more"),
        "{unmatched}"
    );
    let stray = scratch.join("embedding.safetensors");
    write_lora(
        &stray,
        &[
            "emb_params",
            "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha",
        ],
    );
    let message = refusal(&stray);
    assert!(message.contains("`emb_params`"), "{message}");
}

#[test]
fn saved_settings_name_the_loras_by_a1111_hash_and_strength() {
    let case = case("two");
    let models = load(&paths_with(&case, case_loras(&case)));
    let mut cache = EmbeddingCache::default();
    let request = Request {
        steps: 1,
        ..case_request(&case)
    };
    let generation = generate(&models, &request, &mut cache, &mut |_| {}, &mut |_| {
        Flow::Continue
    })
    .expect("runs");
    let hashes = &cases_file()["addnet_hashes"];
    let ran = &generation.request.loras;
    assert_eq!(ran.len(), 2);
    for lora in ran {
        let file = lora
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(lora.addnet_hash.as_deref(), hashes[file].as_str(), "{file}");
    }
    let short = |file: &str| text(&hashes[file])[..12].to_string();
    let expected = format!(
        "Lora hashes: \"kohya: {}, peft: {}\", Lora weights: \"kohya: 0.8, peft: -0.5\"",
        short("kohya.safetensors"),
        short("peft.safetensors")
    );
    let settings = minus::output::parameters_text(&generation.request, "sd15");
    assert!(settings.contains(&expected), "{settings}");
}

fn minus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minus"))
}

#[test]
fn the_command_line_takes_loras_with_negative_weights() {
    let scratch = temp_dir("lora-cli");
    let out = scratch.join("lora.png");
    let run = |extra: &[&str]| {
        minus()
            .args([
                "generate", "--device", "cpu", "--steps", "1", "--width", "64",
            ])
            .args(["--height", "64", "--model"])
            .arg(fixtures().join("models/sd15"))
            .arg("--lora")
            .arg(lora_dir().join("kohya.safetensors"))
            .args(extra)
            .arg("--output")
            .arg(&out)
            .output()
            .expect("minus runs")
    };
    let ok = run(&["--lora", "peft.safetensors", "--lora-weights", "-0.5,0.25"]);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    // The second file is not there: the run fails naming it, after the flags parsed.
    assert!(stderr.contains("peft.safetensors"), "{stderr}");
    let ok = run(&["--lora-weights", "-0.5"]);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(stderr.contains("LoRA kohya ("), "{stderr}");
    let request = minus::output::read_request(&std::fs::read(&out).expect("written"))
        .expect("settings embedded");
    assert_eq!(request.loras[0].strength, -0.5);
    let mismatch = run(&["--lora-weights", "0.5,1"]);
    let stderr = String::from_utf8_lossy(&mismatch.stderr);
    assert_eq!(mismatch.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--lora-weights has 2 values for 1 --lora files"),
        "{stderr}"
    );
}
