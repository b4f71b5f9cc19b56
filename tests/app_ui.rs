//! UI tests: the real app driven with egui_kittest, generating with the tiny reference models.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::ui::{
    app, assert_no_messages, drop_fixture_image, drop_house_and_lawn, drop_on, harness,
    harness_without_autosave, run_sweep, run_until, save_sweep_grid, saved_pngs,
    saved_settings_png, test_settings,
};
use common::{fixtures, temp_dir};
use egui_kittest::kittest::Queryable;
use minus::app::{MessageKind, MessageSource, ModelSettings};

#[test]
fn drop_images_generate_and_see_previews_and_a_saved_result() {
    let out = temp_dir("ui-generate");
    let mut harness = harness(test_settings(&out));
    harness.step();
    drop_house_and_lawn(&mut harness);

    harness.get_by_label("Generate").click();
    let frames_before = app(&harness).frames();
    run_until(&mut harness, "a step preview", |app| app.running_step() > 0);
    run_until(&mut harness, "a gallery entry", |app| {
        app.gallery_len() == 1
    });
    // Frames kept coming while the engine worked: the UI never waited on it.
    assert!(app(&harness).frames() > frames_before + 2);
    assert_no_messages(&harness);

    let saved = saved_pngs(&out);
    assert_eq!(saved.len(), 1);
    let bytes = std::fs::read(&saved[0]).expect("saved png");
    let request = minus::output::read_request(&bytes).expect("settings embedded");
    assert_eq!(request.images.len(), 1);
    assert_eq!(request.negative_images.len(), 1);
    assert_eq!(request.seed, 5);
    assert!(request.images[0].sha256.is_some());
}

#[test]
fn cancel_stops_a_long_run() {
    let out = temp_dir("ui-cancel");
    let mut settings = test_settings(&out);
    settings.request.steps = 1000;
    let mut harness = harness(settings);
    harness.step();
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the run to start", |app| {
        app.running_step() > 0
    });
    harness.get_by_label("Cancel").click();
    run_until(&mut harness, "the run to stop", |app| !app.is_busy());
    assert_eq!(app(&harness).gallery_len(), 0);
    assert!(saved_pngs(&out).is_empty());
}

#[test]
fn queued_runs_all_finish_and_two_results_compare() {
    let out = temp_dir("ui-queue");
    let mut harness = harness(test_settings(&out));
    harness.step();
    harness.get_by_label("Generate").click();
    harness.step();
    harness
        .get_by_role_and_label(egui::accesskit::Role::Slider, "CFG scale")
        .set_value_accesskit(3.0);
    harness.step();
    assert_eq!(app(&harness).settings().request.cfg, 3.0);
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "two results", |app| app.gallery_len() == 2);
    for checkbox in harness.get_all_by_label("compare").collect::<Vec<_>>() {
        checkbox.click();
    }
    harness.step();
    harness.step();
    let differences = harness
        .query_by_label_contains("Differences:")
        .expect("comparison shown");
    let text = format!("{differences:?}");
    assert!(text.contains("cfg"), "{text}");
}

#[test]
fn dropping_a_saved_png_restores_its_settings() {
    let out = temp_dir("ui-restore");
    let request = minus::pipeline::Request {
        seed: 4242,
        steps: 13,
        prompt: "a house in winter".to_string(),
        ..minus::pipeline::Request::default()
    };
    let saved = saved_settings_png(&out, "saved.png", &request);
    let mut harness = harness_without_autosave(&out);
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "settings restored", |app| {
        app.settings().request.seed == 4242
    });
    let restored = app(&harness).settings().request;
    assert_eq!(restored.steps, 13);
    assert_eq!(restored.prompt, "a house in winter");
}

#[test]
fn a_corrupt_dropped_file_shows_an_error_and_the_app_keeps_working() {
    let out = temp_dir("ui-corrupt");
    let corrupt = out.join("broken.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png").expect("write");
    let mut harness = harness_without_autosave(&out);
    drop_on(&mut harness, "Image prompt", corrupt);
    run_until(&mut harness, "an error message", |app| {
        !app.messages().is_empty()
    });
    let error = app(&harness).messages()[0].clone();
    assert!(error.text.contains("broken.png"), "{error:?}");
    assert_eq!(
        (error.kind, error.source),
        (MessageKind::Error, MessageSource::Files)
    );
    assert_eq!(app(&harness).pane_counts(), (0, 0));
    // The next image that loads takes the failed one's message away.
    drop_fixture_image(&mut harness, "Image prompt", "house.png", (1, 0));
    assert_no_messages(&harness);
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "a result after the error", |app| {
        app.gallery_len() == 1
    });
}

#[test]
fn a_sweep_runs_one_job_per_value_and_saves_a_labelled_grid() {
    let out = temp_dir("ui-sweep");
    let mut settings = test_settings(&out);
    settings.sweep.values = "0, 1.5".to_string();
    let mut harness = harness(settings);
    harness.step();
    run_sweep(&mut harness);
    assert_eq!(app(&harness).gallery_len(), 2);
    harness.step();
    let grid = save_sweep_grid(&mut harness, &out);
    // Two 96-pixel-wide results side by side, with gaps, under a label strip.
    assert!(grid.width() > 2 * 96 && grid.height() > 64);
}

