//! The results side: live preview of the running job, the queue, the gallery
//! and the side-by-side / split comparison.

use std::path::PathBuf;
use std::sync::Arc;

use egui::{RichText, TextureHandle};
use image::RgbImage;

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
    UseSettings(Request),
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
    /// Takes a job event from the engine; returns messages for the message list.
    pub fn apply(&mut self, event: Event, ctx: &egui::Context) -> Vec<String> {
        match event {
            Event::Queued { job } => self.queued.push(job),
            Event::Started { job } => {
                self.queued.retain(|q| *q != job);
                self.running = Some(RunningJob {
                    id: job,
                    step: 0,
                    total: 0,
                    elapsed_secs: 0.0,
                    preview: None,
                    phase: None,
                    preview_kind: None,
                });
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
                    running.step = step;
                    running.total = total;
                    running.phase = None;
                    running.elapsed_secs = elapsed_secs;
                    let Some((preview, preview_kind)) = preview else {
                        return Vec::new();
                    };
                    running.preview_kind = Some(preview_kind);
                    let color = egui::ColorImage::from_rgb(
                        [preview.width() as usize, preview.height() as usize],
                        preview.as_raw(),
                    );
                    match &mut running.preview {
                        Some(texture) => texture.set(color, texture::SMOOTH),
                        None => {
                            running.preview =
                                Some(ctx.load_texture("preview", color, texture::SMOOTH));
                        }
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
                self.finish(job);
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
                            request: Some((*request).clone()),
                            path,
                            compare: false,
                        },
                    );
                }
                self.selected = Some(0);
                return saved
                    .iter()
                    .filter_map(|s| s.as_ref().err())
                    .map(|error| {
                        format!("Could not save a result (it is still in the gallery): {error}")
                    })
                    .collect();
            }
            Event::Failed { job, error } => {
                self.finish(job);
                return vec![format!("Run {} failed: {error}", job.0)];
            }
            Event::Cancelled { job } => self.finish(job),
            _ => {}
        }
        Vec::new()
    }

    /// Forgets a job that ended, queued or running.
    fn finish(&mut self, job: JobId) {
        self.queued.retain(|q| *q != job);
        if self.running.as_ref().is_some_and(|r| r.id == job) {
            self.running = None;
        }
    }

    /// Drops every job (the engine is gone).
    pub fn clear_jobs(&mut self) {
        self.running = None;
        self.queued.clear();
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
            action = sweep_ui(ui, sweep, available.x);
        } else if let Some((a, b)) = self.comparison() {
            self.compare_ui(ui, a, b, side);
        } else if let Some(entry) = self.selected.and_then(|i| self.gallery.get(i)) {
            ui.add(texture::fitted(&entry.texture, side));
            ui.horizontal(|ui| {
                if let Some(request) = &entry.request {
                    if ui.button("Use these settings").clicked() {
                        action = ResultAction::UseSettings(request.clone());
                    }
                    ui.label(
                        RichText::new(format!(
                            "seed {}, {} steps, {}",
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
            });
            if let Some(request) = &entry.request {
                egui::CollapsingHeader::new("Settings of this result").show(ui, |ui| {
                    ui.label(RichText::new(crate::output::parameters_text(request, "")).small());
                });
            }
        } else {
            ui.label(RichText::new("Drop an image you want and an image you don't want, then press Generate (Ctrl+Enter).").weak());
        }
        action
    }

    /// Two results over the same area with a draggable split line, and their differing settings.
    fn compare_ui(&mut self, ui: &mut egui::Ui, a: usize, b: usize, side: f32) {
        ui.add(egui::Slider::new(&mut self.split, 0.0..=1.0).text("split"));
        let (left, right) = (&self.gallery[a], &self.gallery[b]);
        let size = texture::fitted(&left.texture, side)
            .size()
            .unwrap_or(egui::vec2(side, side));
        let (rect, response) = ui.allocate_exact_size(size, egui::Sense::drag());
        if let Some(pos) = response.interact_pointer_pos() {
            self.split = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
        }
        let split_x = rect.left() + rect.width() * self.split;
        let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        let painter = ui.painter_at(rect);
        painter.image(left.texture.id(), rect, uv, egui::Color32::WHITE);
        let right_rect = egui::Rect::from_min_max(egui::pos2(split_x, rect.top()), rect.max);
        let right_uv = egui::Rect::from_min_max(egui::pos2(self.split, 0.0), egui::pos2(1.0, 1.0));
        painter.image(
            right.texture.id(),
            right_rect,
            right_uv,
            egui::Color32::WHITE,
        );
        painter.vline(
            split_x,
            rect.y_range(),
            egui::Stroke::new(2.0, egui::Color32::WHITE),
        );
        let differences = match (&left.request, &right.request) {
            (Some(l), Some(r)) => settings_differences(l, r),
            _ => vec!["(settings unknown)".to_string()],
        };
        ui.label(
            RichText::new(format!(
                "Differences: {}",
                if differences.is_empty() {
                    "none".to_string()
                } else {
                    differences.join(", ")
                }
            ))
            .small(),
        );
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

/// Names and values of the settings in which two requests differ.
pub fn settings_differences(a: &Request, b: &Request) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(key, value)| b.get(*key) != Some(*value))
        .map(|(key, value)| {
            let other = b.get(key).map(|v| v.to_string()).unwrap_or_default();
            format!("{key}: {value} vs {other}")
        })
        .collect()
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
            ["combine: \"concat\" vs \"subtract\"", "noise: 0.0 vs 0.35"]
        );
    }

    #[test]
    fn a_job_runs_from_queue_to_gallery() {
        let ctx = egui::Context::default();
        let mut results = Results::default();
        let job = JobId(7);
        results.apply(Event::Queued { job }, &ctx);
        assert_eq!(results.queued, [job]);
        results.apply(Event::Started { job }, &ctx);
        assert!(results.queued.is_empty());
        let step = Event::Step {
            job,
            step: 2,
            total: 4,
            preview: Some((image(), PreviewKind::Taesd)),
            elapsed_secs: 1.0,
        };
        assert!(results.apply(step, &ctx).is_empty());
        let running = results
            .running
            .as_ref()
            .map(|r| (r.step, r.rate(), r.eta_secs(), r.preview_kind));
        assert_eq!(running, Some((2, 2.0, 1.0, Some(PreviewKind::Taesd))));
        let finished = Event::Finished {
            job,
            images: vec![image(), image()],
            request: Box::default(),
            saved: vec![Ok("/out/a.png".into()), Err("disk full".to_string())],
            elapsed_secs: 2.0,
        };
        let messages = results.apply(finished, &ctx);
        assert_eq!(
            messages,
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
        results.apply(Event::Queued { job: JobId(2) }, &ctx);
        results.apply(Event::Started { job: JobId(1) }, &ctx);
        let other = Event::Step {
            job: JobId(2),
            step: 1,
            total: 4,
            preview: Some((image(), PreviewKind::Taesd)),
            elapsed_secs: 1.0,
        };
        results.apply(other, &ctx);
        assert_eq!(results.running.as_ref().map(|r| r.step), Some(0));
        let failed = Event::Failed {
            job: JobId(1),
            error: "out of memory".to_string(),
        };
        assert_eq!(results.apply(failed, &ctx), ["Run 1 failed: out of memory"]);
        assert!(results.running.is_none());
        results.apply(Event::Cancelled { job: JobId(2) }, &ctx);
        assert!(results.queued.is_empty());
    }
}
