//! The results side: live preview of the running job, the queue, the gallery
//! and the side-by-side / split comparison.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use egui::{RichText, TextureHandle};
use image::RgbImage;

use super::compare::compare_ui;
use super::messages::{Message, MessageSource, Messages};
use super::running::RunningJob;
use super::sweep::Sweep;
use super::tasks::ImageSource;
use super::texture;
use crate::engine::{Event, JobId};
use crate::pipeline::{PreviewKind, Request};

/// One finished image.
pub struct GalleryEntry {
    pub texture: TextureHandle,
    /// The full image of a result made in this session (older ones are read from `path`).
    pub image: Option<Arc<RgbImage>>,
    pub request: Option<Request>,
    pub path: Option<PathBuf>,
    /// Ticked for comparison.
    pub compare: bool,
}

/// What the user asked for in the results area this frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultAction {
    None,
    Cancel(JobId),
    /// Boxed: a request is ten times the size of the other actions.
    UseSettings(Box<Request>),
    UseAsImage(PathBuf),
    UseAsNegative(PathBuf),
    SaveAs(ImageSource),
    Copy(ImageSource),
    OpenFolder(PathBuf),
    SaveGrid,
    CloseSweep,
}

/// The state of the results area.
#[derive(Default)]
pub struct Results {
    pub running: Option<RunningJob>,
    pub queued: Vec<JobId>,
    pub gallery: Vec<GalleryEntry>,
    pub selected: Option<usize>,
    /// Position of the split line in the comparison, 0..1.
    pub split: f32,
    /// The last sweep, shown as a grid until closed.
    pub sweep: Option<Sweep>,
    /// When each unfinished job was queued: a run that succeeds takes away the
    /// failures reported before it was asked for, not those of its own sweep.
    pub attempts: HashMap<JobId, Instant>,
}

impl GalleryEntry {
    /// Where the full image can be had, if anywhere.
    pub fn source(&self) -> Option<ImageSource> {
        match (&self.image, &self.path) {
            (Some(image), _) => Some(ImageSource::Memory(image.clone())),
            (None, Some(path)) => Some(ImageSource::File(path.clone())),
            (None, None) => None,
        }
    }
}

impl Results {
    /// Takes a job event from the engine; what went wrong goes to `messages`.
    pub fn apply(&mut self, event: Event, ctx: &egui::Context, messages: &mut Messages) {
        match event {
            Event::Queued { job } => self.queued.push(job),
            Event::Started { job } => {
                self.queued.retain(|q| *q != job);
                self.running = Some(RunningJob::new(job));
            }
            Event::Phase { job, phase } => {
                if let Some(running) = self.running.as_mut().filter(|r| r.id == job) {
                    running.phase = Some(phase);
                }
            }
            Event::Step {
                job,
                step,
                total,
                preview,
                elapsed_secs,
            } => {
                if let Some(running) = self.running.as_mut().filter(|r| r.id == job) {
                    running.record_step(step, total, elapsed_secs);
                    if let Some((image, kind)) = preview {
                        running.show_preview(&image, kind, ctx);
                    }
                }
            }
            Event::Finished {
                job,
                images,
                request,
                saved,
                ..
            } => {
                let started = self.finish(job);
                self.add_results(job, &images, &request, &saved, ctx);
                report_saved(&saved, started, messages);
            }
            Event::Failed { job, error } => {
                self.finish(job);
                let text = format!("Run {} failed: {error}", job.0);
                messages.push(Message::error(MessageSource::Generation, text));
            }
            Event::Cancelled { job } => {
                self.finish(job);
            }
            _ => {}
        }
    }

    /// Puts a finished job's images at the front of the gallery (and its first into
    /// the sweep grid) and selects the newest.
    fn add_results(
        &mut self,
        job: JobId,
        images: &[Arc<RgbImage>],
        request: &Request,
        saved: &[Result<PathBuf, String>],
        ctx: &egui::Context,
    ) {
        for (i, image) in images.iter().enumerate() {
            let path = saved.get(i).and_then(|s| s.as_ref().ok()).cloned();
            let texture = texture::upload(ctx, &format!("result {} {i}", job.0), image);
            if i == 0
                && let Some(sweep) = &mut self.sweep
            {
                sweep.record(job, image.clone(), texture.clone());
            }
            self.gallery.insert(
                0,
                GalleryEntry {
                    texture,
                    image: Some(image.clone()),
                    request: Some(request.clone()),
                    path,
                    compare: false,
                },
            );
        }
        self.selected = Some(0);
    }

