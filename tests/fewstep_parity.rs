//! The few-step samplers (TCD and LCM) against diffusers' `TCDScheduler` and
//! `LCMScheduler` from SD 1.5's config (made by `tests/tools/make_fewstep_cases.py`):
//! guidance on, a positive and a negative image, two images per run; the timesteps and
//! the latents after every step, then the final images.

mod common;

use candle_core::{Device, IndexOp};
use common::{adapter_file, assert_close, assert_image_matches, fixtures, load_models};
use minus::pipeline::conditioning::EmbeddingCache;
use minus::pipeline::{Flow, ImagePrompt, Request, generate};
use serde_json::Value;

/// Latents after each step must agree to this relative error (as in the reference parity).
const LATENTS_TOLERANCE: f64 = 1e-4;

/// The settings of case `name` in the cases file the generator wrote.
fn case(name: &str) -> (Value, Value) {
    let path = fixtures().join("fewstep/cases.json");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(path).expect("cases.json")).expect("cases parse");
    let case = cases["cases"]
        .as_array()
        .expect("case list")
        .iter()
        .find(|case| case["name"] == name)
        .unwrap_or_else(|| panic!("no case {name} in cases.json"))
        .clone();
    (cases["common"].clone(), case)
}

/// The request of a case: the image prompts on both sides at the adapter's one scale.
fn request(common: &Value, case: &Value) -> Request {
    let image = |key: &str| {
        let file = common[key].as_str().expect("image name");
        vec![ImagePrompt::new(fixtures().join("images").join(file))]
    };
    let number = |value: &Value| value.as_f64().expect("number");
    let count = |value: &Value| value.as_u64().expect("count") as usize;
    let weight = number(&case["ip_weight"]);
    let sampler = serde_json::from_value(case["sampler"].clone()).expect("sampler name");
    Request {
        prompt: common["prompt"].as_str().expect("prompt").to_string(),
        images: image("image"),
        negative_images: image("negative_image"),
        ip_weight: weight,
        negative_ip_weight: weight,
        sampler,
        eta: case.get("eta").map_or(0.3, number),
        steps: count(&common["steps"]),
        cfg: number(&case["cfg"]),
        seed: case["seed"].as_u64().expect("seed"),
        width: count(&common["width"]),
        height: count(&common["height"]),
        batch: count(&common["batch"]),
        ..Request::default()
    }
}

/// Runs case `name` and checks its timesteps, its latents after every step and its images.
fn check(name: &str) {
    let (common, case) = case(name);
    let request = request(&common, &case);
    assert!(
        request.cfg > 1.0 && request.batch == 2,
        "{name}: guidance on, batch 2"
    );
    let models = load_models(Some(adapter_file(
        case["adapter"].as_str().expect("adapter"),
    )));
    let path = fixtures().join(format!("fewstep/{name}.safetensors"));
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("case tensors");
    let latents = &tensors["latents_steps"];
    let timesteps: Vec<i64> = tensors["timesteps"].to_vec1().expect("timesteps");
    let mut steps_seen = 0;
    let mut worst: f64 = 0.0;
    let generation = generate(
        &models,
        &request,
        &mut EmbeddingCache::default(),
        &mut |_| {},
        &mut |report| {
            let i = report.step;
            assert_eq!(
                report.timestep, timesteps[i] as f64,
                "{name}: step {i} timestep"
            );
            let expected = latents.i(i).expect("step latents");
            let tag = format!("{name}: step {i} latents");
            let error = assert_close(&tag, report.latents, &expected, LATENTS_TOLERANCE);
            worst = worst.max(error);
            steps_seen += 1;
            Flow::Continue
        },
    )
    .expect("generation runs");
    assert_eq!(steps_seen, timesteps.len(), "{name}: steps run");
    println!("{name}: worst step latents relative error {worst:.2e}");
    assert_eq!(generation.images.len(), 2);
    for (i, image) in generation.images.iter().enumerate() {
        let expected = fixtures().join(format!("fewstep/{name}_{i}.png"));
        assert_image_matches(&format!("{name} item {i}"), image, &expected);
    }
}

#[test]
fn tcd_eta_0_3_with_a_negative_image_matches_diffusers() {
    check("tcd_eta03");
}

#[test]
fn tcd_eta_0_8_plus_adapter_matches_diffusers() {
    check("tcd_eta08_plus");
}

#[test]
fn lcm_with_a_negative_image_matches_diffusers() {
    check("lcm");
}

/// The claim behind the CLI note and the pane's mark: at CFG 1 the negative image
/// changes nothing; at CFG 2, TCD's 4 steps keep it working.
#[test]
fn the_negative_image_acts_at_cfg_2_and_not_at_cfg_1() {
    let models = load_models(Some(adapter_file("base")));
    let (common, case) = case("tcd_eta03");
    let with_negative = request(&common, &case);
    let without = Request {
        negative_images: Vec::new(),
        ..with_negative.clone()
    };
    let difference = |cfg: f64| {
        let run = |request: &Request| {
            common::generate_images(
                &models,
                &Request {
                    cfg,
                    ..request.clone()
                },
            )
        };
        let (a, b) = (run(&with_negative), run(&without));
        let total: f64 = a
            .iter()
            .zip(&b)
            .flat_map(|(a, b)| a.as_raw().iter().zip(b.as_raw()))
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum();
        total / (a.len() * a[0].as_raw().len()) as f64
    };
    let (off, on) = (difference(1.0), difference(2.0));
    println!("mean |Δ| from the negative image: CFG 1 {off:.4}/255, CFG 2 {on:.4}/255");
    assert_eq!(off, 0.0, "the negative image changed the picture at CFG 1");
    assert!(on > 0.5, "the negative image did little at CFG 2: {on}/255");
}
