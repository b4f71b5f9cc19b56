//! The mask editor in the window: painting, the eraser, rectangles, invert and clear
//! change the mask; a drawn mask reaches the run, its saved settings and a restore; a
//! mask file dropped on the editor is read into it.

mod common;

use common::ui::{app, drop_fixture_image, drop_on, harness, run_until, saved_pngs, test_settings};
use common::{fixtures, temp_dir};
use egui::{Event, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

type UiHarness = Harness<'static, common::ui::State>;

/// Presses the primary button at `points[0]`, moves through the rest and releases it
/// at the last, a frame each, as a hand would.
fn drag(harness: &mut UiHarness, points: &[Pos2]) {
    let button = |pos, pressed| Event::PointerButton {
        pos,
        button: PointerButton::Primary,
        pressed,
        modifiers: Modifiers::default(),
    };
    let (first, last) = (points[0], points[points.len() - 1]);
    harness.input_mut().events.push(Event::PointerMoved(first));
    harness.step();
    harness.input_mut().events.push(button(first, true));
    harness.step();
    for &point in &points[1..] {
        harness.input_mut().events.push(Event::PointerMoved(point));
        harness.step();
    }
    harness.input_mut().events.push(button(last, false));
    harness.step();
}

/// The canvas's rectangle on screen.
fn canvas(harness: &UiHarness) -> egui::Rect {
    harness.get_by_label("mask canvas").rect()
}

/// Clicks a button through accesskit (it does not move with the layout) and lets the
/// window take the click.
fn press(harness: &mut UiHarness, label: &str) {
    harness.get_by_label(label).click_accesskit();
    harness.run_steps(2);
}

fn coverage(harness: &UiHarness) -> (usize, usize) {
    app(harness)
        .mask_editor_coverage()
        .expect("the editor is open")
}

/// Opens the editor of the house in the image prompt.
fn open_editor(harness: &mut UiHarness) {
    press(harness, "mask Image prompt 0");
    run_until(harness, "the mask editor", |app| {
        app.mask_editor_coverage().is_some()
    });
}

fn white_pixels(path: &std::path::Path) -> usize {
    let mask = image::open(path).expect("mask file").to_luma8();
    mask.pixels().filter(|p| p.0[0] >= 128).count()
}

#[test]
fn strokes_rectangles_invert_and_clear_change_the_drawn_mask() {
    let out = temp_dir("ui-mask-editor");
    let mut harness = harness(test_settings(&out));
    drop_fixture_image(&mut harness, "Image prompt", "house.png", (1, 0));
    open_editor(&mut harness);
    let (painted, total) = coverage(&harness);
    assert_eq!((painted, total), (0, 96 * 64), "a new mask starts empty");

    let rect = canvas(&harness);
    let row = rect.center().y;
    drag(
        &mut harness,
        &[
            rect.left_center() + egui::vec2(10.0, 0.0),
            Pos2::new(rect.center().x, row),
        ],
    );
    let (stroke, _) = coverage(&harness);
    assert!(
        stroke > 0 && stroke < total / 2,
        "a stroke across half the mask painted {stroke}"
    );

    press(&mut harness, "Invert");
    assert_eq!(coverage(&harness).0, total - stroke);
    press(&mut harness, "Undo");
    assert_eq!(
        coverage(&harness).0,
        stroke,
        "Undo takes the inversion back"
    );
    press(&mut harness, "Invert");
    press(&mut harness, "Eraser");
    drag(&mut harness, &[rect.center(), rect.right_center()]);
    assert!(
        coverage(&harness).0 < total - stroke,
        "the eraser took nothing away"
    );
    press(&mut harness, "Clear");
    assert_eq!(coverage(&harness).0, 0);
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::Z);
    harness.run_steps(2);
    assert!(coverage(&harness).0 > 0, "Ctrl+Z takes the clearing back");
    for _ in 0..2 {
        harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::Z);
        harness.run_steps(2);
    }
    assert_eq!(
        coverage(&harness).0,
        stroke,
        "the eraser's stroke and the inversion come back off one by one"
    );
    press(&mut harness, "Clear");

    press(&mut harness, "Rectangle");
    drag(
        &mut harness,
        &[
            rect.left_top(),
            rect.center_top() + egui::vec2(0.0, rect.height() / 2.0),
            rect.center_bottom(),
        ],
    );
    let (left_half, _) = coverage(&harness);
    assert!(
        left_half.abs_diff(total / 2) <= 64,
        "the left half is {} pixels, the rectangle painted {left_half}",
        total / 2
    );

    harness.key_press(egui::Key::Enter);
    harness.run_steps(2);
    assert!(
        app(&harness).mask_editor_coverage().is_none(),
        "Enter uses the mask"
    );
    let (_, enabled, shown) = app(&harness).pane_mask(false, 0).expect("a mask");
    assert_eq!((enabled, shown), (true, Some(left_half)));
}

