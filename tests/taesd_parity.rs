//! TAESD against diffusers' `AutoencoderTiny` on tiny random weights in the real layout
//! (made by tests/tools/make_taesd_fixture.py), and its place in the loaded models.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixtures, load_error, max_abs_diff, model_paths, temp_dir};
use image::RgbImage;
use minus::models::family::ModelFamily;
use minus::models::taesd::{TaesdConfig, TaesdDecoder};
use minus::pipeline::generate::to_images;
use minus::pipeline::preview::{PreviewKind, render, taesd_to_rgb};
use minus::pipeline::{Models, Request};
use minus::weights::ModelPaths;
use minus::weights::config::read_config;
use minus::weights::diffusers::load_component;

fn taesd_dir() -> std::path::PathBuf {
    fixtures().join("models/taesd")
}

fn reference() -> (Tensor, Tensor) {
    let tensors = candle_core::safetensors::load(
        fixtures().join("taesd_reference.safetensors"),
        &Device::Cpu,
    )
    .expect("reference tensors");
    (tensors["latents"].clone(), tensors["decoded"].clone())
}

fn load_taesd(dtype: DType) -> TaesdDecoder {
    let component = load_component(&taesd_dir(), dtype).expect("TAESD folder");
    let config: TaesdConfig = read_config(&component.config_path).expect("TAESD config");
    TaesdDecoder::load(component.weights.var_builder(dtype, &Device::Cpu), &config)
        .expect("TAESD loads")
}

/// Relative error allowed in f32, overall and at the worst value: measured 1.37e-6 and
/// 1.73e-6 (CPU); the limit sits just above.
const F32_TOLERANCE: f64 = 3e-6;

#[test]
fn decode_matches_diffusers_within_3e_6_relative() {
    let (latents, expected) = reference();
    let decoded = load_taesd(DType::F32).decode(&latents).expect("decode");
    let error = assert_close("TAESD decode", &decoded, &expected, F32_TOLERANCE);
    // Relative to the largest value too, so that no pixel is far off.
    let peak = expected.abs().unwrap().max_all().unwrap();
    let worst = max_abs_diff(&decoded, &expected) / f64::from(peak.to_scalar::<f32>().unwrap());
    println!("TAESD decode: relative error {error:.2e}, max |Δ| / max |x| {worst:.2e}");
    assert!(worst <= F32_TOLERANCE, "max |Δ| / max |x| = {worst:.2e}");
}

#[test]
fn the_preview_is_diffusers_picture_of_the_first_image() {
    let (latents, expected) = reference();
    let taesd = load_taesd(DType::F32);
    let preview = taesd_to_rgb(&taesd, &latents).expect("preview");
    let expected = to_images(&expected.narrow(0, 0, 1).unwrap()).expect("images");
    assert_eq!(preview.dimensions(), expected[0].dimensions());
    assert_eq!(preview.dimensions(), (80, 96), "8× the 10×12 latents");
    let worst = preview
        .as_raw()
        .iter()
        .zip(expected[0].as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    println!("TAESD preview: 8-bit max |Δ| {worst:?}/255");
    // Measured 0; one level allows a value that lands on a rounding boundary.
    assert!(worst <= Some(1), "8-bit preview off by {worst:?}/255");
    // Both kinds through the pipeline's entry point: TAESD when loaded, else the colour map.
    let (drawn, kind) = render_sd15(&latents, PreviewKind::Taesd, &taesd);
    assert_eq!((drawn.dimensions(), kind), ((80, 96), PreviewKind::Taesd));
    let (drawn, kind) = render_sd15(&latents, PreviewKind::LatentColours, &taesd);
    assert_eq!(
        (drawn.dimensions(), kind),
        ((10, 12), PreviewKind::LatentColours)
    );
}

#[test]
fn cpu_previews_of_large_pictures_are_decoded_from_averaged_latents() {
    let taesd = load_taesd(DType::F32);
    let latents = Tensor::randn(0f32, 1f32, (1, 4, 64, 64), &Device::Cpu).unwrap();
    let (drawn, kind) = render_sd15(&latents, PreviewKind::Taesd, &taesd);
    assert_eq!((drawn.dimensions(), kind), ((256, 256), PreviewKind::Taesd));
    let pooled = latents.avg_pool2d(2).unwrap();
    assert_eq!(drawn, taesd_to_rgb(&taesd, &pooled).expect("decode"));
}

#[test]
fn half_precision_stays_close_to_diffusers() {
    let (latents, expected) = reference();
    let decoded = load_taesd(DType::F16)
        .decode(&latents.to_dtype(DType::F16).unwrap())
        .expect("f16 decode");
    // Measured 3.23e-3 (f16 keeps 11 bits).
    let error = assert_close("TAESD f16 decode", &decoded, &expected, 4e-3);
    println!("TAESD f16 decode: relative error {error:.2e}");
}

#[test]
fn models_load_taesd_when_its_folder_is_there_and_fall_back_when_not() {
    let with = ModelPaths {
        taesd: Some(taesd_dir()),
        ..model_paths(None)
    };
    let models = Models::load(&with, &Device::Cpu, DType::F32).expect("models with TAESD");
    assert!(models.taesd.is_some());
    let scratch = temp_dir("taesd-missing");
    let missing = ModelPaths {
        taesd: Some(scratch.join("not-there")),
        ..model_paths(None)
    };
    let models = Models::load(&missing, &Device::Cpu, DType::F32).expect("models without");
    assert!(models.taesd.is_none());
    // A run with TAESD previews: each step's preview is TAESD's, at the image's size.
    let models = Models::load(&with, &Device::Cpu, DType::F32).expect("models with TAESD");
    let request = Request {
        steps: 2,
        width: 64,
        height: 48,
        ..Request::default()
    };
    let mut kinds = Vec::new();
    minus::pipeline::generate(
        &models,
        &request,
        &mut minus::pipeline::conditioning::EmbeddingCache::default(),
        &mut |_| {},
        &mut |report| {
            let (image, kind) = report.preview(PreviewKind::Taesd).expect("preview");
            kinds.push((image.dimensions(), kind));
            minus::pipeline::Flow::Continue
        },
    )
    .expect("generation");
    assert_eq!(kinds, vec![((64, 48), PreviewKind::Taesd); 2]);
}

#[test]
fn a_broken_taesd_is_an_error_naming_the_file() {
    let dir = temp_dir("taesd-broken");
    std::fs::copy(taesd_dir().join("config.json"), dir.join("config.json")).expect("config");
    let weights =
        std::fs::read(taesd_dir().join("diffusion_pytorch_model.safetensors")).expect("weights");
    std::fs::write(
        dir.join("diffusion_pytorch_model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .expect("truncated copy");
    let message = load_error(&ModelPaths {
        taesd: Some(dir.to_path_buf()),
        ..model_paths(None)
    });
    assert!(
        message.contains(
            &dir.join("diffusion_pytorch_model.safetensors")
                .display()
                .to_string()
        ),
        "{message}"
    );
}

/// An SD 1.5 preview of `latents` through the pipeline's entry point, with TAESD loaded.
fn render_sd15(
    latents: &Tensor,
    kind: PreviewKind,
    taesd: &TaesdDecoder,
) -> (RgbImage, PreviewKind) {
    render(latents, kind, Some(taesd), ModelFamily::Sd15).expect("render")
}
