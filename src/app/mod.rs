//! The egui window: image panes, settings, live preview, gallery and comparison.
//! Everything slow happens on the engine thread or the file loader.

mod browse;
mod controls;
mod downloads;
mod fields;
mod input;
mod loader;
mod messages;
mod method;
mod models_panel;
mod panes;
mod results;
mod running;
mod settings;
mod status;
mod sweep;
mod tasks;
#[cfg(feature = "test-support")]
mod test_support;
mod texture;

use std::path::PathBuf;
use std::sync::Arc;

use egui::{Key, KeyboardShortcut, Modifiers, RichText};

use crate::engine::{Command, Engine, Event, JobId};
use crate::pipeline::{PreviewKind, Request};
use crate::weights::catalogue::{IMAGE_ENCODER, TAESD};
use crate::weights::hub::Hub;
use browse::Browser;
pub use browse::{PathField, PathPicker, PickKind};
use controls::ControlAction;
use downloads::{DownloadOutcome, Downloads, use_found_model};
use input::pasted_dir;
use loader::{Loader, Target};
use messages::Messages;
use models_panel::{ModelsAction, ModelsPanel};
use panes::{Pane, PaneAction, PaneImage};
use results::{ResultAction, Results};
pub use settings::{ModelSettings, Settings};
use status::ModelStatus;
use sweep::Sweep;
pub use sweep::SweepParameter;
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
    model_status: ModelStatus,
    messages: Messages,
    /// Pane rectangles of the last frame, to route dropped files.
    pane_rects: [egui::Rect; 2],
    /// Frames drawn, so tests can see the UI keeps running.
    frames: u64,
    downloads: Downloads,
    models_panel: ModelsPanel,
    browser: Browser,
    /// Set once the engine thread is found dead.
    engine_lost: bool,
    /// A preview arrived and is drawn this frame: the engine hears so once it is.
    preview_to_acknowledge: bool,
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
            model_status: ModelStatus::default(),
            messages: Messages::default(),
            pane_rects: [egui::Rect::NOTHING; 2],
            frames: 0,
            preview_to_acknowledge: false,
            downloads: Downloads::new(Hub::from_env()),
            models_panel: ModelsPanel::new(),
            browser: Browser::default(),
            engine_lost: false,
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
        app.engine.send(Command::SetPreview(app.settings.preview));
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

    /// With no model chosen yet, uses the default models if they are in the hub cache.
    fn use_cached_defaults(&mut self) {
        if self.settings.models.paths.is_set() {
            return;
        }
        if let Some(paths) = self.downloads.cached_defaults() {
            self.settings.models.paths = paths;
        }
    }

    /// Starts downloading the default models.
    pub fn download_defaults(&mut self) {
        self.downloads.start(&self.engine);
    }

    fn load_models(&mut self) {
        match self.settings.models.load_settings() {
            Some(mut load) => {
                // TAESD is looked up in the download cache at each load, so one
                // downloaded after the models were chosen is used too.
                if load.paths.taesd.is_none() {
                    load.paths.taesd = self.downloads.cached_entry(TAESD);
                }
                self.engine.send(Command::LoadModels(load));
            }
            None => self.model_status.clear(),
        }
    }

    /// The size of TAESD, in MB, when the window should offer to download it: TAESD
    /// previews are chosen, the loaded models have none, and nothing is downloading.
    fn taesd_offer_mb(&self) -> Option<u64> {
        let loaded = self.model_status.loaded.as_ref()?;
        let wanted = self.settings.preview == PreviewKind::Taesd && !loaded.taesd;
        if !wanted || self.downloads.progress.is_some() {
            return None;
        }
        self.downloads.taesd_size_mb
    }

    /// The request the current settings and panes describe.
    fn current_request(&self) -> Request {
        let mut request = self.settings.request.clone();
        request.images = self.positive.prompts();
        request.negative_images = self.negative.prompts();
        request
    }

    /// Sends `request` to the engine; returns its job id, or `None` (with a message) if invalid.
    fn queue(&mut self, request: Request) -> Option<JobId> {
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
            self.settings.request.seed = crate::rng::random_seed();
        }
        let request = self.current_request();
        self.queue(request);
    }

    /// Queues one run per sweep value and shows them as a grid.
    pub fn run_sweep(&mut self) {
        let parameter = self.settings.sweep.parameter;
        let base = self.current_request();
        let requests = match parameter.requests(&base, &self.settings.sweep.values) {
            Ok(requests) => requests,
            Err(error) => {
                self.messages.push(error);
                return;
            }
        };
        let mut cells = Vec::with_capacity(requests.len());
        for (request, label) in requests {
            let Some(job) = self.queue(request) else {
                return;
            };
            cells.push((job, label));
        }
        self.results.sweep = Some(Sweep::new(
            format!("Sweep over {}", parameter.label()),
            cells,
        ));
    }

    /// Uses a cached adapter (and the cached image encoder where none is set) and
    /// reloads.
    fn use_adapter(&mut self, adapter: PathBuf, image_encoder: Option<PathBuf>) {
        let paths = &mut self.settings.models.paths;
        paths.ip_adapter = Some(adapter);
        if paths.image_encoder.is_none() {
            paths.image_encoder = image_encoder;
        }
        self.load_models();
    }

    /// Carries out what the Models section asked for.
    fn models_action(&mut self, action: ModelsAction) {
        match action {
            ModelsAction::None => {}
            ModelsAction::Reload => self.load_models(),
            ModelsAction::Browse(field, kind) => self.browser.open(&self.notices, field, kind),
            ModelsAction::ScanModelsDir => {
                let dir = self.settings.models.models_dir.trim().into();
                let found = self.downloads.found_sender();
                tasks::scan_models_dir(&self.notices, dir, found);
            }
            ModelsAction::ChooseAdapter(name) => match self.downloads.cached_entry(&name) {
                Some(adapter) => {
                    self.models_panel.offer = None;
                    let encoder = self.downloads.cached_entry(IMAGE_ENCODER);
                    self.use_adapter(adapter, encoder);
                }
                None => self.models_panel.offer = Some(name),
            },
            ModelsAction::DownloadAdapter(name) => {
                self.downloads.start_adapter(&self.engine, &name);
            }
        }
    }

    /// Fills the fields the file dialogs answered for.
    fn handle_browsed_paths(&mut self) {
        for (field, path) in self.browser.answers() {
            if self.settings.set_path(field, path) {
                self.load_models();
            }
        }
    }

    fn handle_engine_events(&mut self, ctx: &egui::Context) {
        if !self.engine_lost && !self.engine.is_running() {
            // Should never happen; if it does, say so instead of waiting forever.
            self.engine_lost = true;
            self.results.clear_jobs();
            self.messages.push(
                "The engine stopped unexpectedly: restart Minus (results already shown are saved)",
            );
        }
        for event in self.engine.drain_events() {
            match event {
                Event::ModelsLoading | Event::ModelsLoaded { .. } | Event::ModelsFailed { .. } => {
                    if matches!(event, Event::ModelsLoaded { .. }) {
                        // An earlier setup's error no longer applies.
                        self.messages
                            .dismiss_starting_with(status::LOAD_ERROR_PREFIX);
                    }
                    self.messages.extend(self.model_status.apply(&event));
                }
                Event::ModelProgress { .. }
                | Event::Downloaded { .. }
                | Event::DownloadFailed { .. } => match self.downloads.apply(event) {
                    DownloadOutcome::Pending => {}
                    DownloadOutcome::Ready(paths) => {
                        self.settings.models.paths = paths;
                        self.load_models();
                    }
                    DownloadOutcome::AdapterReady {
                        adapter,
                        image_encoder,
                    } => self.use_adapter(adapter, image_encoder),
                    DownloadOutcome::PreviewReady => self.load_models(),
                    DownloadOutcome::Failed(error) => self.messages.push(error),
                },
                Event::Queued { .. }
                | Event::Started { .. }
                | Event::Phase { .. }
                | Event::Step { .. }
                | Event::Finished { .. }
                | Event::Failed { .. }
                | Event::Cancelled { .. } => {
                    self.preview_to_acknowledge |= matches!(
                        event,
                        Event::Step {
                            preview: Some(_),
                            ..
                        }
                    );
                    self.model_status.apply(&event);
                    let messages = self.results.apply(event, ctx);
                    self.messages.extend(messages);
                }
            }
        }
    }

    /// Draws one frame (eframe's `App::ui` and the UI tests call this).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.frames += 1;
        let ctx = ui.ctx().clone();
        self.handle_engine_events(&ctx);
        self.handle_loaded_files(&ctx);
        self.handle_dropped_files(&ctx);
        self.handle_browsed_paths();
        if ctx.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            self.generate();
        }
        self.messages.extend(self.notices.poll());
        self.handle_paste(&ctx);
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
                // A solid bar takes its own width: egui's floating one would cover the
                // right edge of the Browse... buttons whenever the column scrolls.
                ui.spacing_mut().scroll = egui::style::ScrollStyle::solid();
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
                    ui.label(RichText::new(self.model_status.text()).small());
                    models_panel::loaded_ui(ui, self.model_status.loaded.as_ref());
                    // The first-run offer stays while the first path is typed, so the
                    // fields do not jump up under the pointer; it goes once that loads.
                    let offer_defaults = !self.settings.models.paths.is_set()
                        || (self.models_panel.is_editing() && self.model_status.loaded.is_none());
                    self.downloads.ui(ui, &self.engine, offer_defaults);
                    let action = self.models_panel.ui(ui, &mut self.settings.models);
                    self.models_action(action);
                    if let Some(model) = self.downloads.found_ui(ui) {
                        use_found_model(&mut self.settings.models.paths, model);
                        self.load_models();
                    }
                    ui.separator();
                    let preview = self.settings.preview;
                    let taesd_offer = self.taesd_offer_mb();
                    let action = controls::settings_ui(ui, &mut self.settings, taesd_offer);
                    if self.settings.preview != preview {
                        self.engine.send(Command::SetPreview(self.settings.preview));
                    }
                    match action {
                        ControlAction::None => {}
                        ControlAction::RunSweep => self.run_sweep(),
                        ControlAction::DownloadTaesd => self.downloads.start_preview(&self.engine),
                        ControlAction::Browse(field, kind) => {
                            self.browser.open(&self.notices, field, kind);
                        }
                    }
                    if ui
                        .button("Reset to defaults")
                        .on_hover_text("Restore every generation setting's default")
                        .clicked()
                    {
                        self.settings.request = Request::default();
                    }
                    ui.label(RichText::new(crate::version::VERSION_LINE).small().weak())
                        .on_hover_text("The version and the git commit it was built from");
                });
            });
        egui::Panel::bottom("gallery")
            .resizable(true)
            .default_size(150.0)
            .show(ui, |ui| {
                self.results.gallery_ui(ui);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.messages.ui(ui);
            if self.model_status.loading
                && self.results.running.is_none()
                && !self.results.queued.is_empty()
            {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading models: queued runs start when they are ready");
                });
            }
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
        // The engine takes the next preview only once this one is on screen.
        if std::mem::take(&mut self.preview_to_acknowledge) {
            self.engine.send(Command::PreviewShown);
        }
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

/// The app icon, from `assets/icon.png` (built in, so it cannot fail at run time
/// except through a broken build; then the window gets eframe's default).
fn window_icon() -> egui::IconData {
    let decoded = image::load_from_memory_with_format(
        include_bytes!("../../assets/icon.png"),
        image::ImageFormat::Png,
    );
    match decoded {
        Ok(image) => {
            let rgba = image.to_rgba8();
            egui::IconData {
                width: rgba.width(),
                height: rgba.height(),
                rgba: rgba.into_raw(),
            }
        }
        Err(_) => egui::IconData::default(),
    }
}

/// Opens the window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Minus")
            .with_inner_size([1280.0, 860.0])
            .with_drag_and_drop(true)
            .with_icon(window_icon()),
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
