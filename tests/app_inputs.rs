//! UI tests of what comes into the window: pasted images, restored settings, hostile
//! files in restored settings and in the output folder.

mod common;

use std::sync::Arc;

use common::ui::{
    app, assert_no_messages, drop_fixture_image, drop_on, harness, harness_without_autosave,
    run_until, saved_settings_png, test_settings,
};
use common::{fixtures, temp_dir};

#[test]
fn ctrl_v_with_an_image_on_the_clipboard_adds_an_image_prompt() {
    let out = temp_dir("ui-paste-image");
    let mut harness = harness(test_settings(&out));
    harness.step();
    // What egui 0.37 sends for Ctrl+V when the clipboard holds only an image.
    let pixels = vec![egui::Color32::from_rgb(200, 30, 40); 24 * 16];
    let image = egui::ColorImage::new([24, 16], pixels);
    harness.event(egui::Event::PasteImage(Arc::new(image)));
    run_until(
        &mut harness,
        "the pasted image in the image prompt",
        |app| app.pane_counts() == (1, 0),
    );
    assert_no_messages(&harness);
}

#[test]
fn restoring_a_png_keeps_each_image_weight_and_on_off_state() {
    let out = temp_dir("ui-restore-weights");
    let prompt = |name: &str, weight: f64| minus::pipeline::ImagePrompt {
        weight,
        ..minus::pipeline::ImagePrompt::new(fixtures().join(name))
    };
    let request = minus::pipeline::Request {
        images: vec![
            prompt("images/house.png", 0.7),
            prompt("images/gray.jpg", 1.6),
        ],
        negative_images: vec![minus::pipeline::ImagePrompt {
            enabled: false,
            ..prompt("images/gray.jpg", 0.3)
        }],
        seed: 31,
        ..minus::pipeline::Request::default()
    };
    let saved = saved_settings_png(&out, "saved.png", &request);
    let mut harness = harness_without_autosave(&out);
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "settings restored", |app| {
        app.settings().request.seed == 31 && app.pane_counts() == (2, 1)
    });
    let settings = app(&harness).settings();
    let positive: Vec<(f64, bool)> = settings
        .positive
        .iter()
        .map(|i| (i.weight, i.enabled))
        .collect();
    let negative: Vec<(f64, bool)> = settings
        .negative
        .iter()
        .map(|i| (i.weight, i.enabled))
        .collect();
    assert_eq!(positive, [(0.7, true), (1.6, true)]);
    assert_eq!(negative, [(0.3, false)]);
}

#[test]
fn a_png_with_unusable_settings_says_so_and_keeps_the_panes() {
    let out = temp_dir("ui-restore-invalid");
    let request = minus::pipeline::Request {
        ip_weight: 1e300,
        ..minus::pipeline::Request::default()
    };
    let saved = saved_settings_png(&out, "bad-settings.png", &request);
    let mut harness = harness_without_autosave(&out);
    drop_fixture_image(&mut harness, "Negative image prompt", "gray.jpg", (0, 1));
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "a note", |app| !app.messages().is_empty());
    let message = app(&harness).messages()[0].text.clone();
    assert!(message.contains("bad-settings.png"), "{message}");
    assert!(
        message.contains("image prompt weight must be a number"),
        "{message}"
    );
    // The panes are kept; the PNG is used as a prompt image like any other picture.
    run_until(&mut harness, "the PNG as an image", |app| {
        app.pane_counts() == (1, 1)
    });
    assert_eq!(app(&harness).settings().request.ip_weight, 1.0);
}

#[cfg(unix)]
#[test]
fn restored_image_paths_that_are_not_regular_files_are_refused() {
    let out = temp_dir("ui-restore-fifo");
    let fifo = out.join("fifo.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let request = minus::pipeline::Request {
        images: vec![minus::pipeline::ImagePrompt::new(&fifo)],
        ..minus::pipeline::Request::default()
    };
    let saved = saved_settings_png(&out, "saved.png", &request);
    let mut harness = harness_without_autosave(&out);
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "the refusal", |app| {
        app.messages()
            .iter()
            .any(|m| m.text.contains("not a regular file"))
    });
    assert!(
        app(&harness)
            .messages()
            .iter()
            .any(|m| m.text.contains(&fifo.display().to_string()))
    );
    assert_eq!(app(&harness).pane_counts(), (0, 0));
}

#[test]
fn a_gallery_png_whose_settings_inflate_too_far_is_shown_with_a_note() {
    let out = temp_dir("ui-gallery-bomb");
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 4, 4);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().expect("header");
    // 64 MiB of text in well under a megabyte of file.
    let mut chunk = png::text_metadata::ITXtChunk::new("minus-request", " ".repeat(64 << 20));
    chunk.compressed = true;
    writer.write_text_chunk(&chunk).expect("text chunk");
    writer.write_image_data(&[0; 48]).expect("pixels");
    writer.finish().expect("finish");
    std::fs::write(out.join("bomb.png"), &bytes).expect("write");
    let mut harness = harness(test_settings(&out));
    run_until(&mut harness, "the bomb in the gallery with a note", |app| {
        app.gallery_len() == 1 && !app.messages().is_empty()
    });
    let message = app(&harness).messages()[0].text.clone();
    assert!(message.contains("bomb.png"), "{message}");
    assert!(message.contains("settings ignored"), "{message}");
}
