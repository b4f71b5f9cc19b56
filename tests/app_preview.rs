//! UI tests of the preview setting: TAESD or the latent colour map, chosen in the
//! settings column, decides how the engine draws each step's preview; a missing
//! TAESD is offered for download.

mod common;

use common::stand_in_hub::{StandInHub, served_files};
use common::ui::{app, app_mut, assert_no_messages, harness, run_until, test_settings};
use common::{fixtures, temp_dir};
use egui_kittest::kittest::Queryable;
use minus::pipeline::PreviewKind;
use minus::weights::hub::Hub;

/// Clicks a Preview radio button (the loaded list names the preview decoder too).
fn choose_preview(harness: &mut egui_kittest::Harness<'static, common::ui::State>, label: &str) {
    harness
        .get_by_role_and_label(egui::accesskit::Role::RadioButton, label)
        .click();
}

/// Two-step runs whose TAESD folder is not there: set, so the cache is not searched
/// and the tests do not depend on this machine's Hugging Face cache.
fn without_taesd(out: &std::path::Path) -> minus::app::Settings {
    let mut settings = test_settings(out);
    settings.models.paths.taesd = Some(out.join("no-taesd-here"));
    settings.output_dir = None;
    settings.request.steps = 2;
    settings
}

/// Runs one generation and returns how its previews were drawn.
fn preview_kind_of_a_run(
    harness: &mut egui_kittest::Harness<'static, common::ui::State>,
) -> PreviewKind {
    harness.get_by_label("Generate").click();
    run_until(harness, "a step preview", |app| {
        app.running_preview_kind().is_some()
    });
    let kind = app(harness).running_preview_kind();
    run_until(harness, "the run to end", |app| !app.is_busy());
    kind.expect("a preview was drawn")
}

#[test]
fn the_preview_setting_chooses_taesd_or_the_latent_colours() {
    let out = temp_dir("ui-preview");
    let mut settings = test_settings(&out);
    settings.models.paths.taesd = Some(fixtures().join("models/taesd"));
    settings.output_dir = None;
    settings.request.steps = 2;
    let mut harness = harness(settings);
    harness.step();
    assert_eq!(app(&harness).settings().preview, PreviewKind::Taesd);
    assert_eq!(preview_kind_of_a_run(&mut harness), PreviewKind::Taesd);

    choose_preview(&mut harness, "Latent colours");
    harness.step();
    assert_eq!(app(&harness).settings().preview, PreviewKind::LatentColours);
    assert_eq!(
        preview_kind_of_a_run(&mut harness),
        PreviewKind::LatentColours
    );

    choose_preview(&mut harness, "TAESD");
    harness.step();
    assert_eq!(preview_kind_of_a_run(&mut harness), PreviewKind::Taesd);
    assert_no_messages(&harness);
}

#[test]
fn without_taesd_the_preview_falls_back_to_the_latent_colours() {
    let out = temp_dir("ui-preview-fallback");
    let settings = without_taesd(&out);
    let mut harness = harness(settings);
    harness.step();
    assert_eq!(app(&harness).settings().preview, PreviewKind::Taesd);
    assert_eq!(
        preview_kind_of_a_run(&mut harness),
        PreviewKind::LatentColours
    );
}

#[test]
fn a_missing_taesd_is_offered_then_downloaded_and_used() {
    let taesd_files = served_files(
        &fixtures().join("models/taesd"),
        "madebyollin/taesd",
        &["config.json", "diffusion_pytorch_model.safetensors"],
    );
    let server = StandInHub::start(taesd_files, 0);
    let out = temp_dir("ui-taesd-download");
    let settings = without_taesd(&out);
    let mut harness = harness(settings);
    harness.step();
    app_mut(&mut harness).set_hub(Hub::new(&server.endpoint, out.join("hub-cache")));
    run_until(&mut harness, "the models to load", |app| {
        app.loaded_models().is_some()
    });
    let offered = |harness: &egui_kittest::Harness<'static, common::ui::State>| {
        harness
            .query_by_label_contains("TAESD is not downloaded")
            .is_some()
    };
    assert!(offered(&harness));
    // Latent colours chosen: nothing to offer.
    choose_preview(&mut harness, "Latent colours");
    harness.run_steps(2);
    assert!(!offered(&harness));
    choose_preview(&mut harness, "TAESD");
    harness.run_steps(2);
    assert!(offered(&harness));

    // The offer's button downloads into the hub cache; the models then load with it.
    app_mut(&mut harness).settings_mut().models.paths.taesd = None;
    harness.get_by_label("Download TAESD").click();
    run_until(&mut harness, "TAESD to load", |app| {
        app.loaded_models().is_some_and(|loaded| loaded.taesd)
    });
    assert!(!offered(&harness));
    assert!(out.join("hub-cache/models--madebyollin--taesd").is_dir());
    assert_eq!(preview_kind_of_a_run(&mut harness), PreviewKind::Taesd);
}
