//! The running job's progress line: what it is doing until the first step, then
//! step, speed and time left.

use std::sync::Arc;

use egui::TextureHandle;
use image::RgbImage;

use super::texture;
use crate::engine::JobId;
use crate::pipeline::{Phase, PreviewKind};

/// The job currently denoising.
pub struct RunningJob {
    pub id: JobId,
    pub step: usize,
    pub total: usize,
    pub elapsed_secs: f64,
    pub preview: Option<TextureHandle>,
    /// How the last preview was drawn.
    pub preview_kind: Option<PreviewKind>,
    /// The stage outside the denoising steps it is in; `None` while denoising (or
    /// before it has said anything).
    pub phase: Option<Phase>,
}

impl RunningJob {
    /// Job `id`, just started.
    pub fn new(id: JobId) -> Self {
        Self {
            id,
            step: 0,
            total: 0,
            elapsed_secs: 0.0,
            preview: None,
            preview_kind: None,
            phase: None,
        }
    }

    /// Takes the engine's word that `step` of `total` is done.
    pub fn record_step(&mut self, step: usize, total: usize, elapsed_secs: f64) {
        self.step = step;
        self.total = total;
        self.phase = None;
        self.elapsed_secs = elapsed_secs;
    }

    /// Shows the step's preview, drawn the `kind` way, in place of the last one.
    pub fn show_preview(
        &mut self,
        preview: &Arc<RgbImage>,
        kind: PreviewKind,
        ctx: &egui::Context,
    ) {
        self.preview_kind = Some(kind);
        let color = egui::ColorImage::from_rgb(
            [preview.width() as usize, preview.height() as usize],
            preview.as_raw(),
        );
        match &mut self.preview {
            Some(texture) => texture.set(color, texture::SMOOTH),
            None => self.preview = Some(ctx.load_texture("preview", color, texture::SMOOTH)),
        }
    }

    /// Steps per second so far.
    pub fn rate(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.step as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }

    /// Seconds left at the current rate.
    pub fn eta_secs(&self) -> f64 {
        let rate = self.rate();
        if rate > 0.0 {
            (self.total - self.step) as f64 / rate
        } else {
            0.0
        }
    }

    /// The progress line: what it is doing until the first step, then step, it/s and ETA.
    pub fn progress_ui(&self, ui: &mut egui::Ui) {
        if self.step == 0 {
            ui.spinner();
            let doing = self.phase.map_or("Starting", Phase::label);
            ui.label(format!("{doing}..."));
            return;
        }
        let fraction = self.step as f32 / self.total.max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(260.0)
                .text(format!("step {}/{}", self.step, self.total)),
        );
        ui.label(format!(
            "{:.2} it/s, ETA {:.0}s",
            self.rate(),
            self.eta_secs()
        ));
        if let Some(phase) = self.phase {
            ui.label(format!("{}...", phase.label()));
        }
    }
}

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    use super::*;

    fn job(step: usize, phase: Option<Phase>) -> RunningJob {
        RunningJob {
            id: JobId(1),
            step,
            total: 20,
            elapsed_secs: 2.0,
            preview: None,
            preview_kind: None,
            phase,
        }
    }

    fn harness(job: RunningJob) -> Harness<'static, RunningJob> {
        Harness::new_ui_state(|ui, job: &mut RunningJob| job.progress_ui(ui), job)
    }

    #[test]
    fn before_the_first_step_it_says_what_it_is_doing() {
        let encoding = harness(job(0, Some(Phase::EncodingImages)));
        assert!(encoding.query_by_label("Encoding images...").is_some());
        assert!(encoding.query_by_label_contains("step").is_none());
        assert!(encoding.query_by_label_contains("it/s").is_none());
        assert!(
            harness(job(0, None))
                .query_by_label("Starting...")
                .is_some()
        );
    }

    #[test]
    fn steps_show_speed_and_time_left_then_decoding() {
        let denoising = harness(job(5, None));
        assert!(denoising.query_by_label("2.50 it/s, ETA 6s").is_some());
        assert!(denoising.query_by_label_contains("step 5/20").is_some());
        let decoding = harness(job(20, Some(Phase::Decoding)));
        assert!(decoding.query_by_label("Decoding...").is_some());
    }
}
