//! UI tests of SDXL in the window: the loaded-models list names the family, the size
//! follows it, the adapter list offers SDXL's adapters, a run makes a picture whose
//! settings name SDXL, and restoring an SDXL picture over an SD 1.5 model says so.

mod common;

use std::path::Path;

use common::ui::{
    State, app, app_mut, drop_on, harness, run_until, saved_pngs, saved_settings_png, step_until,
    test_settings,
};
use common::{fixtures, sdxl_adapters, sdxl_folder, temp_dir};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use minus::app::Settings;
use minus::models::family::ModelFamily;
use minus::pipeline::Request;

/// The test settings on the tiny SDXL folder with its Plus adapter, at 512² (SD 1.5's
/// default square).
fn sdxl_settings(out: &Path) -> Settings {
    let mut settings = test_settings(out);
    let adapters = sdxl_adapters();
    let paths = &mut settings.models.paths;
    paths.model = sdxl_folder();
    paths.ip_adapter = Some(adapters.join("ip-adapter-plus_sdxl_vit-h.safetensors"));
    paths.image_encoder = Some(adapters.join("image_encoder"));
    settings.request.width = 512;
    settings.request.height = 512;
    settings.request.steps = 2;
    settings
}

fn loaded(harness: &Harness<'_, State>) -> bool {
    app(harness).loaded_models().is_some()
}

#[test]
fn an_sdxl_model_is_named_sized_offered_its_adapters_and_makes_a_picture() {
    let out = temp_dir("ui-sdxl");
    let mut harness = harness(sdxl_settings(&out));
    run_until(&mut harness, "the SDXL models to load", |app| {
        app.loaded_models().is_some()
    });
    harness.run_steps(2);
    assert!(harness.query_by_label("sdxl (SDXL)").is_some());
    let request = app(&harness).settings().request;
    assert_eq!((request.width, request.height), (1024, 1024));
    // The adapter kinds are SDXL's (the Models section is folded once a model is set).
    harness.get_by_label("Models").click();
    harness.run_steps(2);
    harness
        .get_by_role_and_label(Role::ComboBox, "IP-Adapter")
        .click();
    harness.run_steps(2);
    assert!(harness.query_by_label("IP-Adapter bigG").is_some());
    assert!(harness.query_by_label("Light").is_none());
    harness.key_press(egui::Key::Escape);
    // Previews offer SDXL's tiny decoder.
    assert!(harness.query_by_label("Download TAESDXL").is_some());
    // The Fast preset's LoRA is SD 1.5's.
    assert!(harness.get_by_label("Fast").accesskit_node().is_disabled());
    // A small run with a negative image.
    let settings = app_mut(&mut harness).settings_mut();
    (settings.request.width, settings.request.height) = (64, 64);
    drop_on(
        &mut harness,
        "Generate",
        fixtures().join("images/house.png"),
    );
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the SDXL picture to be saved", |_| {
        !saved_pngs(&out).is_empty()
    });
    let bytes = std::fs::read(&saved_pngs(&out)[0]).expect("saved result");
    let request = minus::output::read_request(&bytes).expect("settings");
    assert_eq!(request.family, ModelFamily::Sdxl);
    assert_eq!((request.width, request.height), (64, 64));
}

#[test]
fn restoring_an_sdxl_picture_over_an_sd15_model_says_so() {
    let out = temp_dir("ui-sdxl-restore");
    let mut harness = harness(test_settings(&out));
    step_until(&mut harness, "the SD 1.5 models to load", loaded);
    let request = Request {
        family: ModelFamily::Sdxl,
        ..Request::default()
    };
    let png = saved_settings_png(&out, "sdxl.png", &request);
    drop_on(&mut harness, "Generate", png);
    run_until(&mut harness, "the family warning", |app| {
        app.messages().iter().any(|m| {
            m.text
                .contains("made with an SDXL model; the loaded model is SD 1.5")
        })
    });
    // Restored all the same: the settings are the picture's.
    assert_eq!(app(&harness).settings().request.family, ModelFamily::Sdxl);
}
