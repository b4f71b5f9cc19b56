//! SDXL parity with diffusers 0.42.1 on tiny random-weight models
//! (`tests/tools/make_sdxl_cases.py`): both tokenizers, both text encoders, the pooled
//! embedding, image features and tokens, every denoising step, the VAE and the final
//! pictures.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::*;
use minus::models::family::ModelFamily;
use minus::pipeline::conditioning::{Conditioning, EmbeddingCache, encode_pixels, prepare};
use minus::pipeline::generate::{denoise, to_images};
use minus::pipeline::preprocess::FitMode;
use minus::pipeline::{
    Combine, EmbedsScaling, Flow, ImagePrompt, MaskFile, Models, Request, WeightType, Window,
};
use minus::rng::TorchRng;
use minus::schedulers::SamplerKind;
use minus::weights::ModelPaths;
use serde_json::Value;

/// Relative error allowed on every intermediate tensor. Measured on the CPU in f32 over
/// the ten cases: text 4.3e-7, image features and tokens 9.4e-7, every step's UNet
/// input, output and latents 1.9e-6, the decoded images 2.7e-6 (1.9e-6 before the VAE's
/// larger convolutions became Winograd's).
const TENSOR_TOLERANCE: f64 = 5e-6;
/// The 8-bit pictures' mean |Δ| limit, in 1/255: measured 0.0005 at worst (the issue
/// asks for 0.5).
const IMAGE_MEAN_LIMIT: f64 = 0.003;
/// The 8-bit pictures' largest |Δ|, in 1/255: a value on a rounding boundary (the
/// issue asks for 4).
const IMAGE_MAX_LIMIT: f64 = 1.0;
/// An f16 run's mean |Δ| from the f32 reference picture, in 1/255: measured 0.072.
const F16_IMAGE_MEAN_LIMIT: f64 = 0.15;

fn sdxl_root() -> PathBuf {
    fixtures().join("sdxl")
}

/// The tiny SDXL folder, with the case's adapter (`base`, `plus`) and its encoder.
fn sdxl_paths(adapter: Option<&str>) -> ModelPaths {
    let adapters = sdxl_adapters();
    let file = |kind: &str| match kind {
        "plus" => adapters.join("ip-adapter-plus_sdxl_vit-h.safetensors"),
        _ => adapters.join("ip-adapter_sdxl.safetensors"),
    };
    ModelPaths {
        model: sdxl_folder(),
        vae: None,
        ip_adapter: adapter.map(file),
        image_encoder: adapter.map(|_| adapters.join("image_encoder")),
        taesd: None,
        configs: None,
        loras: Vec::new(),
    }
}

fn read_case(name: &str) -> (Value, HashMap<String, Tensor>) {
    let dir = sdxl_root().join("cases").join(name);
    let json = std::fs::read_to_string(dir.join("case.json")).expect("case.json");
    let tensors = candle_core::safetensors::load(dir.join("tensors.safetensors"), &Device::Cpu)
        .expect("case tensors");
    (serde_json::from_str(&json).expect("case json"), tensors)
}

fn request_from_case(case: &Value) -> Request {
    let images_dir = fixtures().join("images");
    let image = |key: &str| -> Vec<ImagePrompt> {
        case[key]
            .as_str()
            .map(|file| vec![ImagePrompt::new(images_dir.join(file))])
            .unwrap_or_default()
    };
    let weight = case["weight"].as_f64().unwrap_or(1.0);
    let weight_type = match case["weight_type"].as_str() {
        None => WeightType::Linear,
        Some("style transfer") => WeightType::StyleTransfer,
        Some("composition") => WeightType::Composition,
        Some(other) => panic!("unknown weight type {other}"),
    };
    let sampler = match case["scheduler"].as_str() {
        Some("euler") => SamplerKind::Euler,
        Some("ddim") => SamplerKind::Ddim,
        other => panic!("unknown scheduler {other:?}"),
    };
    let size = |key: &str| case[key].as_u64().expect("size") as usize;
    Request {
        prompt: case["prompt"].as_str().unwrap_or("").to_string(),
        // `None` (diffusers' force-zeros path) is Minus's empty field.
        negative_prompt: case["negative_prompt"].as_str().unwrap_or("").to_string(),
        images: image("image"),
        negative_images: image("negative_image"),
        ip_weight: weight,
        negative_ip_weight: weight,
        ip_window: Window::default(),
        negative_ip_window: Window::default(),
        weight_type,
        negative_weight_type: weight_type,
        sampler,
        karras: false,
        steps: size("steps"),
        cfg: case["cfg"].as_f64().expect("cfg"),
        seed: case["seed"].as_u64().expect("seed"),
        width: size("width"),
        height: size("height"),
        batch: case["num_images_per_prompt"].as_u64().unwrap_or(1) as usize,
        fit: FitMode::Crop,
        ..Request::default()
    }
}

