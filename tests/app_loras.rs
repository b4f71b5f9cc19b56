//! UI tests of the LoRA list under Models: files of the LoRA folder added with one
//! click, a new strength merged again without reading the model, Remove, Add LoRA...
//! with a file Minus refuses, and restored pictures whose LoRAs are found by hash.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::ui::{
    State, app, app_mut, assert_no_messages, drop_on, harness, harness_without_autosave, run_until,
    saved_settings_png, step_until, test_settings,
};
use common::{copy_dir, fixtures, temp_dir};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use minus::app::{MessageKind, MessageSource, MinusApp, PathField, PathPicker, PickKind};
use minus::pipeline::Request;
use minus::weights::lora::LoraChoice;
use minus::weights::lora::header::read_header;

/// The LoRAs the engine reports loaded, by name and strength.
fn loaded_loras(app: &MinusApp) -> Option<Vec<(String, f64)>> {
    app.loaded_models().map(|m| m.loras.clone())
}

fn lora(name: &str) -> PathBuf {
    fixtures().join("lora").join(name)
}

/// Copies the fixture LoRA `name` into `folder` as `as_name`.
fn put_lora(folder: &Path, name: &str, as_name: &str) -> PathBuf {
    std::fs::create_dir_all(folder).expect("LoRA folder");
    let path = folder.join(as_name);
    std::fs::copy(lora(name), &path).expect("copy the LoRA");
    path
}

/// Opens the Models section once the first models are loaded.
fn open_models(harness: &mut Harness<'_, State>) {
    run_until(harness, "the first models", |app| {
        app.loaded_models().is_some()
    });
    harness.get_by_label("Models").click();
    harness.run_steps(2);
}

#[test]
fn the_lora_list_adds_from_the_folder_reweighs_and_removes() {
    let out = temp_dir("ui-lora-list");
    let folder = out.join("loras");
    let kohya = put_lora(
        &folder.join("styles"),
        "kohya.safetensors",
        "kohya.safetensors",
    );
    // The model is a copy that goes away while the strength changes: merging again
    // must not read it.
    let (model, moved) = (out.join("model"), out.join("model-moved"));
    copy_dir(&fixtures().join("models/sd15"), &model);
    let mut settings = test_settings(&out);
    settings.models.paths.model = model.clone();
    settings.models.lora_dir = Some(folder);
    let mut harness = harness(settings);
    open_models(&mut harness);
    assert_eq!(loaded_loras(app(&harness)), Some(Vec::new()));

    step_until(&mut harness, "the folder's LoRA listed", |h| {
        h.query_by_label("add LoRA kohya.safetensors").is_some()
    });
    harness
        .get_by_label("add LoRA kohya.safetensors")
        .click_accesskit();
    run_until(&mut harness, "the LoRA merged", |app| {
        loaded_loras(app) == Some(vec![("kohya".to_string(), 1.0)])
    });
    assert_eq!(
        app(&harness).settings().models.paths.loras,
        [LoraChoice::new(&kohya, 1.0)]
    );

    std::fs::rename(&model, &moved).expect("move the model away");
    harness
        .get_by_role_and_label(Role::Slider, "kohya")
        .set_value_accesskit(-0.5);
    run_until(&mut harness, "the new strength merged", |app| {
        loaded_loras(app) == Some(vec![("kohya".to_string(), -0.5)])
    });
    assert_no_messages(&harness);
    std::fs::rename(&moved, &model).expect("move the model back");

    harness.get_by_label("remove LoRA kohya").click_accesskit();
    run_until(&mut harness, "the models without the LoRA", |app| {
        loaded_loras(app) == Some(Vec::new())
    });
    assert!(app(&harness).settings().models.paths.loras.is_empty());
    assert_no_messages(&harness);
}

/// Answers every file dialog with one path.
struct Answer(PathBuf);

impl PathPicker for Answer {
    fn pick(&self, field: PathField, kind: PickKind) -> Option<PathBuf> {
        ((field, kind) == (PathField::Lora, PickKind::File)).then(|| self.0.clone())
    }
}

#[test]
fn add_lora_with_a_kind_minus_refuses_says_so_naming_the_file() {
    let out = temp_dir("ui-lora-refused");
    let mut harness = harness(test_settings(&out));
    open_models(&mut harness);
    app_mut(&mut harness).set_path_picker(Arc::new(Answer(lora("loha.safetensors"))));
    harness.get_by_label("Add LoRA...").click_accesskit();
    run_until(&mut harness, "the refusal", |app| {
        app.messages().iter().any(|m| m.kind == MessageKind::Error)
    });
    let errors: Vec<String> = app(&harness)
        .messages()
        .into_iter()
        .filter(|m| (m.kind, m.source) == (MessageKind::Error, MessageSource::Models))
        .map(|m| m.text)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("loha.safetensors") && errors[0].contains("LoHa"),
        "{errors:?}"
    );
}

/// A saved picture that ran with `saved`, dropped on a window (autosave off) whose
/// LoRA folder is `folder`.
fn restore_picture(out: &Path, folder: PathBuf, saved: LoraChoice) -> Harness<'static, State> {
    let request = Request {
        seed: 77,
        loras: vec![saved],
        ..Request::default()
    };
    let png = saved_settings_png(out, "saved.png", &request);
    let mut harness = harness_without_autosave(out);
    app_mut(&mut harness).settings_mut().models.lora_dir = Some(folder);
    drop_on(&mut harness, "Generate", png);
    harness
}

#[test]
fn a_restored_picture_finds_its_lora_by_hash_in_the_lora_folder() {
    let out = temp_dir("ui-lora-restore");
    let folder = out.join("loras");
    let renamed = put_lora(&folder, "kohya.safetensors", "renamed.safetensors");
    put_lora(&folder, "peft.safetensors", "kohya.safetensors");
    let hash = read_header(&renamed).expect("hash").addnet_hash;
    let saved = LoraChoice {
        addnet_hash: Some(hash[..12].to_string()),
        ..LoraChoice::new(out.join("gone/kohya.safetensors"), 0.7)
    };
    let mut harness = restore_picture(&out, folder, saved);
    run_until(&mut harness, "the LoRA found and merged", |app| {
        loaded_loras(app) == Some(vec![("renamed".to_string(), 0.7)])
    });
    let loras = app(&harness).settings().models.paths.loras;
    assert_eq!(loras.len(), 1);
    assert_eq!((&loras[0].path, loras[0].strength), (&renamed, 0.7));
    let messages = app(&harness).messages();
    assert!(
        messages.iter().all(|m| m.kind == MessageKind::Info),
        "{messages:?}"
    );
}

#[test]
fn a_restored_picture_naming_an_unknown_lora_says_which() {
    let out = temp_dir("ui-lora-unknown");
    let folder = out.join("loras");
    put_lora(&folder, "kohya.safetensors", "kohya.safetensors");
    let saved = LoraChoice {
        addnet_hash: Some("0123456789abcdef0123".to_string()),
        ..LoraChoice::new(out.join("gone/mystery.safetensors"), 0.5)
    };
    let mut harness = restore_picture(&out, folder, saved);
    run_until(&mut harness, "the LoRA reported missing", |app| {
        app.messages().iter().any(|m| {
            (m.kind, m.source) == (MessageKind::Warning, MessageSource::Restore)
                && m.text.contains("mystery (0123456789ab)")
        })
    });
    assert!(app(&harness).settings().models.paths.loras.is_empty());
}
