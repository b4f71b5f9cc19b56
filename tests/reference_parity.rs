//! Parity with diffusers on every reference case (tiny random-weight models):
//! every intermediate tensor, step by step, and the final image.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::*;
use minus::pipeline::conditioning::{Conditioning, EmbeddingCache, encode_pixels, prepare};
use minus::pipeline::generate::{denoise, generate, to_images};
use minus::pipeline::preprocess::{FitMode, clip_pixel_values, load_rgb};
use minus::pipeline::{Flow, ImagePrompt, Models, Request, Window};
use minus::rng::TorchRng;
use minus::schedulers::SamplerKind;
use serde_json::Value;

/// Intermediate tensors must agree to this relative error. Measured on the CPU in f32
/// over the six cases: text embeddings 3.2e-7, image features 4.7e-7, IP tokens 5.8e-7,
/// every step's UNet input, output and latents 4.39e-6 (2.95e-6 before 3×3 convolutions
/// of 16×16 images and more became Winograd's, `src/models/cpu/winograd.rs`).
const TENSOR_TOLERANCE: f64 = 5e-6;
/// The decoded images' relative error: measured 3.09e-6 to 5.07e-6 (3.20e-6 at worst
/// before Winograd: the VAE's larger images take it in most of their convolutions).
const DECODED_TOLERANCE: f64 = 8e-6;
/// The 8-bit pictures' mean |Δ| limit, in 1/255: measured 0.0009 at worst (every case's
/// largest |Δ| is one level, the limit [`IMAGE_MAX_LIMIT`]).
const IMAGE_MEAN_LIMIT: f64 = 0.003;
/// The 8-bit pictures' largest |Δ|, in 1/255: a value on a rounding boundary.
const IMAGE_MAX_LIMIT: f64 = 1.0;

fn request_from_case(case: &Value) -> Request {
    let images_dir = fixtures().join("images");
    let image = |key: &str| -> Vec<ImagePrompt> {
        case[key]
            .as_str()
            .map(|file| vec![ImagePrompt::new(images_dir.join(file))])
            .unwrap_or_default()
    };
    let weight = case["weight"].as_f64().unwrap_or(1.0);
    let window = Window {
        start: case["start"].as_f64().unwrap_or(0.0),
        end: case["end"].as_f64().unwrap_or(1.0),
    };
    let sampler = match case["scheduler"].as_str().unwrap() {
        "ddim" => SamplerKind::Ddim,
        "euler_a" => SamplerKind::EulerAncestral,
        "dpmpp_2m" => SamplerKind::DpmPp2M,
        other => panic!("unknown scheduler {other}"),
    };
    Request {
        prompt: case["prompt"].as_str().unwrap_or("").to_string(),
        negative_prompt: case["negative_prompt"].as_str().unwrap_or("").to_string(),
        images: image("image"),
        negative_images: image("negative_image"),
        ip_weight: weight,
        negative_ip_weight: case["negative_weight"].as_f64().unwrap_or(weight),
        ip_window: window,
        negative_ip_window: window,
        sampler,
        karras: false,
        steps: case["steps"].as_u64().unwrap() as usize,
        cfg: case["cfg"].as_f64().unwrap(),
        seed: case["seed"].as_u64().unwrap(),
        width: case["width"].as_u64().unwrap() as usize,
        height: case["height"].as_u64().unwrap() as usize,
        batch: case["num_images_per_prompt"].as_u64().unwrap_or(1) as usize,
        fit: FitMode::Crop,
        // The field's other methods (#13) stay at the seed's method.
        ..Request::default()
    }
}

/// Preprocessing must match the stored `pixel_values` (exactly for PNG, within
/// one 8-bit level for JPEG, whose decoders may differ).
fn check_pixel_values(file: &str, expected: &Tensor) {
    let rgb = load_rgb(&fixtures().join("images").join(file)).unwrap();
    let ours = Tensor::from_vec(
        clip_pixel_values(&rgb, 224, FitMode::Crop),
        (1, 3, 224, 224),
        &Device::Cpu,
    )
    .unwrap();
    let max = max_abs_diff(&ours, expected);
    // One 8-bit level after normalisation is at most 1/255/min(std) ≈ 0.01501.
    let one_level = 1.0001 / 255.0 / 0.261_302_58;
    let tolerance = if file.ends_with(".jpg") {
        one_level
    } else {
        1e-6
    };
    println!("pixel_values {file}: max |Δ| {max:.2e}");
    assert!(
        max <= tolerance,
        "{file}: pixel_values max |Δ| {max:.3e} > {tolerance:.0e}"
    );
}

