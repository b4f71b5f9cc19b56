//! UI test of the fast final decode: the "Fast final decode (TAESD)" box makes the next
//! run's picture TAESD's, the result says so, and the saved settings keep it.

mod common;

use common::ui::{app, harness, run_until, saved_pngs, step_until, test_settings};
use common::{fixtures, temp_dir};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use minus::pipeline::FinalDecode;

const BOX: &str = "Fast final decode (TAESD)";

#[test]
fn the_fast_decode_box_makes_a_taesd_draft_that_says_so() {
    let out = temp_dir("ui-fast-decode");
    let mut settings = test_settings(&out);
    settings.models.paths.taesd = Some(fixtures().join("models/taesd"));
    settings.request.steps = 2;
    let mut harness = harness(settings);
    harness.step();
    let decode = |harness: &egui_kittest::Harness<'_, common::ui::State>| {
        app(harness).settings().request.final_decode
    };
    assert_eq!(decode(&harness), FinalDecode::Vae);
    harness.get_by_role_and_label(Role::CheckBox, BOX).click();
    harness.run_steps(2);
    assert_eq!(decode(&harness), FinalDecode::Taesd);
    // The result's line: seed, steps, sampler, then the decoder when it is TAESD.
    let labelled = |harness: &egui_kittest::Harness<'_, common::ui::State>| {
        harness
            .query_by_label_contains("2 steps, DDIM, TAESD decode")
            .is_some()
    };
    assert!(!labelled(&harness));
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the draft to be saved", |_| {
        !saved_pngs(&out).is_empty()
    });
    step_until(&mut harness, "the result's label", |harness| {
        labelled(harness)
    });
    let saved = saved_pngs(&out);
    let bytes = std::fs::read(&saved[0]).expect("saved result");
    let request = minus::output::read_request(&bytes).expect("settings");
    assert_eq!(request.final_decode, FinalDecode::Taesd);
    // Unticked, the box gives the VAE back.
    harness.get_by_role_and_label(Role::CheckBox, BOX).click();
    harness.run_steps(2);
    assert_eq!(decode(&harness), FinalDecode::Vae);
}
