//! The engine thread's loop: a queue of jobs, model loading, and commands
//! handled between denoising steps.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::Waker;
use super::preview_gate::PreviewGate;
use super::protocol::{Command, Event, JobId, LoadSettings, LoadedModels};
use crate::MinusError;
use crate::device::{device_name, resolve_dtype, select_device};
use crate::output::masks::keep_masks_beside;
use crate::output::save_png;
use crate::pipeline::conditioning::EmbeddingCache;
use crate::pipeline::{Flow, Generation, Models, PreviewKind, Request, generate};
use crate::weights::catalogue::Catalogue;
use crate::weights::hub::Hub;

struct Job {
    id: JobId,
    request: Request,
    output_dir: Option<PathBuf>,
}

/// State owned by the engine thread.
pub struct Worker {
    commands: Receiver<Command>,
    events: Sender<Event>,
    waker: Waker,
    models: Option<(Models, String)>,
    /// The settings the loaded models came from, and why they are on the CPU although
    /// `auto` found a GPU, if they are.
    loaded: Option<(LoadSettings, Option<String>)>,
    cache: EmbeddingCache,
    queue: VecDeque<Job>,
    pending_load: Option<LoadSettings>,
    preview_gate: PreviewGate,
    /// How step previews are drawn.
    preview: PreviewKind,
    /// The download thread and its cancel flag: downloads run beside the queue.
    download: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    shutdown: bool,
}

impl Worker {
    pub fn new(commands: Receiver<Command>, events: Sender<Event>, waker: Waker) -> Self {
        Self {
            commands,
            events,
            waker,
            models: None,
            loaded: None,
            cache: EmbeddingCache::default(),
            queue: VecDeque::new(),
            pending_load: None,
            preview_gate: PreviewGate::default(),
            preview: PreviewKind::default(),
            download: None,
            shutdown: false,
        }
    }

    fn emit(&self, event: Event) {
        // A closed channel means the UI is gone; the shutdown path handles that.
        let _ = self.events.send(event);
        (self.waker)();
    }

    /// Runs until `Shutdown` or until the UI drops its end.
    pub fn run(mut self) {
        while !self.shutdown {
            if let Some(settings) = self.pending_load.take() {
                self.load(&settings);
                continue;
            }
            if let Some(job) = self.queue.pop_front() {
                self.run_job(job);
                continue;
            }
            match self.commands.recv() {
                Ok(command) => {
                    self.handle(command, None);
                }
                Err(_) => break,
            }
        }
    }

    /// Handles one command; returns true when it cancels the running job.
    fn handle(&mut self, command: Command, running: Option<JobId>) -> bool {
        match command {
            Command::Download { hub, names } => self.start_download(hub, names),
            Command::CancelDownload => self.cancel_download(),
            Command::PreviewShown => self.preview_gate.shown(),
            Command::LoadModels(settings) => self.pending_load = Some(settings),
            Command::SetPreview(kind) => self.preview = kind,
            Command::Generate {
                job,
                request,
                output_dir,
            } => {
                self.queue.push_back(Job {
                    id: job,
                    request,
                    output_dir,
                });
                self.emit(Event::Queued { job });
            }
            Command::Cancel(job) if Some(job) == running => return true,
            Command::Cancel(job) => {
                let before = self.queue.len();
                self.queue.retain(|queued| queued.id != job);
                if self.queue.len() != before {
                    self.emit(Event::Cancelled { job });
                }
            }
            Command::Shutdown => {
                self.shutdown = true;
                self.cancel_download();
                return running.is_some();
            }
        }
        false
    }

