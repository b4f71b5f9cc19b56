//! Config values out of bounds are refused when the config is read, naming the file and
//! the field, instead of failing later, blaming the weights, or allocating without bound.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, load_error, temp_dir};
use minus::scratch::ScratchDir;
use minus::weights::ModelPaths;

/// A copy of the tiny SD 1.5 folder whose `component` config has `field` set to `value`,
/// with the guard of the scratch folder it lies in.
fn model_with(
    name: &str,
    component: &str,
    field: &str,
    value: serde_json::Value,
) -> (ScratchDir, PathBuf) {
    let source = fixtures().join("models/sd15");
    let scratch = temp_dir(name);
    let model = scratch.join("sd15");
    for part in ["unet", "vae", "text_encoder", "tokenizer"] {
        let dir = model.join(part);
        std::fs::create_dir_all(&dir).expect("folder");
        for entry in std::fs::read_dir(source.join(part))
            .expect("fixture")
            .flatten()
        {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    set_field(&model.join(component).join("config.json"), field, value);
    (scratch, model)
}

fn set_field(config: &Path, field: &str, value: serde_json::Value) {
    let text = std::fs::read_to_string(config).expect("config");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json[field] = value;
    std::fs::write(config, json.to_string()).expect("write config");
}

fn assert_names(message: &str, file: &Path, field: &str) {
    assert!(
        message.contains(&file.display().to_string()) && message.contains(field),
        "expected {} and `{field}` in: {message}",
        file.display()
    );
}

#[test]
fn unet_values_out_of_bounds_name_the_config_and_field() {
    let cases = [
        ("norm_num_groups", serde_json::json!(0)),
        ("attention_head_dim", serde_json::json!(0)),
        ("layers_per_block", serde_json::json!(1_000_000_000u64)),
        (
            "down_block_types",
            serde_json::json!(vec!["CrossAttnDownBlock2D"; 5]),
        ),
        ("norm_num_groups", serde_json::json!(7)),
    ];
    for (i, (field, value)) in cases.into_iter().enumerate() {
        let (_scratch, model) = model_with(&format!("config-unet-{i}"), "unet", field, value);
        let message = load_error(&ModelPaths {
            model: model.clone(),
            ..ModelPaths::default()
        });
        assert_names(&message, &model.join("unet/config.json"), field);
    }
}

#[test]
fn a_zero_vae_scale_is_refused_instead_of_a_black_picture() {
    let (_scratch, model) = model_with(
        "config-vae",
        "vae",
        "scaling_factor",
        serde_json::json!(0.0),
    );
    let message = load_error(&ModelPaths {
        model: model.clone(),
        ..ModelPaths::default()
    });
    assert_names(&message, &model.join("vae/config.json"), "scaling_factor");
}

#[test]
fn config_from_with_a_huge_layer_count_is_refused_before_loading() {
    let (_scratch, configs) = model_with(
        "config-from",
        "unet",
        "layers_per_block",
        serde_json::json!(1_000_000_000u64),
    );
    let message = load_error(&ModelPaths {
        model: fixtures().join("models/sd15/unet/diffusion_pytorch_model.safetensors"),
        configs: Some(configs.clone()),
        ..ModelPaths::default()
    });
    assert_names(
        &message,
        &configs.join("unet/config.json"),
        "layers_per_block",
    );
}
