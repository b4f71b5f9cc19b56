//! End-to-end runs against stock diffusers outputs for settings the public reference
//! cases do not cover: batch 2, sizes that are not multiples of 64, Karras sigmas, and
//! Euler a with the Plus adapter (made by `tests/tools/make_extra_cases.py`).

mod common;

use common::{adapter_file, assert_image_within, fixtures, generate_images, load_models};
use minus::pipeline::conditioning::{EmbeddingCache, prepare};
use minus::pipeline::{Flow, ImagePrompt, Request, generate};
use minus::schedulers::SamplerKind;

fn check(name: &str, adapter: &str, request: Request) {
    let models = load_models(Some(adapter_file(adapter)));
    let images = generate_images(&models, &request);
    assert_eq!(images.len(), request.batch);
    for (i, image) in images.iter().enumerate() {
        let expected = fixtures().join(format!("extra/{name}_{i}.png"));
        // Measured: mean |Δ| 0.0002/255 at worst, largest |Δ| one level (a value on a
        // rounding boundary), as in the reference cases.
        assert_image_within(&format!("{name} item {i}"), image, &expected, 0.003, 1.0);
    }
}

fn house() -> Vec<ImagePrompt> {
    vec![ImagePrompt::new(fixtures().join("images/house.png"))]
}

#[test]
fn dpmpp_2m_karras_batch_of_two_at_80x112() {
    let request = Request {
        prompt: "a snowy house".to_string(),
        images: house(),
        ip_weight: 0.6,
        negative_ip_weight: 0.6,
        sampler: SamplerKind::DpmPp2M,
        karras: true,
        steps: 12,
        cfg: 6.5,
        seed: 11,
        width: 80,
        height: 112,
        batch: 2,
        ..Request::default()
    };
    check("dpmk", "base", request);
}

#[test]
fn euler_a_plus_batch_of_two_at_136x64() {
    let request = Request {
        images: house(),
        ip_weight: 0.9,
        negative_ip_weight: 0.9,
        sampler: SamplerKind::EulerAncestral,
        steps: 7,
        cfg: 6.5,
        seed: 123,
        width: 136,
        height: 64,
        batch: 2,
        ..Request::default()
    };
    check("eulera", "plus", request);
}

#[test]
fn rerunning_with_the_same_prompts_skips_the_encoders() {
    let models = load_models(Some(adapter_file("base")));
    let request = Request {
        prompt: "a house in winter".to_string(),
        images: house(),
        negative_images: vec![ImagePrompt::new(fixtures().join("images/lawn.png"))],
        steps: 2,
        width: 64,
        height: 64,
        ..Request::default()
    };
    let mut cache = EmbeddingCache::default();
    let first = generate(&models, &request, &mut cache, &mut |_| {}, &mut |_| {
        Flow::Continue
    })
    .expect("first run");
    assert_eq!(cache.encoder_runs(), 2);
    // The prompt and the (empty) negative prompt.
    assert_eq!(cache.text_encoder_runs(), 2);
    let second = generate(&models, &request, &mut cache, &mut |_| {}, &mut |_| {
        Flow::Continue
    })
    .expect("second run");
    assert_eq!(
        cache.encoder_runs(),
        2,
        "the encoder ran again for cached images"
    );
    assert_eq!(
        cache.text_encoder_runs(),
        2,
        "the text encoder ran again for cached prompts"
    );
    assert_eq!(first.images, second.images);
    assert!(first.request.images[0].sha256.is_some());
}

#[test]
fn noised_images_are_encoded_once_per_seed_and_amount() {
    let models = load_models(Some(adapter_file("base")));
    let mut request = Request {
        images: house(),
        negative_images: vec![ImagePrompt::new(fixtures().join("images/lawn.png"))],
        noise: 0.4,
        seed: 3,
        steps: 1,
        width: 64,
        height: 64,
        ..Request::default()
    };
    let mut cache = EmbeddingCache::default();
    let run = |request: &Request, cache: &mut EmbeddingCache| {
        let result = generate(&models, request, cache, &mut |_| {}, &mut |_| {
            Flow::Continue
        })
        .expect("run");
        (result.images, cache.encoder_runs())
    };
    // The house, the lawn, and the noised lawn (the negative side is noised).
    let (first, runs) = run(&request, &mut cache);
    assert_eq!(runs, 3);
    let (again, runs) = run(&request, &mut cache);
    assert_eq!(
        runs, 3,
        "the noised lawn was encoded again for the same seed"
    );
    assert_eq!(first, again);
    request.seed = 4;
    assert_eq!(run(&request, &mut cache).1, 4, "a new seed is new noise");
    request.noise = 0.5;
    assert_eq!(run(&request, &mut cache).1, 5, "a new amount is new noise");
}

#[test]
fn the_prompt_cache_forgets_the_least_recently_used_prompts() {
    let models = load_models(None);
    let mut cache = EmbeddingCache::default();
    let mut encode = |prompt: &str| {
        let mut request = Request {
            prompt: prompt.to_string(),
            ..Request::default()
        };
        prepare(&models, &mut request, &mut cache, &mut |_| {}).expect("prompts encode");
        cache.text_encoder_runs()
    };
    // 64 prompts and the empty negative prompt (used every time): one more than are kept.
    for i in 0..64 {
        encode(&format!("prompt {i}"));
    }
    assert_eq!(encode("prompt 63"), 65, "a recent prompt was encoded again");
    assert_eq!(
        encode("prompt 0"),
        66,
        "the least recently used prompt was kept"
    );
    // Evicting "prompt 1" made room for "prompt 0"; the negative prompt stays.
    assert_eq!(encode("prompt 2"), 66);
    assert_eq!(encode("prompt 1"), 67);
}

/// A switched-off image stays in the request (and so in saved settings) but is never
/// read: the picture is the one made without it, even when its file is gone.
#[test]
fn a_switched_off_image_changes_nothing() {
    let models = load_models(Some(adapter_file("base")));
    let base = Request {
        images: vec![ImagePrompt::new(fixtures().join("images/house.png"))],
        steps: 2,
        width: 64,
        height: 64,
        seed: 3,
        ..Request::default()
    };
    let with_off = Request {
        negative_images: vec![ImagePrompt {
            enabled: false,
            ..ImagePrompt::new(fixtures().join("images/no-such-file.png"))
        }],
        ..base.clone()
    };
    assert_eq!(
        generate_images(&models, &with_off),
        generate_images(&models, &base)
    );
}