#[test]
fn a_drawn_mask_reaches_the_run_and_comes_back_with_a_restore() {
    let out = temp_dir("ui-mask-drawn");
    let mut harness = harness(test_settings(&out));
    drop_fixture_image(&mut harness, "Image prompt", "house.png", (1, 0));
    open_editor(&mut harness);
    press(&mut harness, "Rectangle");
    let rect = canvas(&harness);
    drag(
        &mut harness,
        &[rect.left_top(), rect.center(), rect.center_bottom()],
    );
    let (painted, _) = coverage(&harness);
    press(&mut harness, "Use mask");
    assert!(
        app(&harness).mask_editor_coverage().is_none(),
        "Use mask closes the editor"
    );
    let (path, enabled, shown) = app(&harness).pane_mask(false, 0).expect("a mask");
    assert!(enabled);
    assert_eq!(
        shown,
        Some(painted),
        "the thumbnail's overlay is the drawn mask"
    );
    assert_eq!(path.parent(), Some(out.join("masks").as_path()));
    run_until(&mut harness, "the mask file", |_| path.is_file());
    assert_eq!(white_pixels(&path), painted);

    press(&mut harness, "Generate");
    run_until(&mut harness, "the result", |app| app.gallery_len() == 1);
    let result = saved_pngs(&out).pop().expect("a saved result");
    let bytes = std::fs::read(&result).expect("result");
    let saved = minus::output::read_settings(&bytes)
        .expect("settings")
        .expect("a request");
    let mask = saved.images[0].mask.as_ref().expect("the mask is saved");
    assert_eq!(mask.path, path);
    assert!(mask.sha256.is_some());

    let mut restored = common::ui::harness(test_settings(&temp_dir("ui-mask-drawn-restore")));
    restored.step();
    drop_on(&mut restored, "Generate", result);
    run_until(&mut restored, "the restored mask", |app| {
        app.pane_mask(false, 0).and_then(|(_, _, shown)| shown) == Some(painted)
    });
    open_editor(&mut restored);
    assert_eq!(
        coverage(&restored).0,
        painted,
        "the editor opens on the restored mask"
    );
}

#[test]
fn a_mask_file_dropped_on_the_editor_is_read_and_a_bad_one_named() {
    let out = temp_dir("ui-mask-drop");
    let mut harness = harness(test_settings(&out));
    drop_fixture_image(&mut harness, "Image prompt", "house.png", (1, 0));
    open_editor(&mut harness);
    let left = fixtures().join("masks/inputs/left.png");
    drop_on(&mut harness, "mask canvas", left.clone());
    run_until(&mut harness, "the dropped mask", |app| {
        app.mask_editor_coverage().is_some_and(|(on, _)| on > 0)
    });
    let (on, total) = coverage(&harness);
    assert!(
        on < total,
        "left.png covers part of the picture, not {on} of {total}"
    );
    assert_eq!(
        app(&harness).pane_counts(),
        (1, 0),
        "the drop did not reach a pane"
    );

    let bad = out.join("not-a-mask.png");
    std::fs::write(&bad, b"not an image").expect("write");
    drop_on(&mut harness, "mask canvas", bad.clone());
    run_until(&mut harness, "the bad mask's message", |app| {
        !app.messages().is_empty()
    });
    let messages = app(&harness).messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].text.contains(&bad.display().to_string()),
        "{messages:?}"
    );
    assert_eq!(
        coverage(&harness).0,
        on,
        "a bad file leaves the mask as it was"
    );

    harness.key_press(egui::Key::Escape);
    harness.run_steps(2);
    assert!(
        app(&harness).mask_editor_coverage().is_none(),
        "Escape closes the editor"
    );
    assert_eq!(
        app(&harness).pane_mask(false, 0),
        None,
        "cancelling keeps no mask"
    );
}
