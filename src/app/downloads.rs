//! Getting models: the first-run download of the defaults with its progress bar,
//! and model files found in a ComfyUI/A1111 folder.

use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};

use crate::engine::{Command, Engine, Event};
use crate::weights::ModelPaths;
use crate::weights::catalogue::{
    Catalogue, DEFAULT_ADAPTER, FIRST_RUN, IMAGE_ENCODER, TAESD, TCD_LORA,
};
use crate::weights::hub::Hub;
use crate::weights::local::{LocalKind, LocalModel};

/// Progress of the defaults' download, as last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    pub file: String,
    pub bytes: u64,
    pub total: Option<u64>,
    pub bytes_per_sec: f64,
}

/// What a download event means for the rest of the window.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadOutcome {
    /// Still running (or not a download event).
    Pending,
    /// Every default is in the cache: use these.
    Ready(ModelPaths),
    /// An adapter chosen by kind is in the cache, with the image encoder if that is
    /// there too.
    AdapterReady {
        adapter: PathBuf,
        image_encoder: Option<PathBuf>,
    },
    /// TAESD is in the cache: load the models again to use it for previews.
    PreviewReady,
    /// The Fast preset's TCD LoRA is in the cache (with TAESD if it was fetched too):
    /// put it in the LoRA list.
    FastLoraReady(PathBuf),
    /// It stopped: say why.
    Failed(String),
}

/// Why the running download was started.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Defaults,
    /// An adapter (its catalogue name) to use once it is there.
    Adapter(String),
    /// TAESD, for previews.
    Preview,
    /// The Fast preset's TCD LoRA, and TAESD where it was missing.
    Fast,
}

/// The download and discovery state of the window.
pub struct Downloads {
    /// Where default models are downloaded from and cached.
    pub hub: Hub,
    /// The running download, if any.
    pub progress: Option<DownloadProgress>,
    /// What the running download is for.
    purpose: Option<Purpose>,
    /// Approximate size of the first-run download, read from the catalogue once.
    defaults_size_mb: u64,
    /// Approximate size of TAESD, read from the catalogue once (it is offered per frame).
    pub taesd_size_mb: Option<u64>,
    /// Whether the first-run offer has been shown: it then stays until models load, so
    /// the fields below do not jump up under the pointer once a first path is typed.
    first_run_offered: bool,
    /// Files found in the ComfyUI/A1111 folder, and the channel the scan answers on.
    found: Vec<LocalModel>,
    found_channel: (Sender<Vec<LocalModel>>, Receiver<Vec<LocalModel>>),
}

impl Downloads {
    /// No download yet, from `hub`.
    pub fn new(hub: Hub) -> Self {
        let catalogue = Catalogue::built_in().ok();
        let defaults_size_mb = catalogue.as_ref().map_or(0, |c| {
            c.entries
                .iter()
                .filter(|e| FIRST_RUN.contains(&e.name.as_str()))
                .map(|e| e.approx_mb)
                .sum()
        });
        let taesd_size_mb = catalogue.and_then(|c| c.get(TAESD).ok().map(|e| e.approx_mb));
        Self {
            hub,
            progress: None,
            purpose: None,
            defaults_size_mb,
            taesd_size_mb,
            first_run_offered: false,
            found: Vec::new(),
            found_channel: crossbeam_channel::unbounded(),
        }
    }

    /// The default models, if all of them are in the hub cache already.
    pub fn cached_defaults(&self) -> Option<ModelPaths> {
        Catalogue::built_in()
            .ok()?
            .cached_model_paths(&self.hub, DEFAULT_ADAPTER)
    }

    /// The path of catalogue entry `name` if all its files are in the hub cache.
    pub fn cached_entry(&self, name: &str) -> Option<PathBuf> {
        Catalogue::built_in()
            .ok()?
            .get(name)
            .ok()?
            .cached_path(&self.hub)
    }

    /// Asks the engine to download the defaults.
    pub fn start(&mut self, engine: &Engine) {
        let names = FIRST_RUN.iter().map(|n| n.to_string()).collect();
        self.download(engine, names, Purpose::Defaults);
    }

    /// Asks the engine to download adapter `name` (and the image encoder, if it is
    /// not cached), to use it once it is there.
    pub fn start_adapter(&mut self, engine: &Engine, name: &str) {
        let mut names = vec![name.to_string()];
        if self.cached_entry(IMAGE_ENCODER).is_none() {
            names.push(IMAGE_ENCODER.to_string());
        }
        self.download(engine, names, Purpose::Adapter(name.to_string()));
    }

    /// Asks the engine to download TAESD, the previews' decoder.
    pub fn start_preview(&mut self, engine: &Engine) {
        self.download(engine, vec![TAESD.to_string()], Purpose::Preview);
    }

    /// Asks the engine to download the Fast preset's TCD LoRA, and TAESD with it when
    /// `with_taesd`, to put the LoRA in the list once it is there.
    pub fn start_fast(&mut self, engine: &Engine, with_taesd: bool) {
        let mut names = vec![TCD_LORA.to_string()];
        if with_taesd {
            names.push(TAESD.to_string());
        }
        self.download(engine, names, Purpose::Fast);
    }

    /// Whether the running download is the Fast preset's.
    pub fn is_fetching_fast(&self) -> bool {
        self.purpose == Some(Purpose::Fast)
    }

    fn download(&mut self, engine: &Engine, names: Vec<String>, purpose: Purpose) {
        engine.send(Command::Download {
            hub: self.hub.clone(),
            names,
        });
        self.purpose = Some(purpose);
        self.progress = Some(DownloadProgress {
            file: "starting".to_string(),
            bytes: 0,
            total: None,
            bytes_per_sec: 0.0,
        });
    }

