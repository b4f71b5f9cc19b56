//! UI tests of the Models section and the panes' layout: adapters chosen by kind
//! (downloaded from a stand-in hub when missing), Browse... buttons answered through
//! the picker seam, Tab order in the path rows, and panes that keep their width.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::stand_in_hub::{StandInHub, served_files};
use common::ui::{
    State, app, app_mut, assert_no_messages, drop_house_and_lawn, harness, run_until, test_settings,
};
use common::{copy_dir, fixtures, temp_dir};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use minus::app::{MessageKind, MessageSource, MinusApp, PathField, PathPicker, PickKind};
use minus::weights::hub::Hub;

/// The adapter label the window lists as loaded.
fn loaded_adapter(app: &MinusApp) -> Option<String> {
    app.loaded_models().and_then(|m| m.adapter.clone())
}

/// Picks an entry of the "IP-Adapter" kind list.
fn choose_adapter(harness: &mut Harness<'_, State>, label: &str) {
    harness
        .get_by_role_and_label(Role::ComboBox, "IP-Adapter")
        .click();
    harness.run_steps(2);
    // The list's entries are buttons; the loaded adapter's name is a label too.
    harness.get_by_role_and_label(Role::Button, label).click();
    harness.run_steps(2);
}

/// The Plus adapter and the image encoder, as the hub serves them.
fn plus_adapter_files() -> HashMap<String, Vec<u8>> {
    served_files(
        &fixtures().join("models/ip-adapter/models"),
        "h94/IP-Adapter/models",
        &[
            "ip-adapter-plus_sd15.safetensors",
            "image_encoder/config.json",
            "image_encoder/model.safetensors",
        ],
    )
}

#[test]
fn choosing_an_adapter_kind_offers_its_download_then_loads_it() {
    let server = StandInHub::start(plus_adapter_files(), 0);
    let out = temp_dir("ui-adapter-kind");
    let mut harness = harness(test_settings(&out));
    harness.step();
    app_mut(&mut harness).set_hub(Hub::new(&server.endpoint, out.join("hub-cache")));
    run_until(&mut harness, "the base adapter to load", |app| {
        loaded_adapter(app).as_deref() == Some("IP-Adapter")
    });
    harness.get_by_label("Models").click();
    harness.step();

    choose_adapter(&mut harness, "Plus");
    assert!(
        harness
            .query_by_label("Plus is not downloaded yet (about 98 MB).")
            .is_some()
    );
    harness.get_by_label("Download Plus").click();
    run_until(&mut harness, "the Plus adapter to load", |app| {
        loaded_adapter(app).as_deref() == Some("Plus")
    });
    let paths = app(&harness).settings().models.paths;
    let adapter = paths.ip_adapter.expect("an adapter is set");
    assert!(
        adapter.ends_with("models/ip-adapter-plus_sd15.safetensors")
            && adapter
                .to_string_lossy()
                .contains("models--h94--IP-Adapter"),
        "{adapter:?}"
    );

    // A kind that is not cached only offers its download; a cached one loads at once.
    choose_adapter(&mut harness, "Full Face");
    assert!(
        harness
            .query_by_label_contains("Full Face is not downloaded")
            .is_some()
    );
    assert_eq!(
        app(&harness).settings().models.paths.ip_adapter,
        Some(adapter.clone())
    );
    choose_adapter(&mut harness, "Plus");
    assert!(
        harness
            .query_by_label_contains("not downloaded yet")
            .is_none()
    );
    run_until(&mut harness, "Plus to load again", |app| {
        loaded_adapter(app).as_deref() == Some("Plus")
    });
}

/// Answers every dialog with `answer` and remembers what was asked.
struct Answering {
    answer: PathBuf,
    asked: Mutex<Vec<(PathField, PickKind)>>,
}

impl PathPicker for Answering {
    fn pick(&self, field: PathField, kind: PickKind) -> Option<PathBuf> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((field, kind));
        }
        Some(self.answer.clone())
    }
}

fn answering(answer: PathBuf) -> Arc<Answering> {
    Arc::new(Answering {
        answer,
        asked: Mutex::new(Vec::new()),
    })
}

#[test]
fn browse_fills_a_field_and_a_browsed_model_loads() {
    let out = temp_dir("ui-browse");
    let elsewhere = out.join("elsewhere");
    let mut harness = harness(test_settings(&out));
    harness.step();
    let picker = answering(elsewhere.clone());
    app_mut(&mut harness).set_path_picker(picker.clone());
    harness.get_by_label("browse Save results to").click();
    run_until(&mut harness, "the output folder to be filled", |app| {
        app.settings().output_dir.as_ref() == Some(&elsewhere)
    });
    assert_eq!(
        *picker.asked.lock().expect("lock"),
        [(PathField::OutputDir, PickKind::Folder)]
    );

    // A model field takes a file or a folder: the menu asks which.
    run_until(&mut harness, "the first models", |app| {
        app.loaded_models().is_some()
    });
    // A copy under another name, so the list of what is loaded shows the reload.
    let model_folder = out.join("browsed-model");
    copy_dir(&fixtures().join("models/sd15"), &model_folder);
    let picker = answering(model_folder.clone());
    app_mut(&mut harness).set_path_picker(picker.clone());
    app_mut(&mut harness).settings_mut().models.paths.model = PathBuf::from("/not/yet");
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("browse Model").click();
    harness.run_steps(2);
    harness.get_by_label("Folder...").click();
    run_until(&mut harness, "the browsed model to load", |app| {
        app.settings().models.paths.model == model_folder
            && app
                .loaded_models()
                .is_some_and(|m| m.model == "browsed-model")
    });
    assert_eq!(
        *picker.asked.lock().expect("lock"),
        [(PathField::Model, PickKind::Folder)]
    );
}

