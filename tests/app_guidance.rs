//! UI tests for guidance and the few-step samplers: the negative pane's mark when CFG
//! ≤ 1 leaves the negative images nothing to do, and TCD's eta slider.

mod common;

use common::temp_dir;
use common::ui::{app, harness, test_settings};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use minus::schedulers::SamplerKind;

const MARK: &str = "needs CFG > 1";

#[test]
fn the_negative_pane_is_marked_while_cfg_is_1() {
    let out = temp_dir("ui-guidance-mark");
    let mut harness = harness(test_settings(&out));
    harness.step();
    assert_eq!(app(&harness).settings().request.cfg, 7.5);
    assert!(harness.query_by_label(MARK).is_none(), "marked at CFG 7.5");
    for (cfg, marked) in [(1.0, true), (7.5, false), (1.0, true), (1.5, false)] {
        harness
            .get_by_role_and_label(Role::Slider, "CFG scale")
            .set_value_accesskit(cfg);
        harness.run_steps(2);
        assert_eq!(app(&harness).settings().request.cfg, cfg);
        assert_eq!(
            harness.query_by_label(MARK).is_some(),
            marked,
            "mark at CFG {cfg}"
        );
    }
}

/// Picks `name` from the sampler drop-down, as a user does.
fn choose_sampler(harness: &mut egui_kittest::Harness<'_, common::ui::State>, name: &str) {
    harness
        .get_by_role_and_label(Role::ComboBox, "Sampler")
        .click();
    harness.run_steps(2);
    harness.get_by_role_and_label(Role::Button, name).click();
    harness.run_steps(2);
}

#[test]
fn tcd_from_the_sampler_menu_brings_an_eta_slider_and_lcm_does_not() {
    let out = temp_dir("ui-tcd-eta");
    let mut harness = harness(test_settings(&out));
    harness.step();
    let eta_slider = |harness: &egui_kittest::Harness<'_, common::ui::State>| {
        harness
            .query_by_role_and_label(Role::Slider, "Eta")
            .is_some()
    };
    assert!(!eta_slider(&harness), "eta shown for DDIM");
    choose_sampler(&mut harness, "TCD");
    assert_eq!(app(&harness).settings().request.sampler, SamplerKind::Tcd);
    assert!(eta_slider(&harness), "no eta for TCD");
    harness
        .get_by_role_and_label(Role::Slider, "Eta")
        .set_value_accesskit(0.6);
    harness.run_steps(2);
    assert_eq!(app(&harness).settings().request.eta, 0.6);
    choose_sampler(&mut harness, "LCM");
    assert_eq!(app(&harness).settings().request.sampler, SamplerKind::Lcm);
    assert!(!eta_slider(&harness), "eta shown for LCM");
}
