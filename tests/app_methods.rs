//! UI tests of the field's other ways to say "not this": the presets row sets the
//! controls, and a method sweep makes one labelled grid on one seed.

mod common;

use common::temp_dir;
use common::ui::{
    app, assert_no_messages, drop_house_and_lawn, harness, run_until, save_sweep_grid,
    test_settings,
};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use minus::app::SweepParameter;
use minus::pipeline::{Combine, EmbedsScaling, WeightType};

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
    assert_eq!(request.combine, Combine::WeightedAverage);
    assert_eq!(request.method_text(), "");
}

/// A method sweep driven as a user does: the house and the lawn dropped on the panes,
/// *method* chosen under *vary* (which puts the method list in the field), Run sweep.
/// Every method changes the picture: each cell differs from the seed's method.
#[test]
fn a_method_sweep_over_the_panes_images_makes_a_grid_of_different_pictures() {
    let out = temp_dir("ui-method-sweep");
    let mut settings = test_settings(&out);
    settings.request.steps = 3;
    let mut harness = harness(settings);
    harness.step();
    drop_house_and_lawn(&mut harness);
    harness.get_by_label("Sweep").click();
    harness.step();
    harness
        .get_by_role_and_label(Role::ComboBox, "vary")
        .click();
    harness.run_steps(2);
    harness
        .get_by_role_and_label(Role::Button, "method")
        .click();
    harness.run_steps(2);
    let sweep = app(&harness).settings().sweep;
    assert_eq!(sweep.parameter, SweepParameter::Method);
    assert_eq!(sweep.values, SweepParameter::Method.default_values());
    harness.get_by_label("Run sweep").click();
    run_until(&mut harness, "the sweep", |app| app.sweep_complete());
    assert_no_messages(&harness);
    let labels = app(&harness).sweep_labels();
    assert_eq!(
        labels,
        [
            "seed",
            "off",
            "noise 0.35",
            "subtract",
            "ease-in",
            "k-v-c-penalty"
        ]
    );
    let images: Vec<_> = app(&harness).sweep_images().into_iter().flatten().collect();
    assert_eq!(images.len(), labels.len());
    for (label, image) in labels.iter().zip(&images).skip(1) {
        // Not assert_ne: it would print both pictures' bytes.
        assert!(
            image.as_raw() != images[0].as_raw(),
            "`{label}` made the seed's picture"
        );
    }
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