/// The `case.json` of a reference case.
fn read_case(name: &str) -> Value {
    let case_path = case_dir(name).join("case.json");
    serde_json::from_str(&std::fs::read_to_string(case_path).unwrap()).unwrap()
}

fn run_case(name: &str) {
    let json = read_case(name);
    let case = &json["case"];
    let adapter = case["adapter"].as_str();
    let models = load_models(adapter.map(adapter_file));
    let reference = case_tensors(name);
    let get = |key: &str| {
        reference
            .get(key)
            .unwrap_or_else(|| panic!("reference has no {key}"))
    };
    let mut request = request_from_case(case);

    // Text.
    for (key, text) in [
        ("token_ids_cond", &request.prompt),
        ("token_ids_uncond", &request.negative_prompt),
    ] {
        let ids: Vec<i64> = get(key).flatten_all().unwrap().to_vec1().unwrap();
        let ours: Vec<i64> = models
            .tokenizer
            .encode(text)
            .iter()
            .map(|&t| t as i64)
            .collect();
        assert_eq!(ours, ids, "{key}");
    }
    let mut cache = EmbeddingCache::default();
    let conditioning = prepare(&models, &mut request, &mut cache, &mut |_| {}).unwrap();
    let mut errors = vec![
        (
            "text_embeds_cond",
            assert_close(
                "text_embeds_cond",
                &conditioning.text_cond,
                get("text_embeds_cond"),
                TENSOR_TOLERANCE,
            ),
        ),
        (
            "text_embeds_uncond",
            assert_close(
                "text_embeds_uncond",
                &conditioning.text_uncond,
                get("text_embeds_uncond"),
                TENSOR_TOLERANCE,
            ),
        ),
    ];

    // Images: preprocessing, encoder (fed the reference pixels, to isolate it), projection.
    // A JPEG may decode one level differently from libjpeg; its side's tokens are then
    // checked from the reference pixels, and our own decode is checked end to end below.
    let mut loop_conditioning = Conditioning {
        text_uncond: conditioning.text_uncond.clone(),
        text_cond: conditioning.text_cond.clone(),
        pooled: None,
        ip_tokens: conditioning.ip_tokens.clone(),
    };
    if let Some(image_models) = &models.image {
        let (uncond, cond) = conditioning.ip_tokens.clone().expect("ip tokens");
        let mut sides = [
            ("uncond", "neg", "negative_image", uncond),
            ("cond", "pos", "image", cond),
        ];
        for (half, side, key, tokens) in sides.iter_mut() {
            let token_key = format!("ip_tokens_{half}");
            let expected_tokens = get(&token_key).i((.., 0)).unwrap();
            if let Some(file) = case[*key].as_str() {
                let pixels = get(&format!("pixel_values_{side}"));
                check_pixel_values(file, pixels);
                let features = encode_pixels(image_models, pixels).unwrap();
                let feature_key = if adapter == Some("plus") {
                    format!("clip_hidden_{side}")
                } else {
                    format!("clip_image_embeds_{side}")
                };
                errors.push((
                    "image features",
                    assert_close(&feature_key, &features, get(&feature_key), TENSOR_TOLERANCE),
                ));
                if file.ends_with(".jpg") {
                    let own = relative_error(tokens, &expected_tokens);
                    println!("{name}: {token_key} from our JPEG decode: relative error {own:.2e}");
                    // Measured 2.0e-4 (`gray.jpg`): a JPEG decoder's rounding, not ours.
                    assert!(own < 3e-4, "{token_key} from our JPEG decode: {own:.2e}");
                    *tokens = image_models.adapter.project(&features).unwrap();
                }
            }
            errors.push((
                "ip tokens",
                assert_close(&token_key, tokens, &expected_tokens, TENSOR_TOLERANCE),
            ));
        }
        let [(.., uncond), (.., cond)] = sides;
        loop_conditioning.ip_tokens = Some((uncond, cond));
    } else {
        assert!(conditioning.ip_tokens.is_none());
    }

    // Noise.
    let noise = get("noise");
    let ours = TorchRng::new(request.seed)
        .randn_tensor(noise.dims(), &Device::Cpu)
        .unwrap();
    // Measured 3.7e-8: torch's generator in f64, rounded to f32 on both sides.
    errors.push(("noise", assert_close("noise", &ours, noise, 1e-7)));

    // The denoising loop, step by step.
    let (unet_in, unet_out, latents) = (
        get("unet_in_steps"),
        get("unet_out_steps"),
        get("latents_steps"),
    );
    let scales = get("ip_scales_steps");
    let mut worst_step_error: f64 = 0.0;
    let final_latents = denoise(&models, &request, &loop_conditioning, &mut |report| {
        let i = report.step;
        let tag = |what: &str| format!("step {i} {what}");
        worst_step_error = worst_step_error
            .max(assert_close(
                &tag("unet input"),
                report.unet_input,
                &unet_in.get(i).unwrap(),
                TENSOR_TOLERANCE,
            ))
            .max(assert_close(
                &tag("unet output"),
                report.unet_output,
                &unet_out.get(i).unwrap(),
                TENSOR_TOLERANCE,
            ))
            .max(assert_close(
                &tag("latents"),
                report.latents,
                &latents.get(i).unwrap(),
                TENSOR_TOLERANCE,
            ));
        let expected: Vec<f32> = scales.get(i).unwrap().to_vec1().unwrap();
        let (u, c) = report.ip_scales;
        assert!(
            (u as f32 - expected[0]).abs() < 1e-6 && (c as f32 - expected[1]).abs() < 1e-6,
            "{}: scales",
            tag("ip")
        );
        Flow::Continue
    })
    .unwrap();
    errors.push(("worst step tensor", worst_step_error));

    // Decoding and the final 8-bit image.
    let decoded = models.vae.decode(&final_latents).unwrap();
    errors.push((
        "decoded",
        assert_close("decoded", &decoded, get("decoded"), DECODED_TOLERANCE),
    ));
    for (what, error) in &errors {
        println!("{name}: {what}: relative error {error:.2e}");
    }
    let expected = case_dir(name).join("out.png");
    let image = &to_images(&decoded).unwrap()[0];
    assert_image_within(name, image, &expected, IMAGE_MEAN_LIMIT, IMAGE_MAX_LIMIT);

    // The whole pipeline as users run it, from the image files.
    let generation = generate(
        &models,
        &request_from_case(case),
        &mut cache,
        &mut |_| {},
        &mut |_| Flow::Continue,
    )
    .unwrap();
    assert_image_within(
        &format!("{name} end to end"),
        &generation.images[0],
        &expected,
        IMAGE_MEAN_LIMIT,
        IMAGE_MAX_LIMIT,
    );
}

