//! UI tests of the preview setting: TAESD or the latent colour map, chosen in the
//! settings column, decides how the engine draws each step's preview.

mod common;

use common::ui::{app, harness, run_until, test_settings};
use common::{fixtures, temp_dir};
use egui_kittest::kittest::Queryable;
use minus::pipeline::PreviewKind;

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

    harness.get_by_label("Latent colours").click();
    harness.step();
    assert_eq!(app(&harness).settings().preview, PreviewKind::LatentColours);
    assert_eq!(
        preview_kind_of_a_run(&mut harness),
        PreviewKind::LatentColours
    );

    harness.get_by_label("TAESD").click();
    harness.step();
    assert_eq!(preview_kind_of_a_run(&mut harness), PreviewKind::Taesd);
    assert!(
        app(&harness).messages().is_empty(),
        "{:?}",
        app(&harness).messages()
    );
}

#[test]
fn without_taesd_the_preview_falls_back_to_the_latent_colours() {
    let out = temp_dir("ui-preview-fallback");
    let mut settings = test_settings(&out);
    settings.models.paths.taesd = Some(out.join("no-taesd-here"));
    settings.output_dir = None;
    settings.request.steps = 2;
    let mut harness = harness(settings);
    harness.step();
    assert_eq!(app(&harness).settings().preview, PreviewKind::Taesd);
    assert_eq!(
        preview_kind_of_a_run(&mut harness),
        PreviewKind::LatentColours
    );
}
