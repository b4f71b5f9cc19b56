//! Every form of model file a user may already have loads and gives the same
//! generation as the diffusers folder; every common wrong file gets a clear error.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{
    assert_image_matches, fixtures, generate_images, load_error, mean_abs_difference, model_paths,
    temp_dir,
};
use minus::models::unet::UNetConfig;
use minus::models::vae::VaeConfig;
use minus::pipeline::{ImagePrompt, Models, Request};
use minus::weights::ModelPaths;
use minus::weights::config::read_json;
use minus::weights::ldm::{
    TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, is_vae_attention_projection, unet_key_map, vae_key_map,
};
use minus::weights::pickle::load_pickle;

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture loads")
}

fn sd15() -> PathBuf {
    fixtures().join("models/sd15")
}

/// The `base_posneg_ddim` reference case as a request.
fn reference_request() -> Request {
    Request {
        images: vec![ImagePrompt::new(fixtures().join("images/house.png"))],
        negative_images: vec![ImagePrompt::new(fixtures().join("images/lawn.png"))],
        steps: 8,
        width: 128,
        height: 96,
        seed: 42,
        ..Request::default()
    }
}

fn generate_with(paths: &ModelPaths) -> image::RgbImage {
    let models = Models::load(paths, &Device::Cpu, DType::F32).expect("models load");
    generate_images(&models, &reference_request()).remove(0)
}

fn reference_out() -> PathBuf {
    fixtures().join("cases/base_posneg_ddim/out.png")
}

/// Writes the reference diffusers weights as one LDM-named checkpoint, as A1111 saves them.
fn write_single_file(path: &Path, with_vae: bool) {
    let unet_config: UNetConfig = read_json(&sd15().join("unet/config.json")).unwrap();
    let vae_config: VaeConfig = read_json(&sd15().join("vae/config.json")).unwrap();
    let unet_map = unet_key_map(&unet_config);
    let vae_map = vae_key_map(
        vae_config.block_out_channels.len(),
        vae_config.layers_per_block,
    );
    let mut out = HashMap::new();
    for (key, tensor) in load(&sd15().join("unet/diffusion_pytorch_model.safetensors")) {
        let ldm = unet_map
            .to_ldm(&key)
            .unwrap_or_else(|| panic!("no LDM name for {key}"));
        out.insert(format!("{UNET_PREFIX}{ldm}"), tensor);
    }
    if with_vae {
        for (key, tensor) in load(&sd15().join("vae/diffusion_pytorch_model.safetensors")) {
            // The checkpoint also carries the encoder, which generation does not use.
            let Some(ldm) = vae_map.to_ldm(&key) else {
                continue;
            };
            let tensor = if is_vae_attention_projection(&key) {
                tensor.unsqueeze(2).unwrap().unsqueeze(3).unwrap()
            } else {
                tensor
            };
            out.insert(format!("{VAE_PREFIX}{ldm}"), tensor);
        }
    }
    for (key, tensor) in load(&sd15().join("text_encoder/model.safetensors")) {
        out.insert(format!("{TEXT_PREFIX}text_model.{key}"), tensor);
    }
    // Buffers real checkpoints carry and the networks do not use.
    out.insert(
        "alphas_cumprod".to_string(),
        Tensor::zeros(1000, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&out, path).unwrap();
}

fn adapter_paths(model: PathBuf, adapter: PathBuf) -> ModelPaths {
    ModelPaths {
        model,
        ip_adapter: Some(adapter),
        configs: Some(sd15()),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    }
}

#[test]
fn single_file_checkpoint_generates_the_same_image() {
    let dir = temp_dir("single-file");
    let checkpoint = dir.join("tiny-sd15.safetensors");
    write_single_file(&checkpoint, true);
    let paths = ModelPaths {
        model: checkpoint,
        configs: Some(sd15()),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    };
    assert_image_matches("single file", &generate_with(&paths), &reference_out());
}

#[test]
fn single_file_without_vae_uses_the_given_vae_and_asks_for_one_otherwise() {
    let dir = temp_dir("single-file-no-vae");
    let checkpoint = dir.join("no-vae.safetensors");
    write_single_file(&checkpoint, false);
    let mut paths = ModelPaths {
        model: checkpoint,
        configs: Some(sd15()),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    };
    let error = Models::load(&paths, &Device::Cpu, DType::F32)
        .err()
        .expect("needs a VAE");
    assert!(error.to_string().contains("no VAE"), "{error}");
    paths.vae = Some(sd15().join("vae"));
    assert_image_matches(
        "single file + VAE folder",
        &generate_with(&paths),
        &reference_out(),
    );
    // The VAE as one diffusers-named file works too.
    paths.vae = Some(sd15().join("vae/diffusion_pytorch_model.safetensors"));
    assert_image_matches(
        "single file + VAE file",
        &generate_with(&paths),
        &reference_out(),
    );
}

#[test]
fn bin_adapters_match_the_safetensors_ones() {
    let paths = ModelPaths {
        ip_adapter: Some(fixtures().join("bin/ip-adapter_sd15.bin")),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    };
    assert_image_matches("base .bin", &generate_with(&paths), &reference_out());
    let plus = ModelPaths {
        ip_adapter: Some(fixtures().join("bin/ip-adapter-plus_sd15.bin")),
        ..model_paths(Some("ip-adapter-plus_sd15.safetensors"))
    };
    let from_bin = generate_with(&plus);
    let from_safetensors = generate_with(&model_paths(Some("ip-adapter-plus_sd15.safetensors")));
    assert_eq!(from_bin, from_safetensors);
}

#[test]
fn checkpoint_pickles_are_read_from_their_state_dict() {
    let file =
        load_pickle(&fixtures().join("bin/tiny_state_dict.ckpt"), DType::F32).expect("reads");
    let tensor = file
        .get("model.diffusion_model.out.2.bias")
        .expect("tensor under state_dict");
    assert_eq!(tensor.to_vec1::<f32>().unwrap(), vec![0.0, 1.0, 2.0, 3.0]);
}

#[test]
fn fp16_variant_folders_load() {
    let dir = temp_dir("fp16");
    for (component, file) in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ] {
        let target = dir.join(component);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(
            sd15().join(component).join("config.json"),
            target.join("config.json"),
        )
        .unwrap();
        let half: HashMap<String, Tensor> =
            load(&sd15().join(component).join(format!("{file}.safetensors")))
                .into_iter()
                .map(|(k, t)| (k, t.to_dtype(DType::F16).unwrap()))
                .collect();
        candle_core::safetensors::save(&half, target.join(format!("{file}.fp16.safetensors")))
            .unwrap();
    }
    let paths = ModelPaths {
        model: dir.to_path_buf(),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    };
    let image = generate_with(&paths);
    // Weights rounded to f16 move the result slightly; it must stay the same picture.
    let mean = mean_abs_difference("fp16 weights", &image, &reference_out());
    println!("fp16 weights: mean |Δ| {mean:.3}/255");
    assert!(mean <= 2.0, "fp16 weights: mean |Δ| {mean}/255");
}