    /// Forgets a job that ended, queued or running; returns when it was queued.
    fn finish(&mut self, job: JobId) -> Option<Instant> {
        self.queued.retain(|q| *q != job);
        if self.running.as_ref().is_some_and(|r| r.id == job) {
            self.running = None;
        }
        self.attempts.remove(&job)
    }

    /// Drops every job (the engine is gone).
    pub fn clear_jobs(&mut self) {
        self.running = None;
        self.queued.clear();
        self.attempts.clear();
    }

    /// The two entries ticked for comparison, if exactly two are.
    fn comparison(&self) -> Option<(usize, usize)> {
        let ticked: Vec<usize> = (0..self.gallery.len())
            .filter(|&i| self.gallery[i].compare)
            .collect();
        match ticked.as_slice() {
            [a, b] => Some((*a, *b)),
            _ => None,
        }
    }

    /// The large view: running preview, comparison, or the selected result.
    pub fn main_ui(&mut self, ui: &mut egui::Ui) -> ResultAction {
        let progress = self.progress_ui(ui);
        let view = self.view_ui(ui);
        if view == ResultAction::None {
            progress
        } else {
            view
        }
    }

    /// The running job's progress with its Cancel button, and the queue.
    fn progress_ui(&self, ui: &mut egui::Ui) -> ResultAction {
        let mut action = ResultAction::None;
        if let Some(job) = &self.running {
            ui.horizontal(|ui| {
                job.progress_ui(ui);
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop this run (Esc)")
                    .clicked()
                {
                    action = ResultAction::Cancel(job.id);
                }
            });
        }
        if !self.queued.is_empty() {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("Queued: {}", self.queued.len()));
                for id in &self.queued {
                    if ui
                        .small_button(format!("remove run {}", id.0))
                        .on_hover_text("Remove from the queue")
                        .clicked()
                    {
                        action = ResultAction::Cancel(*id);
                    }
                }
            });
        }
        action
    }

    /// The one picture area: the live preview, else the sweep, the comparison, or the
    /// selected result.
    fn view_ui(&mut self, ui: &mut egui::Ui) -> ResultAction {
        let available = ui.available_size();
        let side = available.x.min(available.y - 40.0).max(64.0);
        if let Some(job) = &self.running
            && let Some(preview) = &job.preview
        {
            let note = match job.preview_kind {
                Some(PreviewKind::Taesd) => "Preview: TAESD",
                _ => "Preview: latent colours (TAESD is used when it is downloaded and chosen)",
            };
            ui.add(texture::fitted(preview, side)).on_hover_text(note);
        } else if let Some(sweep) = &self.sweep {
            return sweep_ui(ui, sweep, available.x);
        } else if let Some((a, b)) = self.comparison() {
            let [a, b] = [&self.gallery[a], &self.gallery[b]]
                .map(|entry| (&entry.texture, entry.request.as_ref()));
            compare_ui(ui, [a, b], &mut self.split, side);
        } else if let Some(entry) = self.selected.and_then(|i| self.gallery.get(i)) {
            return entry_ui(ui, entry, side);
        } else {
            ui.label(RichText::new("Drop an image you want and an image you don't want, then press Generate (Ctrl+Enter).").weak());
        }
        ResultAction::None
    }

    /// The gallery strip, newest first.
    pub fn gallery_ui(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::horizontal().show(ui, |ui| {
            ui.horizontal(|ui| {
                for (i, entry) in self.gallery.iter_mut().enumerate() {
                    ui.vertical(|ui| {
                        let selected = self.selected == Some(i);
                        let button = egui::Button::image(texture::fitted(&entry.texture, 96.0))
                            .selected(selected);
                        if ui.add(button).on_hover_text("Show this result").clicked() {
                            self.selected = Some(i);
                        }
                        ui.checkbox(&mut entry.compare, "compare")
                            .on_hover_text("Tick two results to compare them");
                    });
                }
            });
        });
    }
}

