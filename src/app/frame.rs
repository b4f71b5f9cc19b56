//! One frame of the window: input first, then the settings column, the gallery strip
//! and the central area with the messages, the panes and the results.

use egui::{Key, RichText};

use super::controls::{self, ControlAction};
use super::downloads::use_found_model;
use super::input::pasted_dir;
use super::loader::Target;
use super::models_panel;
use super::panes::{NEEDS_GUIDANCE, PaneAction};
use super::results::ResultAction;
use super::{GENERATE_SHORTCUT, MinusApp, tasks};
use crate::engine::Command;
use crate::pipeline::Request;

/// Where files being dragged over the window are, to outline the pane they would land in.
#[derive(Clone, Copy)]
struct DragHover {
    hovering_files: bool,
    pointer: Option<egui::Pos2>,
}

impl DragHover {
    fn over(self, rect: egui::Rect) -> bool {
        self.hovering_files && self.pointer.is_some_and(|p| rect.contains(p))
    }
}

impl MinusApp {
    /// Draws one frame (eframe's `App::ui` and the UI tests call this).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.frames += 1;
        let ctx = ui.ctx().clone();
        self.handle_input(&ctx);
        egui::Panel::left("settings")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| self.settings_column_ui(ui));
        egui::Panel::bottom("gallery")
            .resizable(true)
            .default_size(150.0)
            .show(ui, |ui| self.results.gallery_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.central_ui(ui));
        self.update_mask_views(&ctx);
        self.mask_editor_ui(&ctx);
        // The engine takes the next preview only once this one is on screen.
        if std::mem::take(&mut self.preview_to_acknowledge) {
            self.engine.send(Command::PreviewShown);
        }
    }

    /// Everything that arrived since the last frame, and the keyboard shortcuts.
    fn handle_input(&mut self, ctx: &egui::Context) {
        self.handle_engine_events(ctx);
        self.handle_loaded_files(ctx);
        self.handle_dropped_files(ctx);
        self.handle_browsed_paths();
        self.handle_found_loras();
        if ctx.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            self.generate();
        }
        self.notices.deliver(&mut self.messages);
        self.handle_paste(ctx);
        // With the mask editor open, Escape closes the editor instead.
        if self.mask_editor.is_none()
            && ctx.input(|i| i.key_pressed(Key::Escape))
            && let Some(job) = &self.results.running
        {
            self.engine.send(Command::Cancel(job.id));
        }
    }

    /// The left column: Generate, the models and every setting.
    fn settings_column_ui(&mut self, ui: &mut egui::Ui) {
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
            self.models_ui(ui);
            ui.separator();
            self.fast_ui(ui);
            self.controls_ui(ui);
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
    }

    /// What is loaded, the downloads and the Models section.
    fn models_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new(self.model_status.text()).small());
        models_panel::loaded_ui(ui, self.model_status.loaded.as_ref());
        // Once shown, the first-run offer stays until models load: going when a first
        // path is typed or its field loses focus would move the fields up under the
        // pointer.
        let offer_defaults = !self.settings.models.paths.is_set()
            || (self.downloads.offered_first_run() && self.model_status.loaded.is_none());
        self.downloads.ui(ui, &self.engine, offer_defaults);
        self.models_panel.family = self.loaded_family();
        let action = self.models_panel.ui(ui, &mut self.settings.models);
        self.models_action(action);
        if let Some(model) = self.downloads.found_ui(ui) {
            use_found_model(&mut self.settings.models.paths, model);
            self.load_models();
        }
    }

    /// The generation settings, the output folder, previews and the sweep.
    fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let preview = self.settings.preview;
        let taesd_offer = self.taesd_offer_mb();
        let family = self.loaded_family();
        let action = controls::settings_ui(ui, &mut self.settings, family, taesd_offer);
        if self.settings.preview != preview {
            self.engine.send(Command::SetPreview(self.settings.preview));
        }
        match action {
            ControlAction::None => {}
            ControlAction::RunSweep => self.run_sweep(),
            ControlAction::DownloadTaesd => {
                let family = self.loaded_family();
                self.downloads.start_preview(&self.engine, family);
            }
            ControlAction::Browse(field, kind) => {
                self.browser.open(&self.notices, field, kind);
            }
        }
    }

    /// Messages, the two panes and the results.
    fn central_ui(&mut self, ui: &mut egui::Ui) {
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
        let hover = ui.ctx().input(|i| DragHover {
            hovering_files: !i.raw.hovered_files.is_empty(),
            pointer: i.pointer.latest_pos(),
        });
        ui.columns(2, |columns| self.panes_ui(columns, hover));
        ui.separator();
        let action = self.results.main_ui(ui);
        self.result_action(action);
    }

    /// The positive and the negative pane side by side.
    fn panes_ui(&mut self, columns: &mut [egui::Ui], hover: DragHover) {
        let fit = self.settings.request.fit;
        let negative_mark = self
            .settings
            .request
            .guidance_off()
            .then_some(NEEDS_GUIDANCE);
        let panes = [
            (&mut self.positive, Target::Positive, None),
            (&mut self.negative, Target::Negative, negative_mark),
        ];
        let mut actions = Vec::new();
        for (i, ((pane, target, mark), column)) in panes.into_iter().zip(columns).enumerate() {
            let (rect, action) = pane.ui(column, hover.over(self.pane_rects[i]), fit, mark);
            self.pane_rects[i] = rect;
            actions.push((target, action));
        }
        for (target, action) in actions {
            match action {
                PaneAction::None => {}
                PaneAction::Add => tasks::pick_images(&self.notices, &self.loader, target),
                PaneAction::Paste => {
                    tasks::paste_image(&self.notices, &self.loader, target, pasted_dir());
                }
                PaneAction::EditMask(index) => self.open_mask_editor((target, index)),
            }
        }
    }

    /// Carries out what the results area asked for.
    fn result_action(&mut self, action: ResultAction) {
        match action {
            ResultAction::None => {}
            ResultAction::Cancel(job) => self.engine.send(Command::Cancel(job)),
            ResultAction::UseSettings(request) => {
                self.restore(*request);
            }
            ResultAction::UseAsImage(path) => self.loader.load(vec![path], Target::Positive),
            ResultAction::UseAsNegative(path) => self.loader.load(vec![path], Target::Negative),
            ResultAction::SaveAs(source) => tasks::save_as(&self.notices, source),
            ResultAction::Copy(source) => tasks::copy_image(&self.notices, source),
            ResultAction::OpenFolder(dir) => tasks::open_folder(&self.notices, &dir),
            ResultAction::SaveGrid => self.save_sweep_grid(),
            ResultAction::CloseSweep => self.results.sweep = None,
        }
    }
}