    /// Takes a download event.
    pub fn apply(&mut self, event: Event) -> DownloadOutcome {
        match event {
            Event::ModelProgress {
                name,
                file,
                bytes,
                total,
                bytes_per_sec,
            } => {
                self.progress = Some(DownloadProgress {
                    file: format!("{name} ({file})"),
                    bytes,
                    total,
                    bytes_per_sec,
                });
                DownloadOutcome::Pending
            }
            Event::Downloaded { .. } => {
                self.progress = None;
                let missing = |what: &str| {
                    DownloadOutcome::Failed(format!("{what} downloaded but not found in the cache"))
                };
                match self.purpose.take() {
                    Some(Purpose::Adapter(name)) => match self.cached_entry(&name) {
                        Some(adapter) => DownloadOutcome::AdapterReady {
                            adapter,
                            image_encoder: self.cached_entry(IMAGE_ENCODER),
                        },
                        None => missing(&name),
                    },
                    Some(Purpose::Preview) => match self.cached_entry(TAESD) {
                        Some(_) => DownloadOutcome::PreviewReady,
                        None => missing("TAESD"),
                    },
                    Some(Purpose::Fast) => match self.cached_entry(TCD_LORA) {
                        Some(lora) => DownloadOutcome::FastLoraReady(lora),
                        None => missing("the TCD LoRA"),
                    },
                    Some(Purpose::Defaults) | None => match self.cached_defaults() {
                        Some(paths) => DownloadOutcome::Ready(paths),
                        None => missing("the default models"),
                    },
                }
            }
            Event::DownloadFailed { error } => {
                self.progress = None;
                self.purpose = None;
                DownloadOutcome::Failed(error)
            }
            _ => DownloadOutcome::Pending,
        }
    }

    /// The progress bar while downloading, else the offer to download the defaults when
    /// `offer_defaults`.
    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, offer_defaults: bool) {
        if let Some(state) = &self.progress {
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
                engine.send(Command::CancelDownload);
            }
        } else if offer_defaults {
            self.first_run_offered = true;
            let size_gb = self.defaults_size_mb as f64 / 1000.0;
            ui.label("No models yet: download the defaults, or set your own under Models.");
            if ui
                .button(format!("Download default models (about {size_gb:.1} GB)"))
                .on_hover_text("Realistic Vision V4, sd-vae-ft-mse, the IP-Adapter and its image encoder, and TAESD for previews, into the Hugging Face cache")
                .clicked()
            {
                self.start(engine);
            }
        }
    }

    /// Whether the first-run offer has been shown this session.
    pub fn offered_first_run(&self) -> bool {
        self.first_run_offered
    }

    /// Where a folder scan sends the files it finds.
    pub fn found_sender(&self) -> Sender<Vec<LocalModel>> {
        self.found_channel.0.clone()
    }

    /// Files found in the ComfyUI/A1111 folder, each with a button; returns the one clicked.
    pub fn found_ui(&mut self, ui: &mut egui::Ui) -> Option<LocalModel> {
        if let Some(found) = self.found_channel.1.try_iter().last() {
            self.found = found;
        }
        if self.found.is_empty() {
            return None;
        }
        let mut chosen = None;
        egui::CollapsingHeader::new(format!("Found {} model files", self.found.len()))
            .default_open(true)
            .show(ui, |ui| {
                for model in &self.found {
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
        chosen
    }
}

/// Puts a found file into the slot of `paths` its kind fills.
pub fn use_found_model(paths: &mut ModelPaths, model: LocalModel) {
    match model.kind {
        LocalKind::Checkpoint => paths.model = model.path,
        LocalKind::IpAdapter => paths.ip_adapter = Some(model.path),
        LocalKind::ImageEncoder => paths.image_encoder = Some(model.path),
        LocalKind::Vae => paths.vae = Some(model.path),
        LocalKind::ControlNet => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_then_a_download_not_in_the_cache_is_a_failure() {
        let mut downloads = Downloads::new(Hub::new("http://127.0.0.1:9", "/nonexistent"));
        let outcome = downloads.apply(Event::ModelProgress {
            name: "sd-vae-ft-mse".to_string(),
            file: "config.json".to_string(),
            bytes: 10,
            total: Some(20),
            bytes_per_sec: 5.0,
        });
        assert_eq!(outcome, DownloadOutcome::Pending);
        let progress = downloads.progress.clone();
        assert_eq!(
            progress.map(|p| p.file),
            Some("sd-vae-ft-mse (config.json)".into())
        );
        let outcome = downloads.apply(Event::Downloaded {
            names: vec!["sd-vae-ft-mse".to_string()],
        });
        assert_eq!(
            outcome,
            DownloadOutcome::Failed(
                "the default models downloaded but not found in the cache".to_string()
            )
        );
        assert_eq!(downloads.progress, None);
    }

    #[test]
    fn a_found_file_fills_the_slot_of_its_kind() {
        let mut paths = ModelPaths::default();
        let found = |kind| LocalModel {
            kind,
            path: format!("/{kind:?}").into(),
            size_bytes: 1,
        };
        use_found_model(&mut paths, found(LocalKind::IpAdapter));
        use_found_model(&mut paths, found(LocalKind::Vae));
        use_found_model(&mut paths, found(LocalKind::ControlNet));
        assert_eq!(paths.ip_adapter, Some("/IpAdapter".into()));
        assert_eq!(paths.vae, Some("/Vae".into()));
        assert!(!paths.is_set());
    }
}