/// The files of the first-run catalogue entries, served from the tiny models.
fn first_run_files() -> std::collections::HashMap<String, Vec<u8>> {
    let models = fixtures().join("models");
    let read =
        |path: PathBuf| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sd15 = models.join("sd15");
    let ip = models.join("ip-adapter/models");
    let rv = "SG161222/Realistic_Vision_V4.0_noVAE";
    let vae = "stabilityai/sd-vae-ft-mse";
    let h94 = "h94/IP-Adapter";
    [
        (
            format!("{rv}/unet/config.json"),
            sd15.join("unet/config.json"),
        ),
        (
            format!("{rv}/unet/diffusion_pytorch_model.safetensors"),
            sd15.join("unet/diffusion_pytorch_model.safetensors"),
        ),
        (
            format!("{rv}/text_encoder/config.json"),
            sd15.join("text_encoder/config.json"),
        ),
        (
            format!("{rv}/text_encoder/model.safetensors"),
            sd15.join("text_encoder/model.safetensors"),
        ),
        (format!("{vae}/config.json"), sd15.join("vae/config.json")),
        (
            format!("{vae}/diffusion_pytorch_model.safetensors"),
            sd15.join("vae/diffusion_pytorch_model.safetensors"),
        ),
        (
            format!("{h94}/models/image_encoder/config.json"),
            ip.join("image_encoder/config.json"),
        ),
        (
            format!("{h94}/models/image_encoder/model.safetensors"),
            ip.join("image_encoder/model.safetensors"),
        ),
        (
            format!("{h94}/models/ip-adapter_sd15.safetensors"),
            ip.join("ip-adapter_sd15.safetensors"),
        ),
        (
            "madebyollin/taesd/config.json".to_string(),
            models.join("taesd/config.json"),
        ),
        (
            "madebyollin/taesd/diffusion_pytorch_model.safetensors".to_string(),
            models.join("taesd/diffusion_pytorch_model.safetensors"),
        ),
    ]
    .into_iter()
    .map(|(key, path)| (key, read(path)))
    .collect()
}

#[test]
fn first_run_downloads_the_defaults_with_progress_then_generates() {
    let hub_server = common::stand_in_hub::StandInHub::start(first_run_files(), 0);
    let out = temp_dir("ui-first-run");
    let mut settings = test_settings(&out);
    settings.models = ModelSettings::default();
    let mut harness = harness(settings);
    harness.step();
    harness
        .state_mut()
        .app
        .as_mut()
        .expect("app")
        .set_hub(minus::weights::hub::Hub::new(
            &hub_server.endpoint,
            out.join("hub-cache"),
        ));
    harness
        .get_by_label_contains("Download default models")
        .click();
    run_until(&mut harness, "the download to start", |app| {
        app.is_downloading()
    });
    run_until(&mut harness, "the download to finish", |app| {
        !app.is_downloading()
    });
    assert_no_messages(&harness);
    let models = app(&harness).settings().models.paths;
    assert!(
        models
            .model
            .to_string_lossy()
            .contains("models--SG161222--Realistic_Vision_V4.0_noVAE"),
        "{models:?}"
    );
    assert!(
        models
            .image_encoder
            .as_ref()
            .is_some_and(|p| p.ends_with("models/image_encoder")),
        "{models:?}"
    );
    assert!(
        models
            .taesd
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().contains("models--madebyollin--taesd")),
        "{models:?}"
    );
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "a result from the downloaded models", |app| {
        app.gallery_len() == 1
    });
}

#[test]
fn models_are_picked_from_a_comfyui_folder() {
    let out = temp_dir("ui-comfyui");
    let comfy = out.join("ComfyUI");
    std::fs::create_dir_all(comfy.join("models/ipadapter")).expect("folders");
    let adapter = comfy.join("models/ipadapter/tiny-adapter.safetensors");
    std::fs::copy(
        fixtures().join("models/ip-adapter/models/ip-adapter_sd15.safetensors"),
        &adapter,
    )
    .expect("copy");
    let mut settings = test_settings(&out);
    settings.models.models_dir = comfy.display().to_string();
    let mut harness = harness(settings);
    harness.step();
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Find models there").click();
    let started = Instant::now();
    while harness
        .query_by_label_contains("ip-adapter: tiny-adapter.safetensors")
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "scan result not shown"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    harness
        .get_by_label_contains("ip-adapter: tiny-adapter.safetensors")
        .click();
    harness.step();
    assert_eq!(
        app(&harness).settings().models.paths.ip_adapter,
        Some(adapter)
    );
}

#[test]
fn the_gallery_reloads_saved_results_at_start() {
    let out = temp_dir("ui-gallery-reload");
    let request = minus::pipeline::Request {
        seed: 77,
        ..minus::pipeline::Request::default()
    };
    for name in ["1-1-0.png", "2-2-0.png"] {
        minus::output::save_png(
            &out.join(name),
            &image::RgbImage::new(8, 8),
            &request,
            "test",
        )
        .expect("save");
    }
    let mut harness = harness(test_settings(&out));
    run_until(&mut harness, "the saved results", |app| {
        app.gallery_len() == 2
    });
}
