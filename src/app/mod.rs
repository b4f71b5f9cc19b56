//! The egui window: image panes, settings, live preview, gallery and comparison.
//! Everything slow happens on the engine thread or the file loader.

mod controls;
mod loader;
mod panes;
mod results;
mod settings;
mod sweep;
mod tasks;
mod texture;

use std::sync::Arc;

use egui::{Key, KeyboardShortcut, Modifiers, RichText};

use crate::engine::{Command, Engine, Event};
use crate::weights::catalogue::{Catalogue, FIRST_RUN};
use crate::weights::hub::Hub;
use crate::weights::local::{LocalKind, LocalModel};
use controls::ControlAction;
use crossbeam_channel::{Receiver, Sender};
use loader::{Loaded, Loader, Target};
use panes::{Pane, PaneAction, PaneImage};
use results::{GalleryEntry, ResultAction, Results, RunningJob};
pub use settings::{ModelSettings, Settings};
use sweep::{Sweep, parse_values};
use tasks::Notices;

/// Ctrl+Enter (Cmd+Enter on macOS) starts a run.
const GENERATE_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
/// How many saved results the gallery loads at start.
const GALLERY_LIMIT: usize = 200;

/// The application state.
pub struct MinusApp {
    settings: Settings,
    positive: Pane,
    negative: Pane,
    engine: Engine,
    loader: Loader,
    notices: Notices,
    results: Results,
    /// Model loading state shown under the Generate button.
    model_status: String,
    /// Errors and notices, newest last, until dismissed.
    messages: Vec<String>,
    /// Pane rectangles of the last frame, to route dropped files.
    pane_rects: [egui::Rect; 2],
    /// Frames drawn, so tests can see the UI keeps running.
    frames: u64,
    /// Where default models are downloaded from and cached.
    hub: Hub,
    /// The running download of the defaults, if any.
    download: Option<DownloadState>,
    /// Approximate size of the first-run download, read from the catalogue once.
    defaults_size_mb: u64,
    /// Set once the engine thread is found dead.
    engine_lost: bool,
    /// Files found in the ComfyUI/A1111 folder, and the channel the scan answers on.
    found_models: Vec<LocalModel>,
    found_channel: (Sender<Vec<LocalModel>>, Receiver<Vec<LocalModel>>),
}

/// Progress of the defaults' download, as last reported.
struct DownloadState {
    file: String,
    bytes: u64,
    total: Option<u64>,
    bytes_per_sec: f64,
}

impl MinusApp {
    /// Builds the app with `settings`, starting the engine and loading models and gallery.
    pub fn new(ctx: &egui::Context, settings: Settings) -> std::io::Result<Self> {
        let repaint = ctx.clone();
        let engine = Engine::spawn(Arc::new(move || repaint.request_repaint()))?;
        let loader = Loader::new(ctx);
        let notices = Notices::new(ctx);
        let mut app = Self {
            positive: Pane {
                title: "Image prompt",
                tooltip: "Images you want: they condition the guided half",
                images: settings
                    .positive
                    .iter()
                    .map(PaneImage::from_saved)
                    .collect(),
            },
            negative: Pane {
                title: "Negative image prompt",
                tooltip: "Images you do not want: they replace the unconditioned half",
                images: settings
                    .negative
                    .iter()
                    .map(PaneImage::from_saved)
                    .collect(),
            },
            settings,
            engine,
            loader,
            notices,
            results: Results {
                split: 0.5,
                ..Results::default()
            },
            model_status: "No models loaded: set a model under Models".to_string(),
            messages: Vec::new(),
            pane_rects: [egui::Rect::NOTHING; 2],
            frames: 0,
            hub: Hub::from_env(),
            download: None,
            engine_lost: false,
            defaults_size_mb: Catalogue::built_in()
                .map(|c| {
                    c.entries
                        .iter()
                        .filter(|e| FIRST_RUN.contains(&e.name.as_str()))
                        .map(|e| e.approx_mb)
                        .sum()
                })
                .unwrap_or(0),
            found_models: Vec::new(),
            found_channel: crossbeam_channel::unbounded(),
        };
        app.use_cached_defaults();
        for (pane, target) in [
            (&app.positive, Target::Positive),
            (&app.negative, Target::Negative),
        ] {
            let paths = pane.images.iter().map(|i| i.path.clone()).collect();
            app.loader.load(paths, target);
        }
        if let Some(dir) = &app.settings.output_dir {
            app.loader.scan_gallery(dir, GALLERY_LIMIT);
        }
        app.load_models();
        Ok(app)
    }