/// Autosave's outcome: its failures, or, when every image was saved, the end of
/// the failures reported before this run was queued (with them, the run's own).
fn report_saved(
    saved: &[Result<PathBuf, String>],
    started: Option<Instant>,
    messages: &mut Messages,
) {
    if let Some(started) = started {
        messages.succeeded(MessageSource::Generation, started);
        if saved.iter().all(Result::is_ok) {
            messages.succeeded(MessageSource::Autosave, started);
        }
    }
    for error in saved.iter().filter_map(|s| s.as_ref().err()) {
        let text = format!("Could not save a result (it is still in the gallery): {error}");
        messages.push(Message::error(MessageSource::Autosave, text));
    }
}

/// A result at full size, its buttons, and its settings.
fn entry_ui(ui: &mut egui::Ui, entry: &GalleryEntry, side: f32) -> ResultAction {
    ui.add(texture::fitted(&entry.texture, side));
    let action = ui.horizontal(|ui| entry_buttons_ui(ui, entry)).inner;
    if let Some(request) = &entry.request {
        egui::CollapsingHeader::new("Settings of this result").show(ui, |ui| {
            ui.label(RichText::new(crate::output::parameters_text(request, "")).small());
        });
    }
    action
}

/// What can be done with a result: reuse its settings, save, copy, show its folder,
/// use it as a prompt image.
fn entry_buttons_ui(ui: &mut egui::Ui, entry: &GalleryEntry) -> ResultAction {
    let mut action = ResultAction::None;
    if let Some(request) = &entry.request {
        if ui.button("Use these settings").clicked() {
            action = ResultAction::UseSettings(Box::new(request.clone()));
        }
        // A draft says so: TAESD's picture is softer than the VAE's.
        let decode = match request.final_decode {
            crate::pipeline::FinalDecode::Taesd => ", TAESD decode",
            crate::pipeline::FinalDecode::Vae => "",
        };
        ui.label(
            RichText::new(format!(
                "seed {}, {} steps, {}{decode}",
                request.seed,
                request.steps,
                request.sampler.display_name()
            ))
            .weak(),
        );
    }
    if let Some(source) = entry.source() {
        if ui
            .button("Save as...")
            .on_hover_text("Save a copy elsewhere")
            .clicked()
        {
            action = ResultAction::SaveAs(source.clone());
        }
        if ui
            .button("Copy")
            .on_hover_text("Copy the image to the clipboard")
            .clicked()
        {
            action = ResultAction::Copy(source);
        }
    }
    if let Some(path) = &entry.path {
        if let Some(dir) = path.parent()
            && ui
                .button("Open folder")
                .on_hover_text("Show the output folder")
                .clicked()
        {
            action = ResultAction::OpenFolder(dir.to_path_buf());
        }
        if ui.button("Use as image prompt").clicked() {
            action = ResultAction::UseAsImage(path.clone());
        }
        if ui.button("Use as negative").clicked() {
            action = ResultAction::UseAsNegative(path.clone());
        }
        ui.label(RichText::new(path.display().to_string()).small().weak());
    }
    action
}

/// The sweep's results in one labelled row, with buttons to save it as one image or close it.
fn sweep_ui(ui: &mut egui::Ui, sweep: &Sweep, width: f32) -> ResultAction {
    let mut action = ResultAction::None;
    ui.horizontal(|ui| {
        ui.label(RichText::new(&sweep.title).strong());
        let done = sweep.cells.iter().filter(|c| c.image.is_some()).count();
        ui.label(format!("{done}/{} done", sweep.cells.len()));
        if ui
            .add_enabled(sweep.is_complete(), egui::Button::new("Save grid"))
            .on_hover_text("Save the labelled row as one image in the output folder")
            .clicked()
        {
            action = ResultAction::SaveGrid;
        }
        if ui.button("Close sweep").clicked() {
            action = ResultAction::CloseSweep;
        }
    });
    let cell_side = (width / sweep.cells.len().max(1) as f32 - 12.0).clamp(64.0, 384.0);
    egui::ScrollArea::horizontal()
        .id_salt("sweep")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                for cell in &sweep.cells {
                    ui.vertical(|ui| {
                        ui.label(&cell.label);
                        match &cell.image {
                            Some((_, texture)) => {
                                ui.add(texture::fitted(texture, cell_side));
                            }
                            None => {
                                ui.spinner();
                            }
                        }
                    });
                }
            });
        });
    action
}

#[cfg(test)]
mod tests {
    use super::super::compare::settings_differences;
    use super::*;