/// Both tokenizers' ids, as diffusers fed them, for each prompt it encoded.
fn check_token_ids(models: &Models, request: &Request, reference: &HashMap<String, Tensor>) {
    let pad = models.tokenizer.token_id("!").expect("`!` token");
    for (side, text) in [
        ("cond", &request.prompt),
        ("uncond", &request.negative_prompt),
    ] {
        for (k, ids) in [
            (1, models.tokenizer.encode(text)),
            (2, models.tokenizer.encode_padded(text, pad)),
        ] {
            let Some(expected) = reference.get(&format!("token_ids_{k}_{side}")) else {
                continue;
            };
            let expected: Vec<i64> = expected.flatten_all().unwrap().to_vec1().unwrap();
            let ours: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
            assert_eq!(ours, expected, "token_ids_{k}_{side}");
        }
    }
}

/// Text and pooled embeddings of both halves; returns the worst relative error.
fn check_text(conditioning: &Conditioning, get: &dyn Fn(&str) -> Tensor) -> f64 {
    let (pooled_uncond, pooled_cond) = conditioning.pooled.clone().expect("pooled embeddings");
    [
        ("prompt_embeds_cond", &conditioning.text_cond),
        ("prompt_embeds_uncond", &conditioning.text_uncond),
        ("pooled_prompt_embeds_cond", &pooled_cond),
        ("pooled_prompt_embeds_uncond", &pooled_uncond),
    ]
    .into_iter()
    .map(|(key, ours)| assert_close(key, ours, &get(key), TENSOR_TOLERANCE))
    .fold(0.0, f64::max)
}

/// The encoder on diffusers' own pixel values, and both halves' image tokens; returns
/// the worst relative error.
fn check_images(
    models: &Models,
    case: &Value,
    conditioning: &Conditioning,
    get: &dyn Fn(&str) -> Tensor,
) -> f64 {
    let Some(image_models) = &models.image else {
        assert!(conditioning.ip_tokens.is_none());
        return 0.0;
    };
    let pixels = candle_core::safetensors::load(
        sdxl_root().join("cases/pixel_values.safetensors"),
        &Device::Cpu,
    )
    .expect("pixel values");
    let feature = if case["adapter"] == "plus" {
        "clip_hidden"
    } else {
        "clip_image_embeds"
    };
    let mut worst: f64 = 0.0;
    for (side, key) in [("neg", "negative_image"), ("pos", "image")] {
        if let Some(file) = case[key].as_str() {
            let features = encode_pixels(image_models, &pixels[file]).unwrap();
            let name = format!("{feature}_{side}");
            worst = worst.max(assert_close(
                &name,
                &features,
                &get(&name),
                TENSOR_TOLERANCE,
            ));
        }
    }
    let (uncond, cond) = conditioning.ip_tokens.clone().expect("ip tokens");
    for (half, ours) in [("uncond", uncond), ("cond", cond)] {
        let key = format!("ip_tokens_{half}");
        let expected = get(&key).i((0..1, 0)).unwrap();
        worst = worst.max(assert_close(&key, &ours, &expected, TENSOR_TOLERANCE));
    }
    worst
}

/// Every step's UNet input and output and the latents; returns the final latents and
/// the worst relative error.
fn check_steps(
    models: &Models,
    request: &Request,
    conditioning: &Conditioning,
    get: &dyn Fn(&str) -> Tensor,
) -> (Tensor, f64) {
    let (unet_in, unet_out, latents) = (
        get("unet_in_steps"),
        get("unet_out_steps"),
        get("latents_steps"),
    );
    let timesteps: Vec<f64> = get("timesteps")
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut worst: f64 = 0.0;
    let final_latents = denoise(models, request, conditioning, &mut |report| {
        let i = report.step;
        assert_eq!(report.timestep, timesteps[i], "step {i} timestep");
        for (what, ours, expected) in [
            ("unet input", report.unet_input, &unet_in),
            ("unet output", report.unet_output, &unet_out),
            ("latents", report.latents, &latents),
        ] {
            let name = format!("step {i} {what}");
            let expected = expected.get(i).unwrap();
            worst = worst.max(assert_close(&name, ours, &expected, TENSOR_TOLERANCE));
        }
        Flow::Continue
    })
    .unwrap();
    (final_latents, worst)
}

