//! The window driven with egui_kittest: a harness around the real app and steps
//! that wait for the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use minus::app::{MinusApp, ModelSettings, Settings};
use minus::device::DeviceChoice;
use minus::weights::ModelPaths;

use super::fixtures;

/// A file "dropped" from the file manager.
#[derive(Debug)]
pub struct DroppedPath(pub PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// The harness's state: the app, built on the first frame from `settings`.
pub struct State {
    pub app: Option<MinusApp>,
    pub settings: Settings,
}

pub fn test_settings(output_dir: &Path) -> Settings {
    let models = fixtures().join("models");
    let ip = models.join("ip-adapter/models");
    let mut settings = Settings {
        models: ModelSettings {
            paths: ModelPaths {
                model: models.join("sd15"),
                ip_adapter: Some(ip.join("ip-adapter_sd15.safetensors")),
                image_encoder: Some(ip.join("image_encoder")),
                ..ModelPaths::default()
            },
            device: DeviceChoice::Cpu,
            ..ModelSettings::default()
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

pub fn harness(settings: Settings) -> Harness<'static, State> {
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

pub fn app<'a>(harness: &'a Harness<'_, State>) -> &'a MinusApp {
    harness
        .state()
        .app
        .as_ref()
        .expect("app built on the first frame")
}

/// The window behind the harness, to change.
pub fn app_mut<'a>(harness: &'a mut Harness<'_, State>) -> &'a mut MinusApp {
    harness.state_mut().app.as_mut().expect("app built")
}

/// Steps the UI (in real time, as the engine works) until `done` holds for the
/// harness (and so the app and the widgets) or the timeout.
pub fn step_until(
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
pub fn run_until(harness: &mut Harness<'_, State>, what: &str, done: impl Fn(&MinusApp) -> bool) {
    step_until(harness, what, |h| done(app(h)));
}

pub fn drop_on(harness: &mut Harness<'_, State>, label: &str, file: PathBuf) {
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

pub fn saved_pngs(dir: &Path) -> Vec<PathBuf> {
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

/// Saves `request` into `out/name` as Minus saves results, for dropping on the window.
pub fn saved_settings_png(out: &Path, name: &str, request: &minus::pipeline::Request) -> PathBuf {
    let saved = out.join(name);
    minus::output::save_png(&saved, &image::RgbImage::new(8, 8), request, "test").expect("save");
    saved
}

/// A harness on `out`'s settings with autosave off, after its first frame.
pub fn harness_without_autosave(out: &Path) -> Harness<'static, State> {
    let mut settings = test_settings(out);
    settings.output_dir = None;
    let mut harness = harness(settings);
    harness.step();
    harness
}

/// Presses "Save grid" on the finished sweep and reads the grid file it writes into `out`.
pub fn save_sweep_grid(harness: &mut Harness<'_, State>, out: &Path) -> image::RgbImage {
    harness.get_by_label("Save grid").click();
    run_until(harness, "the grid file", |app| {
        app.messages()
            .iter()
            .any(|m| m.text.starts_with("Grid saved"))
    });
    let grid = saved_pngs(out)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sweep-"))
        })
        .expect("grid saved");
    image::open(grid).expect("grid image").to_rgb8()
}

/// Drops the fixture image `name` on the pane titled `pane` and waits until the panes
/// hold `counts` images (positive, negative).
pub fn drop_fixture_image(
    harness: &mut Harness<'_, State>,
    pane: &str,
    name: &str,
    counts: (usize, usize),
) {
    drop_on(harness, pane, fixtures().join("images").join(name));
    run_until(harness, name, |app| app.pane_counts() == counts);
}

/// Drops the house on the image prompt and the lawn on the negative pane, and waits
/// until both panes hold them.
pub fn drop_house_and_lawn(harness: &mut Harness<'_, State>) {
    drop_on(harness, "Image prompt", fixtures().join("images/house.png"));
    drop_fixture_image(harness, "Negative image prompt", "lawn.png", (1, 1));
}

/// Fails with the messages when the window shows any.
pub fn assert_no_messages(harness: &Harness<'_, State>) {
    let messages = app(harness).messages();
    assert!(messages.is_empty(), "{messages:?}");
}

/// Opens the Sweep section, presses "Run sweep" and waits for the whole sweep.
pub fn run_sweep(harness: &mut Harness<'_, State>) {
    harness.get_by_label("Sweep").click();
    harness.step();
    harness.get_by_label("Run sweep").click();
    run_until(harness, "the sweep", |app| app.sweep_complete());
}
