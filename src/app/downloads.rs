//! Getting models: the first-run download of the defaults with its progress bar,
//! and model files found in a ComfyUI/A1111 folder.

use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};

use crate::engine::{Command, Engine, Event};
use crate::models::family::ModelFamily;
use crate::weights::ModelPaths;
use crate::weights::catalogue::{Catalogue, DefaultSet, TCD_LORA, preview_decoder_for};
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
    /// A family's default set, to use once it is there.
    Defaults(ModelFamily),
    /// An adapter (its catalogue name) to use once it is there.
    Adapter(String),
    /// A preview decoder (its catalogue name: TAESD or TAESDXL).
    Preview(&'static str),
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
    /// Whether the SDXL set is all in the cache (checked at start and after downloads,
    /// not every frame).
    sdxl_cached: bool,
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
        let mut downloads = Self {
            hub,
            progress: None,
            purpose: None,
            sdxl_cached: false,
            first_run_offered: false,
            found: Vec::new(),
            found_channel: crossbeam_channel::unbounded(),
        };
        downloads.sdxl_cached = downloads.cached_defaults(ModelFamily::Sdxl).is_some();
        downloads
    }

    /// `family`'s default models, if all of them are in the hub cache already.
    pub fn cached_defaults(&self, family: ModelFamily) -> Option<ModelPaths> {
        Catalogue::built_in()
            .ok()?
            .cached_model_paths(&self.hub, DefaultSet::of(family))
    }

    /// Approximate size of `family`'s default set, in MB.
    fn set_size_mb(family: ModelFamily) -> u64 {
        let names = DefaultSet::of(family).names();
        Catalogue::built_in().map_or(0, |c| c.size_mb(&names))
    }

    /// Approximate size of `family`'s preview decoder, in MB.
    pub fn preview_size_mb(family: ModelFamily) -> Option<u64> {
        let name = preview_decoder_for(family);
        Catalogue::built_in()
            .ok()?
            .get(name)
            .ok()
            .map(|e| e.approx_mb)
    }

    /// The cached image encoder that adapter entry `adapter` works with.
    pub fn cached_encoder_for(&self, adapter: &str) -> Option<PathBuf> {
        let catalogue = Catalogue::built_in().ok()?;
        let encoder = catalogue.get(adapter).ok()?.image_encoder_name();
        self.cached_entry(encoder)
    }

    /// The path of catalogue entry `name` if all its files are in the hub cache.
    pub fn cached_entry(&self, name: &str) -> Option<PathBuf> {
        Catalogue::built_in()
            .ok()?
            .get(name)
            .ok()?
            .cached_path(&self.hub)
    }

    /// Asks the engine to download `family`'s default set.
    pub fn start(&mut self, engine: &Engine, family: ModelFamily) {
        let names = DefaultSet::of(family).names();
        let names = names.iter().map(|n| n.to_string()).collect();
        self.download(engine, names, Purpose::Defaults(family));
    }

    /// Asks the engine to download adapter `name` (and the image encoder, if it is
    /// not cached), to use it once it is there.
    pub fn start_adapter(&mut self, engine: &Engine, name: &str) {
        let mut names = vec![name.to_string()];
        if self.cached_encoder_for(name).is_none() {
            let catalogue = Catalogue::built_in().ok();
            let encoder = catalogue.and_then(|c| c.get(name).ok());
            names.extend(encoder.map(|e| e.image_encoder_name().to_string()));
        }
        self.download(engine, names, Purpose::Adapter(name.to_string()));
    }

    /// Asks the engine to download TAESD, the previews' decoder.
    pub fn start_preview(&mut self, engine: &Engine, family: ModelFamily) {
        let name = preview_decoder_for(family);
        self.download(engine, vec![name.to_string()], Purpose::Preview(name));
    }

    /// Asks the engine to download the Fast preset's TCD LoRA, and TAESD with it when
    /// `with_taesd`, to put the LoRA in the list once it is there.
    pub fn start_fast(&mut self, engine: &Engine, with_taesd: bool) {
        let mut names = vec![TCD_LORA.to_string()];
        if with_taesd {
            names.push(preview_decoder_for(ModelFamily::Sd15).to_string());
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
                            image_encoder: self.cached_encoder_for(&name),
                        },
                        None => missing(&name),
                    },
                    Some(Purpose::Preview(name)) => match self.cached_entry(name) {
                        Some(_) => DownloadOutcome::PreviewReady,
                        None => missing(name),
                    },
                    Some(Purpose::Fast) => match self.cached_entry(TCD_LORA) {
                        Some(lora) => DownloadOutcome::FastLoraReady(lora),
                        None => missing("the TCD LoRA"),
                    },
                    Some(Purpose::Defaults(family)) => self.defaults_ready(family),
                    None => self.defaults_ready(ModelFamily::Sd15),
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

    /// What a finished download of `family`'s set means: use it, or it is not there.
    fn defaults_ready(&mut self, family: ModelFamily) -> DownloadOutcome {
        self.sdxl_cached = self.cached_defaults(ModelFamily::Sdxl).is_some();
        match self.cached_defaults(family) {
            Some(paths) => DownloadOutcome::Ready(paths),
            None => DownloadOutcome::Failed(
                "the default models downloaded but not found in the cache".to_string(),
            ),
        }
    }

    /// The progress bar while downloading, else the offer to download the defaults when
    /// `offer_defaults`, and the SDXL set while it is not in the cache.
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
        } else {
            if offer_defaults {
                self.first_run_offered = true;
                let size_gb = Self::set_size_mb(ModelFamily::Sd15) as f64 / 1000.0;
                ui.label("No models yet: download the defaults, or set your own under Models.");
                if ui
                    .button(format!("Download default models (about {size_gb:.1} GB)"))
                    .on_hover_text("Realistic Vision V4 (SD 1.5), sd-vae-ft-mse, the IP-Adapter and its image encoder, and TAESD for previews, into the Hugging Face cache")
                    .clicked()
                {
                    self.start(engine, ModelFamily::Sd15);
                }
            }
            self.sdxl_offer_ui(ui, engine);
        }
    }

    /// The button that downloads the SDXL set, while it is not all in the cache.
    fn sdxl_offer_ui(&mut self, ui: &mut egui::Ui, engine: &Engine) {
        if self.sdxl_cached {
            return;
        }
        let size_gb = Self::set_size_mb(ModelFamily::Sdxl) as f64 / 1000.0;
        if ui
            .button(format!("Download SDXL models (about {size_gb:.1} GB)"))
            .on_hover_text(
                "SDXL base 1.0, its fp16-fix VAE, the Plus SDXL IP-Adapter with its ViT-H                  image encoder, and TAESDXL for previews, into the Hugging Face cache;                  SDXL makes 1024² pictures and needs about 12 GB of memory in f16",
            )
            .clicked()
        {
            self.start(engine, ModelFamily::Sdxl);
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