#[test]
fn base_posneg_ddim() {
    run_case("base_posneg_ddim");
}

#[test]
fn base_pos_ddim() {
    run_case("base_pos_ddim");
}

#[test]
fn plus_pos_euler_a() {
    run_case("plus_pos_euler_a");
}

#[test]
fn base_neg_dpmpp() {
    run_case("base_neg_dpmpp");
}

#[test]
fn plus_window_weights_ddim() {
    run_case("plus_window_weights_ddim");
}

#[test]
fn text_only_ddim() {
    run_case("text_only_ddim");
}

/// f16 is what GPUs run by default. On the CPU this checks that every operation
/// accepts it and that rounding leaves the same picture. (candle's CPU backend has
/// no bf16 matrix multiply, so bf16 can only be checked on a GPU.)
#[test]
fn plus_window_weights_ddim_in_f16() {
    let name = "plus_window_weights_ddim";
    let json = read_case(name);
    let case = &json["case"];
    let paths = model_paths(case["adapter"].as_str().map(adapter_file));
    let models = Models::load(&paths, &Device::Cpu, DType::F16).expect("models load");
    let image = generate_images(&models, &request_from_case(case)).remove(0);
    let mean = mean_abs_difference(name, &image, &case_dir(name).join("out.png"));
    println!("{name} in f16: mean |Δ| {mean:.3}/255");
    // Measured 0.101/255.
    assert!(mean <= 0.12, "f16: mean |Δ| {mean}/255");
}
