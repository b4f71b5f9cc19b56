//! What the engine reports, taken in once a frame: model loads, downloads and runs.

use std::time::Instant;

use super::MinusApp;
use super::downloads::DownloadOutcome;
use super::messages::{Message, MessageSource};
use crate::engine::Event;
use crate::models::family::ModelFamily;

impl MinusApp {
    /// Takes every event the engine sent since the last frame.
    pub(super) fn handle_engine_events(&mut self, ctx: &egui::Context) {
        self.check_engine_alive();
        for event in self.engine.drain_events() {
            match event {
                Event::ModelsLoading | Event::ModelsLoaded { .. } | Event::ModelsFailed { .. } => {
                    self.models_event(&event);
                }
                Event::ModelProgress { .. }
                | Event::Downloaded { .. }
                | Event::DownloadFailed { .. } => self.download_event(event),
                Event::Queued { .. }
                | Event::Started { .. }
                | Event::Phase { .. }
                | Event::Step { .. }
                | Event::Finished { .. }
                | Event::Failed { .. }
                | Event::Cancelled { .. } => self.job_event(event, ctx),
            }
        }
    }

    /// Says so once if the engine thread has died, instead of waiting forever.
    fn check_engine_alive(&mut self) {
        if self.engine_lost || self.engine.is_running() {
            return;
        }
        self.engine_lost = true;
        self.results.clear_jobs();
        self.messages.push(Message::error(
            MessageSource::Engine,
            "The engine stopped unexpectedly: restart Minus (results already shown are saved)",
        ));
    }

    fn models_event(&mut self, event: &Event) {
        if let Event::ModelsLoaded { loaded, .. } = event {
            // An earlier setup's error no longer applies.
            self.messages
                .succeeded(MessageSource::Models, Instant::now());
            self.follow_family_size(loaded.family);
        }
        if let Some(message) = self.model_status.apply(event) {
            self.messages.push(message);
        }
    }

    fn download_event(&mut self, event: Event) {
        let outcome = self.downloads.apply(event);
        if !matches!(
            outcome,
            DownloadOutcome::Pending | DownloadOutcome::Failed(_)
        ) {
            // One download runs at a time: any earlier failure is behind it.
            self.messages
                .succeeded(MessageSource::Download, Instant::now());
        }
        match outcome {
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
            DownloadOutcome::FastLoraReady(lora) => self.use_fast_lora(lora),
            DownloadOutcome::Failed(error) => self
                .messages
                .push(Message::error(MessageSource::Download, error)),
        }
    }

    fn job_event(&mut self, event: Event, ctx: &egui::Context) {
        self.preview_to_acknowledge |= matches!(
            event,
            Event::Step {
                preview: Some(_),
                ..
            }
        );
        self.model_status.apply(&event);
        self.results.apply(event, ctx, &mut self.messages);
    }

    /// A picture still at the other family's square default takes this family's (an
    /// SDXL model draws poorly at 512², SD 1.5 at 1024²); any other size is the user's.
    fn follow_family_size(&mut self, family: ModelFamily) {
        let request = &mut self.settings.request;
        let size = (request.width, request.height);
        let other_default = ModelFamily::ALL
            .into_iter()
            .filter(|other| *other != family)
            .any(|other| size == (other.default_side_px(), other.default_side_px()));
        if other_default {
            let side = family.default_side_px();
            (request.width, request.height) = (side, side);
        }
    }
}
