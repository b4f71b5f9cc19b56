//! Notices, warnings and errors shown above the panes until dismissed, or until a
//! later attempt of what failed succeeds.

use std::time::Instant;

/// How a message reads: a neutral notice, or a problem in its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Something done ("Image copied"): drawn in the text colour.
    Info,
    /// Done, but not quite as asked (settings ignored, a CPU fallback).
    Warning,
    /// Something failed.
    Error,
}

/// What a message is about; a later attempt of the same source that succeeds
/// takes the messages of earlier attempts away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageSource {
    /// Loading the chosen models.
    Models,
    /// Downloading models into the hub cache.
    Download,
    /// Listing the model files of a ComfyUI/A1111 folder.
    ModelsFolder,
    /// A run: refused for its settings, or failed.
    Generation,
    /// Saving a finished result into the output folder.
    Autosave,
    /// Save as... of a result.
    SaveAs,
    /// Saving a sweep's grid.
    Grid,
    /// A sweep's list of values.
    Sweep,
    /// Copying to and pasting from the clipboard.
    Clipboard,
    /// Reading image files: prompt images and the gallery.
    Files,
    /// Settings restored from a dropped PNG.
    Restore,
    /// The file dialogs of the Browse... buttons.
    Browse,
    /// Opening the output folder in the file manager.
    OpenFolder,
    /// The engine thread itself.
    Engine,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub source: MessageSource,
    pub text: String,
}

impl Message {
    /// A notice of something done.
    pub fn info(source: MessageSource, text: impl Into<String>) -> Self {
        Self::new(MessageKind::Info, source, text)
    }

    /// Done, but not quite as asked.
    pub fn warning(source: MessageSource, text: impl Into<String>) -> Self {
        Self::new(MessageKind::Warning, source, text)
    }

    /// Something failed.
    pub fn error(source: MessageSource, text: impl Into<String>) -> Self {
        Self::new(MessageKind::Error, source, text)
    }

    fn new(kind: MessageKind, source: MessageSource, text: impl Into<String>) -> Self {
        Self {
            kind,
            source,
            text: text.into(),
        }
    }

    /// The colour the message is drawn in.
    fn colour(&self, visuals: &egui::Visuals) -> egui::Color32 {
        match self.kind {
            MessageKind::Info => visuals.text_color(),
            MessageKind::Warning => visuals.warn_fg_color,
            MessageKind::Error => visuals.error_fg_color,
        }
    }
}

/// The messages, oldest first, each with when it was reported.
#[derive(Debug, Default)]
pub struct Messages {
    list: Vec<(Message, Instant)>,
}

impl Messages {
    /// Adds one message.
    pub fn push(&mut self, message: Message) {
        self.list.push((message, Instant::now()));
    }

    /// An attempt of `source` begun at `started` succeeded: the messages of that
    /// source reported before it began are about attempts it replaces, and go.
    /// Those reported while it ran (another file of the same drop) stay.
    pub fn succeeded(&mut self, source: MessageSource, started: Instant) {
        self.list
            .retain(|(message, reported)| message.source != source || *reported >= started);
    }

    /// The messages now shown.
    #[cfg(any(test, feature = "test-support"))]
    pub fn shown(&self) -> impl Iterator<Item = &Message> {
        self.list.iter().map(|(message, _)| message)
    }

    /// Each message with a button to dismiss it.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = None;
        for (i, (message, _)) in self.list.iter().enumerate() {
            // A long message (a download error with its URL) wraps instead of
            // widening the panel past the window; its button stays at the right.
            egui::Sides::new().shrink_left().wrap().show(
                ui,
                |ui| ui.colored_label(message.colour(ui.visuals()), &message.text),
                |ui| {
                    if ui.small_button("dismiss").clicked() {
                        dismiss = Some(i);
                    }
                },
            );
        }
        if let Some(i) = dismiss {
            self.list.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    use super::*;

    fn texts(messages: &Messages) -> Vec<&str> {
        messages.shown().map(|m| m.text.as_str()).collect()
    }

    #[test]
    fn a_success_takes_only_earlier_messages_of_its_own_source() {
        let mut messages = Messages::default();
        messages.push(Message::error(MessageSource::Models, "x: missing tensor"));
        messages.push(Message::error(MessageSource::Generation, "out of memory"));
        // Apart from the messages in time, as a retry is.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let started = Instant::now();
        messages.push(Message::warning(MessageSource::Models, "runs on the CPU"));
        messages.succeeded(MessageSource::Models, started);
        assert_eq!(texts(&messages), ["out of memory", "runs on the CPU"]);
        messages.succeeded(MessageSource::Generation, Instant::now());
        assert_eq!(texts(&messages), ["runs on the CPU"]);
    }

    /// The colours the text shapes of `harness`'s last frame were drawn in, by text.
    fn drawn_colours<S>(harness: &Harness<'_, S>) -> Vec<(String, egui::Color32)> {
        fn walk(shape: &egui::Shape, found: &mut Vec<(String, egui::Color32)>) {
            match shape {
                egui::Shape::Vec(shapes) => shapes.iter().for_each(|s| walk(s, found)),
                egui::Shape::Text(text) => {
                    let job = &text.galley.job;
                    let colour = job
                        .sections
                        .first()
                        .map(|s| s.format.color)
                        .filter(|c| *c != egui::Color32::PLACEHOLDER)
                        .unwrap_or(text.fallback_color);
                    found.push((job.text.clone(), colour));
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for clipped in &harness.output().shapes {
            walk(&clipped.shape, &mut found);
        }
        found
    }

    #[test]
    fn a_notice_is_drawn_in_the_text_colour_and_problems_in_theirs() {
        let mut messages = Messages::default();
        messages.push(Message::info(MessageSource::Clipboard, "Image copied"));
        messages.push(Message::warning(MessageSource::Files, "settings ignored"));
        messages.push(Message::error(MessageSource::Download, "download failed"));
        let mut harness = Harness::builder()
            .build_ui_state(|ui, messages: &mut Messages| messages.ui(ui), messages);
        harness.run();
        let visuals = harness.ctx.global_style().visuals.clone();
        let colours = drawn_colours(&harness);
        let colour_of = |text: &str| {
            colours
                .iter()
                .find(|(drawn, _)| drawn == text)
                .map(|(_, colour)| *colour)
        };
        assert_eq!(colour_of("Image copied"), Some(visuals.text_color()));
        assert_eq!(colour_of("settings ignored"), Some(visuals.warn_fg_color));
        assert_eq!(colour_of("download failed"), Some(visuals.error_fg_color));
    }

    #[test]
    fn a_long_message_wraps_and_keeps_its_button_in_the_panel() {
        let width = 400.0;
        let mut messages = Messages::default();
        let url = "https://example.org/a/long/path".repeat(10);
        messages.push(Message::error(
            MessageSource::Download,
            format!("download failed: cannot reach {url}"),
        ));
        let mut harness = Harness::builder()
            .with_size(egui::vec2(width, 300.0))
            .build_ui_state(|ui, messages: &mut Messages| messages.ui(ui), messages);
        harness.run();
        let button = harness.get_by_label("dismiss").rect();
        let message = harness.get_by_label_contains("download failed").rect();
        assert!(button.max.x <= width, "{button:?}");
        assert!(message.max.x <= button.min.x, "{message:?} {button:?}");
        assert!(
            message.height() > 2.0 * button.height(),
            "not wrapped: {message:?}"
        );
    }
}