fn run_case(name: &str) {
    let (json, reference) = read_case(name);
    let case = &json["case"];
    let models = Models::load(
        &sdxl_paths(case["adapter"].as_str()),
        &Device::Cpu,
        DType::F32,
    )
    .expect("tiny SDXL loads");
    assert_eq!(models.family, ModelFamily::Sdxl);
    let get = |key: &str| -> Tensor {
        reference
            .get(key)
            .unwrap_or_else(|| panic!("{name}: reference has no {key}"))
            .clone()
    };
    let mut request = request_from_case(case);
    check_token_ids(&models, &request, &reference);
    let conditioning = prepare(
        &models,
        &mut request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
    )
    .expect("conditioning");
    let text_error = check_text(&conditioning, &get);
    let image_error = check_images(&models, case, &conditioning, &get);
    let noise = get("noise");
    let ours = TorchRng::new(request.seed)
        .randn_tensor(noise.dims(), &Device::Cpu)
        .unwrap();
    assert_close("noise", &ours, &noise, 1e-7);
    let (final_latents, step_error) = check_steps(&models, &request, &conditioning, &get);
    let decoded = models.vae.decode(&final_latents).unwrap();
    let decoded_error = assert_close("decoded", &decoded, &get("decoded"), TENSOR_TOLERANCE);
    println!(
        "{name}: relative errors: text {text_error:.2e}, images {image_error:.2e}, steps {step_error:.2e}, decoded {decoded_error:.2e}"
    );
    for (i, image) in to_images(&decoded).unwrap().iter().enumerate() {
        let file = if i == 0 {
            "out.png".to_string()
        } else {
            format!("out_{i}.png")
        };
        let expected = sdxl_root().join("cases").join(name).join(file);
        assert_image_within(name, image, &expected, IMAGE_MEAN_LIMIT, IMAGE_MAX_LIMIT);
    }
}

#[test]
fn text_only() {
    run_case("text_only");
}

#[test]
fn base_positive_and_negative_images() {
    run_case("base_posneg");
}

#[test]
fn plus_positive_and_negative_images() {
    run_case("plus_posneg");
}

#[test]
fn base_negative_image_only() {
    run_case("base_neg_only");
}

#[test]
fn plus_negative_image_only() {
    run_case("plus_neg_only");
}

#[test]
fn plus_batch_of_two() {
    run_case("plus_batch2");
}

#[test]
fn base_non_square() {
    run_case("base_nonsquare");
}

#[test]
fn an_empty_negative_prompt_conditions_on_zeros() {
    run_case("empty_negative_zeros");
}

#[test]
fn plus_style_transfer_weight_type() {
    run_case("plus_style_transfer");
}

#[test]
fn base_composition_weight_type() {
    run_case("base_composition");
}

/// An f16 run decodes with the VAE upcast to f32, as diffusers' SDXL pipeline does
/// (`force_upcast`), and stays near the f32 reference picture.
#[test]
fn an_f16_run_upcasts_the_vae_and_stays_near_the_reference() {
    let (json, _) = read_case("text_only");
    let models = Models::load(&sdxl_paths(None), &Device::Cpu, DType::F16).expect("f16 loads");
    assert_eq!(models.vae.dtype(), DType::F32);
    let request = request_from_case(&json["case"]);
    let images = generate_images(&models, &request);
    let expected = sdxl_root().join("cases/text_only/out.png");
    let mean = mean_abs_difference("f16 text_only", &images[0], &expected);
    println!("f16 text_only: image mean |Δ| {mean:.3}/255");
    assert!(mean <= F16_IMAGE_MEAN_LIMIT, "f16 mean |Δ| {mean}/255");
}

/// cubiq's methods and regional masks run on SDXL as on SD 1.5 (diffusers has no
/// reference for them): each makes a picture that differs from the seed's method's.
#[test]
fn methods_and_masks_change_an_sdxl_picture() {
    let (json, _) = read_case("plus_posneg");
    let models =
        Models::load(&sdxl_paths(Some("plus")), &Device::Cpu, DType::F32).expect("tiny SDXL loads");
    let base = request_from_case(&json["case"]);
    let plain = generate_images(&models, &base).remove(0);
    let images = fixtures().join("images");
    let mut masked = base.clone();
    masked.images[0].mask = Some(MaskFile::new(fixtures().join("masks/inputs/left.png")));
    let mut subtract = base.clone();
    subtract
        .images
        .push(ImagePrompt::new(images.join("sticker_rgba.png")));
    subtract.combine = Combine::Subtract;
    let variants = [
        (
            "noise",
            Request {
                noise: 0.35,
                ..base.clone()
            },
        ),
        (
            "k-v-c-penalty",
            Request {
                embeds_scaling: EmbedsScaling::KVCPenalty,
                ..base.clone()
            },
        ),
        (
            "strong style transfer",
            Request {
                weight_type: WeightType::StrongStyleTransfer,
                negative_weight_type: WeightType::StrongStyleTransfer,
                ..base.clone()
            },
        ),
        ("subtract", subtract),
        ("mask", masked),
    ];
    for (name, request) in variants {
        let image = generate_images(&models, &request).remove(0);
        let diffs: Vec<u32> = image
            .as_raw()
            .iter()
            .zip(plain.as_raw())
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .collect();
        let mean = f64::from(diffs.iter().sum::<u32>()) / diffs.len() as f64;
        println!("{name}: mean |Δ| from the seed's method {mean:.3}/255");
        assert!(mean > 0.05, "{name} made the seed's method's picture");
    }
}
