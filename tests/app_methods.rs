//! UI tests of the field's other ways to say "not this": the presets row sets the
//! controls, and a method sweep makes one labelled grid on one seed.

mod common;

use common::temp_dir;
use common::ui::{app, harness, run_sweep, run_until, save_sweep_grid, test_settings};
use egui_kittest::kittest::Queryable;
use minus::app::SweepParameter;
use minus::pipeline::{Combine, EmbedsScaling, ImagePrompt, WeightType};

#[test]
fn the_presets_set_the_method_controls() {
    let out = temp_dir("ui-presets");
    let mut settings = test_settings(&out);
    settings.request.embeds_scaling = EmbedsScaling::KV;
    settings.request.weight_type = WeightType::EaseIn;
    let mut harness = harness(settings);
    harness.step();
    harness.get_by_label("Ways to say not this").click();
    harness.step();
    harness.get_by_label("cubiq noise").click();
    harness.step();
    let request = app(&harness).settings().request;
    assert!(request.noise > 0.0);
    assert_eq!(request.embeds_scaling, EmbedsScaling::VOnly);
    assert_eq!(request.weight_type, WeightType::Linear);
    // The presets row comes first: its "subtract" before the Combine menu's.
    harness
        .query_all_by_label("subtract")
        .next()
        .expect("subtract preset")
        .click();
    harness.step();
    let request = app(&harness).settings().request;
    assert_eq!((request.noise, request.combine), (0.0, Combine::Subtract));
    harness.get_by_label("the seed's method").click();
    harness.step();
    let request = app(&harness).settings().request;
    assert_eq!(request.combine, Combine::Concat);
    assert_eq!(request.method_text(), "");
}

#[test]
fn a_method_sweep_makes_a_labelled_grid() {
    let out = temp_dir("ui-method-sweep");
    let mut settings = test_settings(&out);
    let image = |name: &str| ImagePrompt::new(common::fixtures().join("images").join(name));
    settings.request.images = vec![image("house.png")];
    settings.request.negative_images = vec![image("lawn.png")];
    settings.request.steps = 3;
    settings.sweep.parameter = SweepParameter::Method;
    settings.sweep.values = "seed, off, noise, subtract, ease-in, k-v".to_string();
    let mut harness = harness(settings);
    harness.step();
    run_sweep(&mut harness);
    let labels = app(&harness).sweep_labels();
    assert_eq!(
        labels,
        ["seed", "off", "noise 0.35", "subtract", "ease-in", "k-v"]
    );
    harness.step();
    for label in &labels {
        assert!(
            harness.query_all_by_label(label).next().is_some(),
            "{label} is not on the grid"
        );
    }
    let grid = save_sweep_grid(&mut harness, &out);
    // Six 96-pixel-wide results side by side under a label strip.
    assert!(grid.width() > 6 * 96 && grid.height() > 64);
}

#[test]
fn dropping_a_saved_png_restores_its_method() {
    let out = temp_dir("ui-restore-method");
    let request = minus::pipeline::Request {
        seed: 77,
        noise: 0.6,
        combine: Combine::NormAverage,
        negative_weight_type: WeightType::ReverseInOut,
        embeds_scaling: EmbedsScaling::KVCPenalty,
        ..minus::pipeline::Request::default()
    };
    let saved = common::ui::saved_settings_png(&out, "method.png", &request);
    let mut harness = common::ui::harness_without_autosave(&out);
    common::ui::drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "settings restored", |app| {
        app.settings().request.seed == 77
    });
    let restored = app(&harness).settings().request;
    assert_eq!(restored.method_text(), request.method_text());
}