    /// The current settings, with the panes' images.
    pub fn settings(&self) -> Settings {
        let mut settings = self.settings.clone();
        settings.positive = self.positive.images.iter().map(PaneImage::saved).collect();
        settings.negative = self.negative.images.iter().map(PaneImage::saved).collect();
        settings
    }

    /// The settings for direct changes (tests, restore).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Number of images in the positive and the negative pane.
    pub fn pane_counts(&self) -> (usize, usize) {
        (self.positive.images.len(), self.negative.images.len())
    }

    /// Number of finished results in the gallery.
    pub fn gallery_len(&self) -> usize {
        self.results.gallery.len()
    }

    /// Errors and notices currently shown.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// Number of frames drawn so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether a job is running or queued.
    pub fn is_busy(&self) -> bool {
        self.results.running.is_some() || !self.results.queued.is_empty()
    }

    /// Steps reported by the running job (0 when idle).
    pub fn running_step(&self) -> usize {
        self.results.running.as_ref().map_or(0, |job| job.step)
    }

    /// Replaces the hub (tests point it at a stand-in server).
    pub fn set_hub(&mut self, hub: Hub) {
        self.hub = hub;
    }

    /// Whether the default models are being downloaded.
    pub fn is_downloading(&self) -> bool {
        self.download.is_some()
    }

    /// With no model chosen yet, uses the default models if they are in the hub cache.
    fn use_cached_defaults(&mut self) {
        if !self.settings.models.model.is_empty() {
            return;
        }
        let cached = Catalogue::built_in()
            .ok()
            .and_then(|catalogue| catalogue.cached_model_paths(&self.hub, "ip-adapter"));
        if let Some(paths) = cached {
            self.settings.models.set_paths(&paths);
        }
    }

    /// Starts downloading the default models.
    pub fn download_defaults(&mut self) {
        self.engine.send(Command::DownloadDefaults {
            hub: self.hub.clone(),
            adapter: "ip-adapter".to_string(),
        });
        self.download = Some(DownloadState {
            file: "starting".to_string(),
            bytes: 0,
            total: None,
            bytes_per_sec: 0.0,
        });
    }