    fn image() -> Arc<RgbImage> {
        Arc::new(RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3])))
    }

    #[test]
    fn the_comparison_lists_a_different_method() {
        let seed = Request::default();
        let noisy = Request {
            noise: 0.35,
            combine: crate::pipeline::Combine::Subtract,
            ..Request::default()
        };
        let mut differences = settings_differences(&seed, &noisy);
        differences.sort();
        assert_eq!(
            differences,
            [
                "combine: \"weighted-average\" vs \"subtract\"",
                "noise: 0.0 vs 0.35"
            ]
        );
    }

    fn texts(messages: &Messages) -> Vec<&str> {
        messages.shown().map(|m| m.text.as_str()).collect()
    }

    fn finished(job: JobId, saved: Vec<Result<PathBuf, String>>) -> Event {
        Event::Finished {
            job,
            images: vec![image(); saved.len().max(1)],
            request: Box::default(),
            saved,
            elapsed_secs: 2.0,
        }
    }

    #[test]
    fn a_job_runs_from_queue_to_gallery() {
        let ctx = egui::Context::default();
        let mut results = Results::default();
        let mut messages = Messages::default();
        let job = JobId(7);
        results.apply(Event::Queued { job }, &ctx, &mut messages);
        assert_eq!(results.queued, [job]);
        results.apply(Event::Started { job }, &ctx, &mut messages);
        assert!(results.queued.is_empty());
        let step = Event::Step {
            job,
            step: 2,
            total: 4,
            preview: Some((image(), PreviewKind::Taesd)),
            elapsed_secs: 1.0,
        };
        results.apply(step, &ctx, &mut messages);
        let running = results
            .running
            .as_ref()
            .map(|r| (r.step, r.rate(), r.eta_secs(), r.preview_kind));
        assert_eq!(running, Some((2, 2.0, 1.0, Some(PreviewKind::Taesd))));
        let saved = vec![Ok("/out/a.png".into()), Err("disk full".to_string())];
        results.apply(finished(job, saved), &ctx, &mut messages);
        assert_eq!(
            texts(&messages),
            ["Could not save a result (it is still in the gallery): disk full"]
        );
        assert!(results.running.is_none());
        assert_eq!(results.gallery.len(), 2);
        assert_eq!(results.gallery[1].path, Some("/out/a.png".into()));
        assert_eq!(results.selected, Some(0));
    }

    #[test]
    fn steps_of_another_job_and_failures_are_kept_apart() {
        let ctx = egui::Context::default();
        let mut results = Results::default();
        let mut messages = Messages::default();
        results.apply(Event::Queued { job: JobId(2) }, &ctx, &mut messages);
        results.apply(Event::Started { job: JobId(1) }, &ctx, &mut messages);
        let other = Event::Step {
            job: JobId(2),
            step: 1,
            total: 4,
            preview: Some((image(), PreviewKind::Taesd)),
            elapsed_secs: 1.0,
        };
        results.apply(other, &ctx, &mut messages);
        assert_eq!(results.running.as_ref().map(|r| r.step), Some(0));
        let failed = Event::Failed {
            job: JobId(1),
            error: "out of memory".to_string(),
        };
        results.apply(failed, &ctx, &mut messages);
        assert_eq!(texts(&messages), ["Run 1 failed: out of memory"]);
        assert!(results.running.is_none());
        results.apply(Event::Cancelled { job: JobId(2) }, &ctx, &mut messages);
        assert!(results.queued.is_empty());
    }

    #[test]
    fn a_failed_run_goes_when_a_run_queued_after_it_succeeds() {
        let ctx = egui::Context::default();
        let mut results = Results::default();
        let mut messages = Messages::default();
        // Two runs of one sweep: the second succeeding says nothing of the first.
        for job in [JobId(1), JobId(2)] {
            results.attempts.insert(job, Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        let failed = Event::Failed {
            job: JobId(1),
            error: "out of memory".to_string(),
        };
        results.apply(failed, &ctx, &mut messages);
        results.apply(finished(JobId(2), Vec::new()), &ctx, &mut messages);
        assert_eq!(texts(&messages), ["Run 1 failed: out of memory"]);
        std::thread::sleep(std::time::Duration::from_millis(2));
        results.attempts.insert(JobId(3), Instant::now());
        results.apply(finished(JobId(3), Vec::new()), &ctx, &mut messages);
        assert!(texts(&messages).is_empty(), "{messages:?}");
    }
}
