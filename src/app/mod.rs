//! The egui window: image panes, settings, live preview, gallery and comparison.
//! Everything slow happens on the engine thread or the file loader.

mod browse;
mod compare;
mod controls;
mod downloads;
mod events;
mod fast;
mod fields;
mod frame;
mod input;
mod loader;
mod lora_restore;
mod loras;
mod mask_canvas;
mod mask_editor;
mod mask_view;
mod masks;
mod messages;
mod method;
mod models_panel;
mod panes;
mod results;
mod running;
mod settings;
mod status;
mod sweep;
mod sweep_masks;
mod sweep_values;
mod tasks;
#[cfg(feature = "test-support")]
mod test_support;
mod texture;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use egui::{Key, KeyboardShortcut, Modifiers};

use crate::engine::{Command, Engine, JobId};
use crate::models::family::ModelFamily;
use crate::pipeline::{PreviewKind, Request};
use crate::weights::catalogue::{TAESD, TAESDXL, preview_decoder_for};
use crate::weights::family::peek_family;
use crate::weights::hub::Hub;
use browse::Browser;
pub use browse::{PathField, PathPicker, PickKind};
use downloads::Downloads;
use loader::{Loader, Target};
use messages::Messages;
pub use messages::{Message, MessageKind, MessageSource};
use models_panel::{ModelsAction, ModelsPanel};
use panes::{Pane, PaneImage};
use results::Results;
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
    /// The mask editor, while it is open.
    mask_editor: Option<mask_editor::MaskEditor>,
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
            mask_editor: None,
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
        let cached = ModelFamily::ALL
            .into_iter()
            .find_map(|family| self.downloads.cached_defaults(family));
        if let Some(paths) = cached {
            self.settings.models.paths = paths;
        }
    }

    /// Starts downloading the default (SD 1.5) models.
    pub fn download_defaults(&mut self) {
        self.downloads.start(&self.engine, ModelFamily::Sd15);
    }

    fn load_models(&mut self) {
        match self.settings.models.load_settings() {
            Some(mut load) => {
                // The preview decoder is looked up in the download cache at each load,
                // so one downloaded after the models were chosen is used too, and the
                // one made for the model's family (TAESD or TAESDXL) is taken.
                let catalogue_decoder = [TAESD, TAESDXL]
                    .map(|name| self.downloads.cached_entry(name))
                    .contains(&load.paths.taesd);
                if load.paths.taesd.is_none() || catalogue_decoder {
                    let family = peek_family(&load.paths.model);
                    load.paths.taesd = self.downloads.cached_entry(preview_decoder_for(family));
                }
                self.engine.send(Command::LoadModels(load));
            }
            None => self.model_status.clear(),
        }
    }

    /// The loaded model's family (SD 1.5 until a model loads).
    fn loaded_family(&self) -> ModelFamily {
        self.model_status
            .loaded
            .as_ref()
            .map_or(ModelFamily::Sd15, |loaded| loaded.family)
    }

    /// The size of TAESD, in MB, when the window should offer to download it: TAESD
    /// previews are chosen, the loaded models have none, and nothing is downloading.
    fn taesd_offer_mb(&self) -> Option<u64> {
        let loaded = self.model_status.loaded.as_ref()?;
        let wanted = self.settings.preview == PreviewKind::Taesd && !loaded.taesd;
        if !wanted || self.downloads.progress.is_some() {
            return None;
        }
        Downloads::preview_size_mb(loaded.family)
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
            let error = Message::error(MessageSource::Generation, error.to_string());
            self.messages.push(error);
            return None;
        }
        let job = self.engine.next_job_id();
        self.results.attempts.insert(job, Instant::now());
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
                self.messages
                    .push(Message::error(MessageSource::Sweep, error));
                return;
            }
        };
        self.messages
            .succeeded(MessageSource::Sweep, Instant::now());
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
                    let encoder = self.downloads.cached_encoder_for(&name);
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

    fn save_sweep_grid(&mut self) {
        let Some(sweep) = &self.results.sweep else {
            return;
        };
        let Some(dir) = self.settings.output_dir.clone() else {
            self.messages.push(Message::error(
                MessageSource::Grid,
                "Set a folder under \"Save results to\" to save grids",
            ));
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
