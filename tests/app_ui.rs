//! UI tests: the real app driven with egui_kittest, generating with the tiny reference models.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fixtures, temp_dir};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use minus::app::{MinusApp, ModelSettings, Settings};

/// A file "dropped" from the file manager.
#[derive(Debug)]
struct DroppedPath(PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

struct State {
    app: Option<MinusApp>,
    settings: Settings,
}

fn test_settings(output_dir: &Path) -> Settings {
    let models = fixtures().join("models");
    let ip = models.join("ip-adapter/models");
    let mut settings = Settings {
        models: ModelSettings {
            model: models.join("sd15").display().to_string(),
            vae: String::new(),
            ip_adapter: ip.join("ip-adapter_sd15.safetensors").display().to_string(),
            image_encoder: ip.join("image_encoder").display().to_string(),
            device: "cpu".to_string(),
            models_dir: String::new(),
        },
        output_dir: Some(output_dir.to_path_buf()),
        random_seed: false,
        ..Settings::default()
    };
    settings.request.steps = 6;
    settings.request.width = 96;
    settings.request.height = 64;
    settings.request.seed = 5;
    settings
}

fn harness(settings: Settings) -> Harness<'static, State> {
    let state = State {
        app: None,
        settings,
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_ui_state(
            |ui, state: &mut State| {
                let app = state.app.get_or_insert_with(|| {
                    MinusApp::new(ui.ctx(), state.settings.clone()).expect("engine starts")
                });
                app.show(ui);
            },
            state,
        )
}

fn app<'a>(harness: &'a Harness<'_, State>) -> &'a MinusApp {
    harness
        .state()
        .app
        .as_ref()
        .expect("app built on the first frame")
}

/// Steps the UI (in real time, as the engine works) until `done` holds for the
/// harness (and so the app and the widgets) or the timeout.
fn step_until(
    harness: &mut Harness<'_, State>,
    what: &str,
    done: impl Fn(&Harness<'_, State>) -> bool,
) {
    let started = Instant::now();
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; messages: {:?}",
            app(harness).messages()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Steps the UI until `done` holds for the app.
fn run_until(harness: &mut Harness<'_, State>, what: &str, done: impl Fn(&MinusApp) -> bool) {
    step_until(harness, what, |h| done(app(h)));
}

fn drop_on(harness: &mut Harness<'_, State>, label: &str, file: PathBuf) {
    let target = harness.get_by_label(label).rect().center();
    harness
        .input_mut()
        .events
        .push(egui::Event::PointerMoved(target));
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(DroppedPath(file)));
    harness.step();
}

fn saved_pngs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn drop_images_generate_and_see_previews_and_a_saved_result() {
    let out = temp_dir("ui-generate");
    let mut harness = harness(test_settings(&out));
    harness.step();
    drop_on(
        &mut harness,
        "Image prompt",
        fixtures().join("images/house.png"),
    );
    drop_on(
        &mut harness,
        "Negative image prompt",
        fixtures().join("images/lawn.png"),
    );
    run_until(&mut harness, "two thumbnails", |app| {
        app.pane_counts() == (1, 1)
    });

    harness.get_by_label("Generate").click();
    let frames_before = app(&harness).frames();
    run_until(&mut harness, "a step preview", |app| app.running_step() > 0);
    run_until(&mut harness, "a gallery entry", |app| {
        app.gallery_len() == 1
    });
    // Frames kept coming while the engine worked: the UI never waited on it.
    assert!(app(&harness).frames() > frames_before + 2);
    assert!(
        app(&harness).messages().is_empty(),
        "{:?}",
        app(&harness).messages()
    );

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
    let saved = out.join("saved.png");
    let request = minus::pipeline::Request {
        seed: 4242,
        steps: 13,
        prompt: "a house in winter".to_string(),
        ..minus::pipeline::Request::default()
    };
    minus::output::save_png(&saved, &image::RgbImage::new(8, 8), &request, "test").expect("save");
    let mut settings = test_settings(&out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
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
    let mut settings = test_settings(&out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
    drop_on(&mut harness, "Image prompt", corrupt);
    run_until(&mut harness, "an error message", |app| {
        !app.messages().is_empty()
    });
    assert!(app(&harness).messages()[0].contains("broken.png"));
    assert_eq!(app(&harness).pane_counts(), (0, 0));
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
    harness.get_by_label("Sweep").click();
    harness.step();
    harness.get_by_label("Run sweep").click();
    run_until(&mut harness, "the sweep", |app| app.sweep_complete());
    assert_eq!(app(&harness).gallery_len(), 2);
    harness.step();
    harness.get_by_label("Save grid").click();
    run_until(&mut harness, "the grid file", |app| {
        app.messages().iter().any(|m| m.starts_with("Grid saved"))
    });
    let grid = saved_pngs(&out)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sweep-"))
        })
        .expect("grid saved");
    let grid = image::open(grid).expect("grid image").to_rgb8();
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
    assert!(
        app(&harness).messages().is_empty(),
        "{:?}",
        app(&harness).messages()
    );
    let models = app(&harness).settings().models;
    assert!(
        models
            .model
            .contains("models--SG161222--Realistic_Vision_V4.0_noVAE"),
        "{models:?}"
    );
    assert!(
        models.image_encoder.ends_with("models/image_encoder"),
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
        app(&harness).settings().models.ip_adapter,
        adapter.display().to_string()
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

#[test]
fn restoring_a_png_keeps_each_image_weight() {
    let out = temp_dir("ui-restore-weights");
    let saved = out.join("saved.png");
    let prompt = |name: &str, weight: f64| minus::pipeline::ImagePrompt {
        weight,
        ..minus::pipeline::ImagePrompt::new(fixtures().join(name))
    };
    let request = minus::pipeline::Request {
        images: vec![
            prompt("images/house.png", 0.7),
            prompt("images/gray.jpg", 1.6),
        ],
        negative_images: vec![prompt("images/gray.jpg", 0.3)],
        seed: 31,
        ..minus::pipeline::Request::default()
    };
    minus::output::save_png(&saved, &image::RgbImage::new(8, 8), &request, "test").expect("save");
    let mut settings = test_settings(&out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
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
    assert_eq!(negative, [(0.3, true)]);
}

#[test]
fn a_png_with_unusable_settings_says_so_and_keeps_the_panes() {
    let out = temp_dir("ui-restore-invalid");
    let saved = out.join("bad-settings.png");
    let request = minus::pipeline::Request {
        ip_weight: 1e300,
        ..minus::pipeline::Request::default()
    };
    minus::output::save_png(&saved, &image::RgbImage::new(8, 8), &request, "test").expect("save");
    let mut settings = test_settings(&out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
    drop_on(
        &mut harness,
        "Negative image prompt",
        fixtures().join("images/gray.jpg"),
    );
    run_until(&mut harness, "the negative image", |app| {
        app.pane_counts() == (0, 1)
    });
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "a note", |app| !app.messages().is_empty());
    let message = &app(&harness).messages()[0];
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
    let saved = out.join("saved.png");
    let request = minus::pipeline::Request {
        images: vec![minus::pipeline::ImagePrompt::new(&fifo)],
        ..minus::pipeline::Request::default()
    };
    minus::output::save_png(&saved, &image::RgbImage::new(8, 8), &request, "test").expect("save");
    let mut settings = test_settings(&out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
    drop_on(&mut harness, "Generate", saved);
    run_until(&mut harness, "the refusal", |app| {
        app.messages()
            .iter()
            .any(|m| m.contains("not a regular file"))
    });
    assert!(
        app(&harness)
            .messages()
            .iter()
            .any(|m| m.contains(&fifo.display().to_string()))
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
    let message = &app(&harness).messages()[0];
    assert!(message.contains("bomb.png"), "{message}");
    assert!(message.contains("settings ignored"), "{message}");
}