    /// Starts downloading catalogue entries on their own thread, unless a download
    /// is already running.
    fn start_download(&mut self, hub: Hub, names: Vec<String>) {
        if self
            .download
            .as_ref()
            .is_some_and(|(thread, _)| !thread.is_finished())
        {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (events, waker, flag) = (self.events.clone(), self.waker.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("minus-model-download".to_string())
            .spawn(move || {
                download_entries(&hub, names, &flag, &|event| {
                    // A closed channel means the UI is gone; the download still ends.
                    let _ = events.send(event);
                    waker();
                })
            });
        match spawned {
            Ok(thread) => self.download = Some((thread, cancel)),
            Err(error) => self.emit(Event::DownloadFailed {
                error: format!("cannot start the download thread: {error}"),
            }),
        }
    }

    fn cancel_download(&self) {
        if let Some((_, cancel)) = &self.download {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    fn load(&mut self, settings: &LoadSettings) {
        self.emit(Event::ModelsLoading);
        let started = Instant::now();
        if let Some(fallback) = self.reweigh_loras(settings) {
            self.emit(self.loaded_event(settings, started, fallback));
            return;
        }
        self.models = None;
        self.loaded = None;
        let loaded = select_device(settings.device, settings.dtype).and_then(|chosen| {
            let dtype = resolve_dtype(&chosen.device, settings.dtype)?;
            Ok((
                Models::load(&settings.paths, &chosen.device, dtype)?,
                chosen.fallback,
            ))
        });
        match loaded {
            Ok((models, fallback)) => {
                let name = settings.paths.model_name();
                self.cache.keep_only(Some(&models));
                self.models = Some((models, name));
                self.loaded = Some((settings.clone(), fallback.clone()));
                self.emit(self.loaded_event(settings, started, fallback));
            }
            Err(error) => {
                self.cache.keep_only(None);
                self.emit(Event::ModelsFailed {
                    error: error.to_string(),
                })
            }
        }
    }

    /// Takes settings that change only LoRA strengths by merging the LoRAs again into
    /// the loaded networks, without reading the model files; `Some(fallback note)` when
    /// it did. A merge that fails leaves the models as they were, for a full load.
    fn reweigh_loras(&mut self, settings: &LoadSettings) -> Option<Option<String>> {
        let (loaded, fallback) = self.loaded.as_ref()?;
        let same_device = loaded.device == settings.device && loaded.dtype == settings.dtype;
        let strengths = settings
            .paths
            .lora_strengths_change(&loaded.paths)
            .filter(|_| same_device)?;
        let fallback = fallback.clone();
        let (models, _) = self.models.as_mut()?;
        models.set_lora_strengths(&strengths).ok()?;
        self.cache.keep_only(Some(models));
        self.loaded = Some((settings.clone(), fallback.clone()));
        Some(fallback)
    }

    /// The event saying the models of `settings` are loaded (they must be).
    fn loaded_event(
        &self,
        settings: &LoadSettings,
        started: Instant,
        fallback: Option<String>,
    ) -> Event {
        let loaded = self.models.as_ref().map(|(models, _)| {
            LoadedModels::describe(&settings.paths, device_name(&models.device), models)
        });
        Event::ModelsLoaded {
            elapsed_secs: started.elapsed().as_secs_f64(),
            loaded: loaded.unwrap_or_default(),
            fallback,
        }
    }

    fn run_job(&mut self, job: Job) {
        let Some((models, model_name)) = self.models.take() else {
            self.emit(Event::Failed {
                job: job.id,
                error: "no models loaded: download the defaults or choose a model under Models"
                    .to_string(),
            });
            return;
        };
        self.emit(Event::Started { job: job.id });
        self.preview_gate.start_job();
        let started = Instant::now();
        // Phases are only reported, so they go straight to the channel while the step
        // callback holds the worker for handling commands.
        let (events, waker) = (self.events.clone(), self.waker.clone());
        let mut on_phase = |phase| {
            // A closed channel means the UI is gone; the shutdown path handles that.
            let _ = events.send(Event::Phase { job: job.id, phase });
            waker();
        };
        let result = {
            let mut cache = std::mem::take(&mut self.cache);
            let result = generate(
                &models,
                &job.request,
                &mut cache,
                &mut on_phase,
                &mut |report| {
                    let mut cancel = false;
                    while let Ok(command) = self.commands.try_recv() {
                        cancel |= self.handle(command, Some(job.id));
                    }
                    if cancel {
                        return Flow::Cancel;
                    }
                    let preview = if self.preview_gate.take() {
                        report
                            .preview(self.preview)
                            .inspect_err(|error| eprintln!("preview failed: {error}"))
                            .ok()
                            .map(|(image, kind)| (Arc::new(image), kind))
                    } else {
                        None
                    };
                    self.emit(Event::Step {
                        job: job.id,
                        step: report.step + 1,
                        total: report.total,
                        preview,
                        elapsed_secs: report.elapsed_secs,
                    });
                    Flow::Continue
                },
            );
            self.cache = cache;
            result
        };
        match result {
            Ok(generation) => {
                let saved = save_all(&generation, job.output_dir.as_deref(), job.id, &model_name);
                self.emit(Event::Finished {
                    job: job.id,
                    images: generation.images.into_iter().map(Arc::new).collect(),
                    request: Box::new(generation.request),
                    saved,
                    elapsed_secs: started.elapsed().as_secs_f64(),
                });
            }
            Err(MinusError::Cancelled) => self.emit(Event::Cancelled { job: job.id }),
            Err(error) => self.emit(Event::Failed {
                job: job.id,
                error: error.to_string(),
            }),
        }
        self.models = Some((models, model_name));
    }
}

/// Downloads the catalogue entries `names`, reporting progress and the outcome
/// through `emit`.
fn download_entries(hub: &Hub, names: Vec<String>, cancel: &AtomicBool, emit: &dyn Fn(Event)) {
    let result = (|| {
        let catalogue = Catalogue::built_in()?;
        for name in &names {
            let entry = catalogue.get(name)?;
            entry.download(
                hub,
                &mut |file, progress| {
                    emit(Event::ModelProgress {
                        name: name.clone(),
                        file: file.to_string(),
                        bytes: progress.bytes,
                        total: progress.total,
                        bytes_per_sec: progress.bytes_per_sec,
                    })
                },
                cancel,
            )?;
        }
        Ok(())
    })();
    emit(match result {
        Ok(()) => Event::Downloaded { names },
        Err(MinusError::Cancelled) => Event::DownloadFailed {
            error: "download cancelled (it resumes where it stopped next time)".to_string(),
        },
        Err(error) => Event::DownloadFailed {
            error: error.to_string(),
        },
    });
}

/// Saves every image of a run as `<unix secs>-<job>-<i>.png` in `dir`, its masks in
/// `dir/masks`.
fn save_all(
    generation: &Generation,
    dir: Option<&Path>,
    job: JobId,
    model_name: &str,
) -> Vec<Result<PathBuf, String>> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    // The masks go with the results, so a saved PNG dropped back brings them.
    let request = match keep_masks_beside(dir, &generation.request) {
        Ok(request) => request,
        Err(error) => return vec![Err(error.to_string()); generation.images.len()],
    };
    let stamp = crate::output::unix_secs();
    generation
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let path = dir.join(format!("{stamp}-{}-{i}.png", job.0));
            save_png(&path, image, &request, model_name)
                .map(|()| path)
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DTypeChoice, DeviceChoice};
    use crate::pipeline::ImagePrompt;
    use crate::weights::ModelPaths;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn settings(taesd: bool, dtype: Option<DTypeChoice>) -> LoadSettings {
        let models = fixtures().join("models");
        let ip = models.join("ip-adapter/models");
        LoadSettings {
            paths: ModelPaths {
                model: models.join("sd15"),
                vae: None,
                ip_adapter: Some(ip.join("ip-adapter_sd15.safetensors")),
                image_encoder: Some(ip.join("image_encoder")),
                taesd: taesd.then(|| models.join("taesd")),
                configs: None,
                loras: Vec::new(),
            },
            device: DeviceChoice::Cpu,
            dtype,
        }
    }

    fn job(id: u64) -> Job {
        let mut request = Request {
            images: vec![ImagePrompt::new(fixtures().join("images/house.png"))],
            steps: 1,
            width: 64,
            height: 64,
            ..Request::default()
        };
        request.seed = id;
        Job {
            id: JobId(id),
            request,
            output_dir: None,
        }
    }

    /// README: "only the first run with a new image pays for the image encoder", also
    /// across a reload that changes no encoder (adding TAESD); a new dtype re-encodes.
    #[test]
    fn a_reload_that_keeps_the_encoders_keeps_their_encodings() {
        let (_commands, commands_in) = crossbeam_channel::unbounded();
        let (events_out, events) = crossbeam_channel::unbounded();
        let mut worker = Worker::new(commands_in, events_out, Arc::new(|| {}));
        let runs = |worker: &mut Worker, load: LoadSettings, id: u64| {
            worker.load(&load);
            worker.run_job(job(id));
            let failed = events
                .try_iter()
                .find(|e| matches!(e, Event::Failed { .. } | Event::ModelsFailed { .. }));
            assert!(failed.is_none(), "{failed:?}");
            (
                worker.cache.encoder_runs(),
                worker.cache.text_encoder_runs(),
            )
        };
        let first = runs(&mut worker, settings(false, None), 1);
        assert_eq!(runs(&mut worker, settings(true, None), 2), first);
        let f16 = runs(&mut worker, settings(true, Some(DTypeChoice::F16)), 3);
        assert!(f16.0 > first.0 && f16.1 > first.1, "{first:?} then {f16:?}");
    }

    /// A new LoRA strength merges again into the loaded models: the model files are
    /// not read (here they are gone), the image encodings stay.
    #[test]
    fn a_new_lora_strength_merges_again_without_reading_the_model() {
        let (_commands, commands_in) = crossbeam_channel::unbounded();
        let (events_out, events) = crossbeam_channel::unbounded();
        let mut worker = Worker::new(commands_in, events_out, Arc::new(|| {}));
        let scratch = crate::scratch::ScratchDir::new("worker-lora-strength");
        let model = scratch.join("sd15");
        for part in ["text_encoder", "unet", "vae"] {
            let from = fixtures().join("models/sd15").join(part);
            std::fs::create_dir_all(model.join(part)).expect("folder");
            for entry in std::fs::read_dir(&from).expect("fixture folder").flatten() {
                std::fs::copy(entry.path(), model.join(part).join(entry.file_name()))
                    .expect("copy");
            }
        }
        let with_strength = |strength| {
            let mut load = settings(false, None);
            load.paths.model = model.clone();
            let kohya = fixtures().join("lora/kohya.safetensors");
            load.paths.loras = vec![crate::weights::lora::LoraChoice::new(kohya, strength)];
            load
        };
        worker.load(&with_strength(1.0));
        worker.run_job(job(1));
        std::fs::remove_dir_all(&model).expect("model removed");
        worker.load(&with_strength(-0.5));
        worker.run_job(job(2));
        let failed = events
            .try_iter()
            .find(|e| matches!(e, Event::Failed { .. } | Event::ModelsFailed { .. }));
        assert!(failed.is_none(), "{failed:?}");
        let strengths = worker.models.as_ref().map(|(m, _)| m.loras()[0].strength);
        assert_eq!(strengths, Some(-0.5));
        assert_eq!(worker.cache.encoder_runs(), 1);
    }
}
