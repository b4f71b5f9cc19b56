//! The field's other negative-image methods (cubiq's combine modes, weight types, embeds
//! scaling and noise) against diffusers plus an attention processor that follows
//! cubiq's formulas (made by `tests/tools/make_cubiq_cases.py`): the image tokens of
//! both halves and the final image, every option on the base and the Plus adapter.

mod common;

use candle_core::Tensor;
use common::{adapter_file, assert_image_within, fixtures, load_models, relative_error};
use image::RgbImage;
use minus::pipeline::conditioning::{EmbeddingCache, prepare};
use minus::pipeline::noise_image::noised_pixel_values;
use minus::pipeline::preprocess::{CLIP_MEAN, CLIP_STD, FitMode, clip_square, load_rgb};
use minus::pipeline::{Combine, EmbedsScaling, Flow, Models, Request, WeightType, generate};
use serde_json::{Value, json};

/// The cases file the generator wrote.
fn cases() -> Value {
    let path = fixtures().join("cubiq/cases.json");
    serde_json::from_slice(&std::fs::read(path).expect("cases.json")).expect("cases parse")
}

fn prompts(paths: &Value, weights: Option<&Value>) -> Value {
    let paths = paths.as_array().expect("image list");
    Value::Array(
        paths
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = fixtures().join("images").join(name.as_str().expect("name"));
                let weight = weights.and_then(|w| w[i].as_f64()).unwrap_or(1.0);
                json!({"path": path, "weight": weight})
            })
            .collect(),
    )
}

/// The request of one case: its method fields carry the same names as `Request`'s.
fn request(common: &Value, case: &Value) -> Request {
    let mut fields = json!({
        "prompt": common["prompt"], "steps": common["steps"], "cfg": common["cfg"],
        "width": common["width"], "height": common["height"], "seed": common["seed"],
        "images": prompts(&case["images"], case.get("image_weights")),
        "negative_images": prompts(&case["negative_images"], None),
    });
    for key in [
        "combine",
        "weight_type",
        "negative_weight_type",
        "embeds_scaling",
        "ip_weight",
        "negative_ip_weight",
        "noise",
    ] {
        if let Some(value) = case.get(key) {
            fields[key] = value.clone();
        }
    }
    serde_json::from_value(fields).expect("case request")
}

