//! Errors and notices shown above the panes until dismissed.

/// The messages, oldest first.
#[derive(Debug, Default)]
pub struct Messages {
    list: Vec<String>,
}

impl Messages {
    /// Adds one message.
    pub fn push(&mut self, message: impl Into<String>) {
        self.list.push(message.into());
    }

    /// Drops the messages that begin with `prefix` (a problem that has gone away).
    pub fn dismiss_starting_with(&mut self, prefix: &str) {
        self.list.retain(|message| !message.starts_with(prefix));
    }

    /// The messages now shown.
    #[cfg(feature = "test-support")]
    pub fn as_slice(&self) -> &[String] {
        &self.list
    }

    /// Each message with a button to dismiss it.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = None;
        for (i, message) in self.list.iter().enumerate() {
            // A long message (a download error with its URL) wraps instead of
            // widening the panel past the window; its button stays at the right.
            egui::Sides::new().shrink_left().wrap().show(
                ui,
                |ui| ui.colored_label(ui.visuals().warn_fg_color, message),
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

impl Extend<String> for Messages {
    fn extend<T: IntoIterator<Item = String>>(&mut self, messages: T) {
        self.list.extend(messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_gone_away_takes_only_its_own_messages() {
        let mut messages = Messages::default();
        messages.push("Models: x.safetensors: missing tensor");
        messages.push("Run 1 failed: out of memory");
        messages.push("Models: y: not a file");
        messages.dismiss_starting_with("Models: ");
        assert_eq!(messages.list, ["Run 1 failed: out of memory"]);
    }

    #[test]
    fn a_long_message_wraps_and_keeps_its_button_in_the_panel() {
        use egui_kittest::kittest::Queryable;
        let width = 400.0;
        let mut messages = Messages::default();
        let url = "https://example.org/a/long/path".repeat(10);
        messages.push(format!("download failed: cannot reach {url}"));
        let mut harness = egui_kittest::Harness::builder()
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
