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