/// The first noised image as the encoder sees it, back in 8 bits.
fn noised_u8(request: &Request) -> Vec<u8> {
    let side = if request.negative_images.is_empty() {
        &request.images
    } else {
        &request.negative_images
    };
    let rgb = load_rgb(&side[0].path).expect("image");
    let square = clip_square(&rgb, 224, FitMode::Crop);
    let values = noised_pixel_values(&[square], request.noise, request.seed);
    let plane = 224 * 224;
    (0..plane)
        .flat_map(|i| (0..3).map(move |c| (c, i)))
        .map(|(c, i)| {
            let value = f64::from(values[0][c * plane + i]) * CLIP_STD[c] + CLIP_MEAN[c];
            (value * 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// The images of a run and its first UNet output (batch `[uncond, cond]`).
fn run(models: &Models, request: &Request, cache: &mut EmbeddingCache) -> (Vec<RgbImage>, Tensor) {
    let mut first = None;
    let images = generate(models, request, cache, &mut |_| {}, &mut |report| {
        if report.step == 0 {
            first = Some(report.unet_output.clone());
        }
        Flow::Continue
    })
    .expect("generation")
    .images;
    (images, first.expect("a first step"))
}

fn check_adapter(adapter: &str) {
    let all = cases();
    let models = load_models(Some(adapter_file(adapter)));
    for case in all["cases"].as_array().expect("cases") {
        let name = format!("{adapter}_{}", case["name"].as_str().expect("name"));
        let dir = fixtures().join("cubiq").join(&name);
        let request = request(&all["common"], case);
        if request.noise > 0.0 {
            let expected = image::open(dir.join("noised_0.png")).expect("noised png");
            let ours = noised_u8(&request);
            let off = ours
                .iter()
                .zip(expected.to_rgb8().as_raw())
                .filter(|(a, b)| a != b)
                .count();
            println!(
                "{name}: noised image, {off} of {} values differ",
                ours.len()
            );
            // One in 10,000. Far more move without the flips' two draws (nearly all of the
            // 150,528), without torchvision's fill mask (about 1,200), or when the reference
            // crops with transformers' torchvision image processor instead of PIL (about 300).
            assert!(
                off * 10_000 <= ours.len(),
                "{name}: {off} noised values differ"
            );
        }
        let expected = candle_core::safetensors::load(
            dir.join("tensors.safetensors"),
            &candle_core::Device::Cpu,
        )
        .expect("tensors");
        let mut cache = EmbeddingCache::default();
        let mut prepared = request.clone();
        let conditioning =
            prepare(&models, &mut prepared, &mut cache, &mut |_| {}).expect("prepare");
        let (uncond, cond) = conditioning.ip_tokens.expect("image tokens");
        // Measured: at most 6.3e-7, and 6.7e-6 where cubiq's noise is on (its warp is
        // float arithmetic on 224² pixels before the encoder).
        let token_limit = if request.noise > 0.0 { 1e-5 } else { 1e-6 };
        for (half, ours) in [("uncond", &uncond), ("cond", &cond)] {
            let reference = &expected[&format!("tokens_{half}")];
            let ours = ours.reshape(reference.shape()).expect("token shape");
            let error = relative_error(&ours, reference);
            println!("{name}: tokens {half} relative error {error:.2e}");
            assert!(
                error <= token_limit,
                "{name}: tokens {half} relative error {error:.2e}"
            );
        }
        let (images, first_output) = run(&models, &request, &mut cache);
        let error = relative_error(&first_output, &expected["unet_out_step0"]);
        println!("{name}: first UNet output relative error {error:.2e}");
        // Measured: at most 2.3e-6.
        assert!(
            error <= 5e-6,
            "{name}: first UNet output relative error {error:.2e}"
        );
        // Measured: mean at most 0.0013/255, max 1/255.
        assert_image_within(&name, &images[0], &dir.join("out.png"), 0.003, 1.0);
    }
}

#[test]
fn every_method_matches_the_reference_with_the_base_adapter() {
    check_adapter("base");
}

#[test]
fn every_method_matches_the_reference_with_the_plus_adapter() {
    check_adapter("plus");
}

/// Each option moves the first UNet output far beyond the tolerance above, so the
/// comparisons can tell a right formula from an ignored option.
#[test]
fn each_option_moves_the_unet_output_well_past_the_tolerance() {
    let all = cases();
    let models = load_models(Some(adapter_file("base")));
    let case = &all["cases"][0];
    let base = Request {
        combine: Default::default(),
        weight_type: Default::default(),
        negative_weight_type: Default::default(),
        embeds_scaling: Default::default(),
        ..request(&all["common"], case)
    };
    // Unequal image weights, so that `average` is not the weighted average `concat` takes.
    let mut base = base;
    base.images[0].weight = 0.5;
    let mut cache = EmbeddingCache::default();
    let (_, reference) = run(&models, &base, &mut cache);
    let mut variants: Vec<Request> = Vec::new();
    for combine in Combine::ALL.into_iter().skip(1) {
        variants.push(Request {
            combine,
            ..base.clone()
        });
    }
    for kind in WeightType::ALL.into_iter().skip(1) {
        variants.push(Request {
            weight_type: kind,
            ..base.clone()
        });
        variants.push(Request {
            negative_weight_type: kind,
            ..base.clone()
        });
    }
    for embeds_scaling in EmbedsScaling::ALL.into_iter().skip(1) {
        variants.push(Request {
            embeds_scaling,
            ..base.clone()
        });
    }
    variants.push(Request {
        noise: 0.4,
        ..base.clone()
    });
    for variant in &variants {
        let (_, output) = run(&models, variant, &mut cache);
        let change = relative_error(&output, &reference);
        println!(
            "{}: first UNet output moves by {change:.2e}",
            variant.method_text()
        );
        assert!(
            change > 1e-3,
            "{}: moves only {change:.2e}",
            variant.method_text()
        );
    }
}