#[test]
fn a_failed_model_load_says_so_until_models_load() {
    let out = temp_dir("ui-models-failed");
    let mut settings = test_settings(&out);
    settings.models.paths.model = out.join("no-such-model");
    let mut harness = harness(settings);
    run_until(&mut harness, "the failed load", |app| {
        app.messages().iter().any(|m| {
            (m.kind, m.source) == (MessageKind::Error, MessageSource::Models)
                && m.text.contains("no-such-model")
        })
    });
    app_mut(&mut harness).settings_mut().models.paths.model = fixtures().join("models/sd15");
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Reload models").click();
    run_until(&mut harness, "the models", |app| {
        app.loaded_models().is_some()
    });
    assert_no_messages(&harness);
}

#[test]
fn panes_keep_their_width_when_they_hold_images() {
    let out = temp_dir("ui-pane-width");
    let mut harness = harness(test_settings(&out));
    harness.run_steps(3);
    let before = app(&harness).pane_rects();
    drop_house_and_lawn(&mut harness);
    // Let the thumbnails decode and lay out.
    for _ in 0..40 {
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let after = app(&harness).pane_rects();
    for (before, after) in before.iter().zip(&after) {
        assert!(before.width() > 200.0, "{before:?}");
        assert!(
            (before.width() - after.width()).abs() < 1.0,
            "a pane changed width: {before:?} -> {after:?}"
        );
    }
}

#[test]
fn tab_follows_the_path_rows_in_reading_order() {
    let out = temp_dir("ui-tab-order");
    let mut harness = harness(test_settings(&out));
    harness.run_steps(3);
    harness.get_by_label("Models").click();
    harness.run_steps(2);
    harness
        .get_by_role_and_label(Role::TextInput, "Model")
        .focus();
    harness.run_steps(2);
    // Left to right, then down: each field, then its Browse... button.
    let order = [
        (Role::TextInput, "Model"),
        (Role::Button, "browse Model"),
        (Role::TextInput, "VAE"),
        (Role::Button, "browse VAE"),
    ];
    for (i, (role, label)) in order.into_iter().enumerate() {
        if i > 0 {
            harness.key_press(egui::Key::Tab);
            harness.run_steps(2);
        }
        assert!(
            harness.get_by_role_and_label(role, label).is_focused(),
            "Tab #{i} should reach {label} ({role:?})"
        );
    }
}

/// A first-run window (no model set) on `out`, showing the offer to download the defaults.
fn first_run_window(out: &std::path::Path) -> Harness<'static, State> {
    let mut settings = test_settings(out);
    settings.models.paths = minus::weights::ModelPaths::default();
    let mut harness = harness(settings);
    harness.run_steps(3);
    assert!(offered(&harness));
    harness
}

/// Whether the first-run offer is on screen.
fn offered(harness: &Harness<'_, State>) -> bool {
    harness
        .query_by_label_contains("Download default models")
        .is_some()
}

/// Types `path` into the Model field, which keeps the focus.
fn type_model_path(harness: &mut Harness<'_, State>, path: &std::path::Path) {
    harness
        .get_by_role_and_label(Role::TextInput, "Model")
        .focus();
    harness.run_steps(2);
    harness
        .get_by_role_and_label(Role::TextInput, "Model")
        .type_text(&path.display().to_string());
    harness.run_steps(2);
}

#[test]
fn the_first_run_offer_stays_after_the_typed_path_fails_to_load() {
    let out = temp_dir("ui-first-path-fails");
    let mut harness = first_run_window(&out);
    type_model_path(&mut harness, &out.join("no-such-model"));
    harness.key_press(egui::Key::Tab);
    run_until(&mut harness, "the load's error", |app| {
        app.messages().iter().any(|m| m.kind == MessageKind::Error)
    });
    // The field lost focus and nothing loaded: the rows below stay where they were.
    assert!(offered(&harness), "the offer went before any model loaded");
}

#[test]
fn the_first_run_offer_stays_while_the_first_model_path_is_typed() {
    let out = temp_dir("ui-first-path");
    let mut harness = first_run_window(&out);
    type_model_path(&mut harness, &fixtures().join("models/sd15"));
    // The rows below do not move up under the pointer while typing.
    assert!(offered(&harness), "the offer went while typing");
    harness.key_press(egui::Key::Tab);
    run_until(&mut harness, "the typed model to load", |app| {
        app.loaded_models().is_some()
    });
    assert!(!offered(&harness));
}
