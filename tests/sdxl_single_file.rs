//! Single-file SDXL checkpoints (Stability's layout, as A1111 and ComfyUI save them):
//! the tiny SDXL folder written as one file (`tests/tools/make_sdxl_single_file.py`,
//! checked there against diffusers' own converter) makes the same picture as the
//! folder, and broken files get one line naming the file and the tensor.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixtures, load_error, sdxl_folder, sdxl_text_request, temp_dir};
use minus::models::clip_text::ClipTextConfig;
use minus::models::family::ModelFamily;
use minus::models::unet::UNetConfig;
use minus::models::vae::VaeConfig;
use minus::pipeline::conditioning::{EmbeddingCache, prepare};
use minus::pipeline::generate::denoise;
use minus::pipeline::{Flow, Models, Request};
use minus::weights::ModelPaths;
use minus::weights::config::read_config;

/// What the diffusers run of the `text_only` case decoded may differ from the single
/// file's by (the folder's own parity limit in `sdxl_parity.rs`).
const DIFFUSERS_TOLERANCE: f64 = 5e-6;

fn tiny_single_file() -> PathBuf {
    fixtures().join("sdxl/single_file/tiny_sdxl.safetensors")
}

fn paths(model: PathBuf, configs: Option<PathBuf>) -> ModelPaths {
    ModelPaths {
        model,
        configs,
        ..ModelPaths::default()
    }
}

/// The `text_only` SDXL case's request.
fn text_request() -> Request {
    sdxl_text_request("blurry, low quality")
}

/// The VAE's output for the request, before it is turned into 8-bit pixels.
fn decoded(paths: &ModelPaths) -> Tensor {
    let models = Models::load(paths, &Device::Cpu, DType::F32).expect("tiny SDXL loads");
    assert_eq!(models.family, ModelFamily::Sdxl);
    assert!(models.zero_empty_negative);
    let mut request = text_request();
    let mut cache = EmbeddingCache::default();
    let conditioning =
        prepare(&models, &mut request, &mut cache, &mut |_| {}).expect("conditioning");
    let latents =
        denoise(&models, &request, &conditioning, &mut |_| Flow::Continue).expect("denoising");
    models.vae.decode(&latents).expect("decoding")
}

#[test]
fn single_file_makes_the_folders_picture() {
    let folder = decoded(&paths(sdxl_folder(), None));
    let single = decoded(&paths(tiny_single_file(), Some(sdxl_folder())));
    let error = assert_close("single file vs folder", &single, &folder, 0.0);
    let reference = candle_core::safetensors::load(
        fixtures().join("sdxl/cases/text_only/tensors.safetensors"),
        &Device::Cpu,
    )
    .expect("text_only reference");
    let diffusers = reference.get("decoded").expect("decoded tensor");
    let diffusers_error = assert_close("vs diffusers", &single, diffusers, DIFFUSERS_TOLERANCE);
    println!(
        "decoded, relative error: single file vs folder {error:.2e}, vs diffusers {diffusers_error:.2e}"
    );
}

fn tiny_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny_single_file(), &Device::Cpu).expect("tiny single file")
}

fn write(path: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, path).expect("write checkpoint");
}

#[test]
fn a_fused_in_proj_that_does_not_split_in_three_is_one_line_naming_file_and_key() {
    let dir = temp_dir("sdxl-single-file-in-proj");
    let file = dir.join("broken.safetensors");
    let key = "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight";
    let mut tensors = tiny_tensors();
    let fused = tensors.get(key).expect("tiny file has the key");
    let rows = fused.dim(0).expect("rows");
    let short = fused.narrow(0, 0, rows - 1).expect("one row fewer");
    tensors.insert(key.to_string(), short);
    write(&file, &tensors);
    let message = load_error(&paths(file, Some(sdxl_folder())));
    assert!(
        message.contains("broken.safetensors") && message.contains(key),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_one_line_naming_file_and_key() {
    let dir = temp_dir("sdxl-single-file-missing");
    let file = dir.join("missing.safetensors");
    let mut tensors = tiny_tensors();
    tensors.remove("conditioner.embedders.1.model.ln_final.weight");
    write(&file, &tensors);
    let message = load_error(&paths(file, Some(sdxl_folder())));
    assert!(
        message.contains("missing.safetensors")
            && message.contains("text_model.final_layer_norm.weight"),
        "{message}"
    );
}

#[test]
fn an_sd15_configs_folder_for_an_sdxl_file_is_one_line_saying_so() {
    let sd15 = fixtures().join("models/sd15");
    let message = load_error(&paths(tiny_single_file(), Some(sd15)));
    assert!(
        message.contains("unet/config.json")
            && message.contains("tiny_sdxl.safetensors` is an SDXL checkpoint"),
        "{message}"
    );
}

/// Without `--configs` a single SDXL file is read with stable-diffusion-xl-base-1.0's
/// sizes (the tiny one then does not fit, by its first text encoder's width).
#[test]
fn without_configs_the_built_in_sdxl_sizes_are_used() {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/sdxl");
    let unet: UNetConfig = read_config(&built_in.join("unet_config.json")).expect("unet");
    assert!(unet.is_sdxl());
    assert_eq!(unet.block_out_channels, [320, 640, 1280]);
    assert_eq!(
        (
            unet.cross_attention_dim,
            unet.projection_class_embeddings_input_dim
        ),
        (2048, Some(2816))
    );
    let vae: VaeConfig = read_config(&built_in.join("vae_config.json")).expect("vae");
    assert_eq!(vae.scaling_factor, 0.13025);
    let text: ClipTextConfig =
        read_config(&built_in.join("text_encoder_config.json")).expect("text");
    assert_eq!((text.hidden_size, text.num_hidden_layers), (768, 12));
    let text_2: ClipTextConfig =
        read_config(&built_in.join("text_encoder_2_config.json")).expect("text 2");
    assert_eq!(
        (
            text_2.hidden_size,
            text_2.num_hidden_layers,
            text_2.projection_dim
        ),
        (1280, 32, Some(1280))
    );
    let message = load_error(&paths(tiny_single_file(), None));
    assert!(
        message.contains("tiny_sdxl.safetensors") && message.contains("768"),
        "{message}"
    );
}