fn write_tensors(path: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

#[test]
fn wrong_files_get_one_line_messages_naming_the_file() {
    let dir = temp_dir("wrong-files");
    let base_adapter = fixtures().join("models/ip-adapter/models/ip-adapter_sd15.safetensors");

    // An SDXL checkpoint with none of its networks' tensors.
    let sdxl = dir.join("sdxl.safetensors");
    let mut tensors = HashMap::new();
    tensors.insert(
        "conditioner.embedders.0.transformer.x".to_string(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        format!("{UNET_PREFIX}input_blocks.0.0.weight"),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    write_tensors(&sdxl, &tensors);
    let message = load_error(&ModelPaths {
        model: sdxl.clone(),
        ..model_paths(None)
    });
    assert!(
        message.contains("sdxl.safetensors") && message.contains("missing tensor"),
        "{message}"
    );

    // An SDXL-sized IP-Adapter (2048-dim tokens) for an SD 1.5 UNet.
    let mut adapter = load(&base_adapter);
    adapter.insert(
        "image_proj.proj.weight".to_string(),
        Tensor::zeros((4 * 2048, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    adapter.insert(
        "image_proj.proj.bias".to_string(),
        Tensor::zeros(4 * 2048, DType::F32, &Device::Cpu).unwrap(),
    );
    adapter.insert(
        "image_proj.norm.weight".to_string(),
        Tensor::zeros(2048, DType::F32, &Device::Cpu).unwrap(),
    );
    adapter.insert(
        "image_proj.norm.bias".to_string(),
        Tensor::zeros(2048, DType::F32, &Device::Cpu).unwrap(),
    );
    for id in (1..32).step_by(2) {
        for kind in ["k", "v"] {
            let key = format!("ip_adapter.{id}.to_{kind}_ip.weight");
            let rows = adapter[&key].dim(0).unwrap();
            adapter.insert(
                key,
                Tensor::zeros((rows, 2048), DType::F32, &Device::Cpu).unwrap(),
            );
        }
    }
    let sdxl_adapter = dir.join("ip-adapter_sdxl.safetensors");
    write_tensors(&sdxl_adapter, &adapter);
    let message = load_error(&adapter_paths(sd15(), sdxl_adapter));
    assert!(
        message.contains("ip-adapter_sdxl.safetensors") && message.contains("2048"),
        "{message}"
    );

    // An adapter whose projection does not fit the image encoder.
    let mut adapter = load(&base_adapter);
    adapter.insert(
        "image_proj.proj.weight".to_string(),
        Tensor::zeros((256, 48), DType::F32, &Device::Cpu).unwrap(),
    );
    let mismatched = dir.join("mismatched.safetensors");
    write_tensors(&mismatched, &adapter);
    let message = load_error(&adapter_paths(sd15(), mismatched));
    assert!(
        message.contains("48-dim image features") && message.contains("projection_dim is 32"),
        "{message}"
    );

    // A truncated safetensors file.
    let bytes = std::fs::read(&base_adapter).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = load_error(&adapter_paths(sd15(), truncated));
    assert!(
        message.contains("truncated.safetensors") && message.contains("not a readable safetensors"),
        "{message}"
    );

    // A missing tensor: the first missing key is named.
    let mut adapter = load(&base_adapter);
    adapter.remove("ip_adapter.7.to_v_ip.weight");
    let incomplete = dir.join("incomplete.safetensors");
    write_tensors(&incomplete, &adapter);
    let message = load_error(&adapter_paths(sd15(), incomplete));
    assert!(
        message.contains("missing tensor `ip_adapter.7.to_v_ip.weight`"),
        "{message}"
    );

    // A folder without the expected parts.
    let empty = dir.join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let message = load_error(&ModelPaths {
        model: empty,
        ..model_paths(None)
    });
    assert!(
        message.contains("text_encoder") && message.contains("folder not found"),
        "{message}"
    );

    // A pickle with content Minus cannot read.
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"PK\x03\x04 not really a zip").unwrap();
    let message = load_error(&adapter_paths(sd15(), junk));
    assert!(
        message.contains("junk.bin") && message.contains("not a readable PyTorch file"),
        "{message}"
    );
}

#[test]
fn comfyui_style_image_encoder_files_load() {
    let encoder_dir = fixtures().join("models/ip-adapter/models/image_encoder");
    let weights = encoder_dir.join("model.safetensors");
    // Sizes read off the tensors (the head count is not in the weights).
    let file = minus::weights::TensorFile::load_safetensors(&weights, DType::F32).unwrap();
    let inferred = minus::weights::shapes::infer_vision_config(&file).unwrap();
    let actual: minus::models::clip_vision::ClipVisionConfig =
        read_json(&encoder_dir.join("config.json")).unwrap();
    assert_eq!(
        (
            inferred.hidden_size,
            inferred.intermediate_size,
            inferred.num_hidden_layers
        ),
        (
            actual.hidden_size,
            actual.intermediate_size,
            actual.num_hidden_layers
        )
    );
    assert_eq!(
        (
            inferred.image_size,
            inferred.patch_size,
            inferred.projection_dim
        ),
        (actual.image_size, actual.patch_size, actual.projection_dim)
    );
    // A single file in a clip_vision folder, with the config beside it, generates as the folder does.
    let clip_vision = temp_dir("clip-vision");
    std::fs::copy(&weights, clip_vision.join("tiny-vit.safetensors")).unwrap();
    std::fs::copy(
        encoder_dir.join("config.json"),
        clip_vision.join("config.json"),
    )
    .unwrap();
    let paths = ModelPaths {
        image_encoder: Some(clip_vision.join("tiny-vit.safetensors")),
        ..model_paths(Some("ip-adapter_sd15.safetensors"))
    };
    assert_image_matches("clip_vision file", &generate_with(&paths), &reference_out());
}
