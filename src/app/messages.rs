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
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().warn_fg_color, message);
                if ui.small_button("dismiss").clicked() {
                    dismiss = Some(i);
                }
            });
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
}