    fn download_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(state) = &self.download {
            let fraction = state
                .total
                .map_or(0.0, |t| state.bytes as f32 / t.max(1) as f32);
            let total = state
                .total
                .map_or("?".to_string(), |t| format!("{:.0}", t as f64 / 1e6));
            ui.add(egui::ProgressBar::new(fraction).text(format!(
                "{}: {:.0}/{total} MB, {:.1} MB/s",
                state.file,
                state.bytes as f64 / 1e6,
                state.bytes_per_sec / 1e6
            )));
            if ui
                .button("Cancel download")
                .on_hover_text("Stop; the download resumes where it stopped next time")
                .clicked()
            {
                self.engine.send(Command::CancelDownload);
            }
        } else if self.settings.models.model.is_empty() {
            let size_mb = self.defaults_size_mb;
            ui.label("No models yet: download the defaults, or set your own under Models.");
            if ui
                .button(format!("Download default models (about {:.1} GB)", size_mb as f64 / 1000.0))
                .on_hover_text("Realistic Vision V4, sd-vae-ft-mse, the IP-Adapter and its image encoder, into the Hugging Face cache")
                .clicked()
            {
                self.download_defaults();
            }
        }
    }

    /// Files found in the ComfyUI/A1111 folder, each with a button to use it.
    fn found_models_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(found) = self.found_channel.1.try_iter().last() {
            self.found_models = found;
        }
        if self.found_models.is_empty() {
            return;
        }
        let mut chosen = None;
        egui::CollapsingHeader::new(format!("Found {} model files", self.found_models.len()))
            .default_open(true)
            .show(ui, |ui| {
                for model in &self.found_models {
                    let name = model
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let usable = model.kind != LocalKind::ControlNet;
                    let button = ui.add_enabled(
                        usable,
                        egui::Button::new(format!("{}: {name}", model.kind.label())).small(),
                    );
                    if button
                        .on_hover_text(model.path.display().to_string())
                        .clicked()
                    {
                        chosen = Some(model.clone());
                    }
                }
            });
        if let Some(model) = chosen {
            let path = model.path.display().to_string();
            let models = &mut self.settings.models;
            match model.kind {
                LocalKind::Checkpoint => models.model = path,
                LocalKind::IpAdapter => models.ip_adapter = path,
                LocalKind::ImageEncoder => models.image_encoder = path,
                LocalKind::Vae => models.vae = path,
                LocalKind::ControlNet => {}
            }
            self.messages
                .push("Model chosen: press Load models to use it".to_string());
        }
    }

    fn load_models(&mut self) {
        match self.settings.models.load_settings() {
            Some(load) => self.engine.send(Command::LoadModels(load)),
            None => self.model_status = "No models loaded: set a model under Models".to_string(),
        }
    }

    /// The request the current settings and panes describe.
    fn current_request(&self) -> crate::pipeline::Request {
        let mut request = self.settings.request.clone();
        request.images = self.positive.prompts();
        request.negative_images = self.negative.prompts();
        request
    }

    /// Sends `request` to the engine; returns its job id, or `None` (with a message) if invalid.
    fn queue(&mut self, request: crate::pipeline::Request) -> Option<crate::engine::JobId> {
        if let Err(error) = request.validate() {
            self.messages.push(error.to_string());
            return None;
        }
        let job = self.engine.next_job_id();
        self.engine.send(Command::Generate {
            job,
            request,
            output_dir: self.settings.output_dir.clone(),
        });
        Some(job)
    }

    /// Queues a run with the current settings.
    pub fn generate(&mut self) {
        if self.settings.random_seed {
            self.settings.request.seed = crate::pipeline::noise::random_seed();
        }
        let request = self.current_request();
        self.queue(request);
    }

    /// Queues one run per sweep value and shows them as a grid.
    pub fn run_sweep(&mut self) {
        let values = match parse_values(&self.settings.sweep.values) {
            Ok(values) => values,
            Err(error) => {
                self.messages.push(error);
                return;
            }
        };
        let parameter = self.settings.sweep.parameter;
        let base = self.current_request();
        let mut cells = Vec::with_capacity(values.len());
        for value in values {
            let Some(job) = self.queue(parameter.apply(&base, value)) else {
                return;
            };
            cells.push((job, format!("{} {value}", parameter.label())));
        }
        self.results.sweep = Some(Sweep::new(
            format!("Sweep over {}", parameter.label()),
            cells,
        ));
    }

    /// Whether the sweep grid is complete (every run finished).
    pub fn sweep_complete(&self) -> bool {
        self.results.sweep.as_ref().is_some_and(Sweep::is_complete)
    }

    fn handle_engine_events(&mut self, ctx: &egui::Context) {
        if !self.engine_lost && !self.engine.is_running() {
            // Should never happen; if it does, say so instead of waiting forever.
            self.engine_lost = true;
            self.results.running = None;
            self.results.queued.clear();
            self.messages.push(
                "The engine stopped unexpectedly: restart Minus (results already shown are saved)"
                    .to_string(),
            );
        }
        for event in self.engine.drain_events() {
            match event {
                Event::ModelsLoading => self.model_status = "Loading models...".to_string(),
                Event::ModelsLoaded {
                    elapsed_secs,
                    device,
                } => {
                    self.model_status = format!("Models loaded on {device} in {elapsed_secs:.1}s");
                }
                Event::ModelsFailed { error } => {
                    self.model_status = "Models failed to load".to_string();
                    self.messages.push(format!("Models: {error}"));
                }
                Event::ModelProgress {
                    name,
                    file,
                    bytes,
                    total,
                    bytes_per_sec,
                } => {
                    self.download = Some(DownloadState {
                        file: format!("{name} ({file})"),
                        bytes,
                        total,
                        bytes_per_sec,
                    });
                }
                Event::DownloadsReady { paths } => {
                    self.download = None;
                    self.settings.models.set_paths(&paths);
                    self.load_models();
                }
                Event::DownloadFailed { error } => {
                    self.download = None;
                    self.messages.push(error);
                }
                Event::Queued { job } => self.results.queued.push(job),
                Event::Started { job } => {
                    self.results.queued.retain(|q| *q != job);
                    self.results.running = Some(RunningJob {
                        id: job,
                        step: 0,
                        total: 0,
                        elapsed_secs: 0.0,
                        preview: None,
                    });
                }
                Event::Step {
                    job,
                    step,
                    total,
                    preview,
                    elapsed_secs,
                } => {
                    if let Some(running) = self.results.running.as_mut().filter(|r| r.id == job) {
                        running.step = step;
                        running.total = total;
                        running.elapsed_secs = elapsed_secs;
                        let color = egui::ColorImage::from_rgb(
                            [preview.width() as usize, preview.height() as usize],
                            preview.as_raw(),
                        );
                        match &mut running.preview {
                            Some(texture) => texture.set(color, egui::TextureOptions::LINEAR),
                            None => {
                                running.preview = Some(ctx.load_texture(
                                    "preview",
                                    color,
                                    egui::TextureOptions::LINEAR,
                                ));
                            }
                        }
                    }
                }
                Event::Finished {
                    job,
                    images,
                    request,
                    saved,
                    elapsed_secs,
                } => {
                    self.finish_job(job);
                    for (i, image) in images.iter().enumerate() {
                        let path = saved.get(i).and_then(|s| s.as_ref().ok()).cloned();
                        let texture = texture::upload(ctx, &format!("result {} {i}", job.0), image);
                        if i == 0
                            && let Some(sweep) = &mut self.results.sweep
                        {
                            sweep.record(job, image.clone(), texture.clone());
                        }
                        let entry = GalleryEntry {
                            texture,
                            image: Some(image.clone()),
                            request: Some((*request).clone()),
                            path,
                            compare: false,
                        };
                        self.results.gallery.insert(0, entry);
                    }
                    self.results.selected = Some(0);
                    for error in saved.iter().filter_map(|s| s.as_ref().err()) {
                        self.messages.push(format!(
                            "Could not save a result (it is still in the gallery): {error}"
                        ));
                    }
                    self.model_status = format!("Last run: {elapsed_secs:.1}s");
                }
                Event::Failed { job, error } => {
                    self.finish_job(job);
                    self.messages.push(format!("Run {} failed: {error}", job.0));
                }
                Event::Cancelled { job } => self.finish_job(job),
            }
        }
    }

    fn finish_job(&mut self, job: crate::engine::JobId) {
        self.results.queued.retain(|q| *q != job);
        if self.results.running.as_ref().is_some_and(|r| r.id == job) {
            self.results.running = None;
        }
    }

    fn handle_loaded_files(&mut self, ctx: &egui::Context) {
        for Loaded {
            target,
            path,
            result,
            note,
        } in self.loader.poll()
        {
            self.messages.extend(note);
            let (image, request) = match result {
                Ok(loaded) => loaded,
                Err(error) => {
                    // A remembered image that is gone or broken leaves its pane.
                    for pane in [&mut self.positive, &mut self.negative] {
                        pane.images
                            .retain(|i| i.path != path || i.thumbnail.is_some());
                    }
                    if target != Target::Gallery {
                        self.messages.push(error);
                    }
                    continue;
                }
            };
            let target = match (target, request) {
                (Target::Window, Some(request)) => {
                    if self.restore(request) {
                        self.messages
                            .push(format!("Settings restored from {}", path.display()));
                    }
                    continue;
                }
                (Target::Gallery, request) => {
                    let thumb = texture::thumbnail(&image, 512);
                    self.results.gallery.insert(
                        0,
                        GalleryEntry {
                            texture: texture::upload(ctx, &path.display().to_string(), &thumb),
                            image: None,
                            request,
                            path: Some(path),
                            compare: false,
                        },
                    );
                    continue;
                }
                (Target::Window, None) => Target::Positive,
                (other, _) => other,
            };
            let pane = if target == Target::Negative {
                &mut self.negative
            } else {
                &mut self.positive
            };
            let thumbnail = texture::upload(
                ctx,
                &path.display().to_string(),
                &texture::thumbnail(&image, 200),
            );
            // Images remembered from the last session wait in the pane for their thumbnail.
            let waiting = pane
                .images
                .iter_mut()
                .find(|i| i.path == path && i.thumbnail.is_none());
            let entry = match waiting {
                Some(entry) => entry,
                None => {
                    pane.images.push(PaneImage::new(path));
                    let last = pane.images.len() - 1;
                    &mut pane.images[last]
                }
            };
            entry.thumbnail = Some(thumbnail);
        }
    }

    /// Applies a saved request (the panes take its images with their weights); returns
    /// false, with a message and nothing changed, when the request is invalid.
    fn restore(&mut self, request: crate::pipeline::Request) -> bool {
        if let Err(error) = request.validate() {
            self.messages
                .push(format!("Settings not restored: {error}"));
            return false;
        }
        let positive = self.positive.restore(&request.images);
        let negative = self.negative.restore(&request.negative_images);
        self.loader.load(positive, Target::Positive);
        self.loader.load(negative, Target::Negative);
        self.settings.request = request;
        self.settings.random_seed = false;
        true
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let (dropped, pointer) =
            ctx.input(|i| (i.raw.dropped_files.clone(), i.pointer.latest_pos()));
        if dropped.is_empty() {
            return;
        }
        let target = match pointer {
            Some(pos) if self.pane_rects[0].contains(pos) => Target::Positive,
            Some(pos) if self.pane_rects[1].contains(pos) => Target::Negative,
            _ => Target::Window,
        };
        let paths = dropped
            .iter()
            .map(|file| file.path().to_path_buf())
            .collect();
        self.loader.load(paths, target);
    }

    /// Draws one frame (eframe's `App::ui` and the UI tests call this).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.frames += 1;
        let ctx = ui.ctx().clone();
        self.handle_engine_events(&ctx);
        self.handle_loaded_files(&ctx);
        self.handle_dropped_files(&ctx);
        if ctx.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            self.generate();
        }
        self.messages.extend(self.notices.poll());
        let typing = ctx.memory(|m| m.focused().is_some());
        let paste_pressed = ctx.input(|i| {
            i.events.iter().any(|e| {
                matches!(e, egui::Event::Paste(_))
                    || matches!(e, egui::Event::Key { key: Key::V, pressed: true, modifiers, .. } if modifiers.command)
            })
        });
        if paste_pressed && !typing {
            tasks::paste_image(&self.notices, &self.loader, Target::Positive, pasted_dir());
        }
        if ctx.input(|i| i.key_pressed(Key::Escape))
            && let Some(job) = &self.results.running
        {
            self.engine.send(Command::Cancel(job.id));
        }
        let hovering_files = ctx.input(|i| !i.raw.hovered_files.is_empty());
        let pointer = ctx.input(|i| i.pointer.latest_pos());

        egui::Panel::left("settings")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    let generate = ui.add_sized(
                        [ui.available_width(), 36.0],
                        egui::Button::new(RichText::new("Generate").heading()),
                    );
                    if generate
                        .on_hover_text("Queue a run with these settings (Ctrl+Enter)")
                        .clicked()
                    {
                        self.generate();
                    }
                    ui.label(RichText::new(&self.model_status).small());
                    self.download_ui(ui);
                    ui.separator();
                    match controls::settings_ui(ui, &mut self.settings) {
                        ControlAction::None => {}
                        ControlAction::LoadModels => self.load_models(),
                        ControlAction::RunSweep => self.run_sweep(),
                        ControlAction::ScanModelsDir => {
                            let dir = self.settings.models.models_dir.trim().into();
                            tasks::scan_models_dir(
                                &self.notices,
                                dir,
                                self.found_channel.0.clone(),
                            );
                        }
                    }
                    self.found_models_ui(ui);
                    if ui
                        .button("Reset to defaults")
                        .on_hover_text("Restore every generation setting's default")
                        .clicked()
                    {
                        self.settings.request = crate::pipeline::Request::default();
                    }
                });
            });
        egui::Panel::bottom("gallery")
            .resizable(true)
            .default_size(150.0)
            .show(ui, |ui| {
                self.results.gallery_ui(ui);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.messages_ui(ui);
            ui.columns(2, |columns| {
                let hovered =
                    |rect: egui::Rect| hovering_files && pointer.is_some_and(|p| rect.contains(p));
                let fit = self.settings.request.fit;
                let (rect, positive_action) =
                    self.positive
                        .ui(&mut columns[0], hovered(self.pane_rects[0]), fit);
                self.pane_rects[0] = rect;
                let (rect, negative_action) =
                    self.negative
                        .ui(&mut columns[1], hovered(self.pane_rects[1]), fit);
                self.pane_rects[1] = rect;
                for (action, target) in [
                    (positive_action, Target::Positive),
                    (negative_action, Target::Negative),
                ] {
                    match action {
                        PaneAction::None => {}
                        PaneAction::Add => tasks::pick_images(&self.notices, &self.loader, target),
                        PaneAction::Paste => {
                            tasks::paste_image(&self.notices, &self.loader, target, pasted_dir());
                        }
                    }
                }
            });
            ui.separator();
            match self.results.main_ui(ui) {
                ResultAction::None => {}
                ResultAction::Cancel(job) => self.engine.send(Command::Cancel(job)),
                ResultAction::UseSettings(request) => {
                    self.restore(request);
                }
                ResultAction::UseAsImage(path) => self.loader.load(vec![path], Target::Positive),
                ResultAction::UseAsNegative(path) => self.loader.load(vec![path], Target::Negative),
                ResultAction::SaveAs(source) => tasks::save_as(&self.notices, source),
                ResultAction::Copy(source) => tasks::copy_image(&self.notices, source),
                ResultAction::OpenFolder(dir) => tasks::open_folder(&self.notices, &dir),
                ResultAction::SaveGrid => self.save_sweep_grid(),
                ResultAction::CloseSweep => self.results.sweep = None,
            }
        });
    }

    fn save_sweep_grid(&mut self) {
        let Some(sweep) = &self.results.sweep else {
            return;
        };
        let Some(dir) = self.settings.output_dir.clone() else {
            self.messages
                .push("Set a folder under \"Save results to\" to save grids".to_string());
            return;
        };
        let cells = sweep
            .cells
            .iter()
            .filter_map(|cell| Some((cell.label.clone(), cell.image.as_ref()?.0.clone())))
            .collect();
        let stamp = crate::output::unix_secs();
        tasks::save_grid(&self.notices, cells, dir, format!("sweep-{stamp}"));
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = None;
        for (i, message) in self.messages.iter().enumerate() {
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().warn_fg_color, message);
                if ui.small_button("dismiss").clicked() {
                    dismiss = Some(i);
                }
            });
        }
        if let Some(i) = dismiss {
            self.messages.remove(i);
        }
    }
}

impl eframe::App for MinusApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Ok(json) = serde_json::to_string(&self.settings()) {
            storage.set_string(settings::STORAGE_KEY, json);
        }
    }
}

/// Where pasted images are stored (prompts refer to files).
fn pasted_dir() -> std::path::PathBuf {
    directories::ProjectDirs::from("", "", "Minus")
        .map(|dirs| dirs.data_dir().join("pasted"))
        .unwrap_or_else(|| std::env::temp_dir().join("minus-pasted"))
}

/// Opens the window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Minus")
            .with_inner_size([1280.0, 860.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Minus",
        options,
        Box::new(|cc| {
            let settings = cc
                .storage
                .and_then(|s| s.get_string(settings::STORAGE_KEY))
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default();
            Ok(Box::new(MinusApp::new(&cc.egui_ctx, settings)?))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
