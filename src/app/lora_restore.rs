//! A restored picture's LoRAs: looked for (by path, else by hash in the LoRA folders)
//! on a thread, then put into the LoRA list at their saved strengths, with one line
//! naming those not found.

use super::MinusApp;
use super::messages::{Message, MessageSource};
use crate::weights::lora::LoraChoice;
use crate::weights::lora::library::describe_missing;

impl MinusApp {
    /// Starts looking for the LoRAs a restored picture ran with; without any, the list
    /// empties (the picture was made without LoRAs).
    pub(super) fn restore_loras(&mut self, saved: Vec<LoraChoice>) {
        let library = &mut self.models_panel.loras;
        if saved.is_empty() {
            library.forget_finds();
            self.use_loras(Vec::new());
            return;
        }
        let wake = self.notices.waker();
        if let Err(error) = library.find(saved, &self.settings.models, wake) {
            let text = format!("cannot look for the picture's LoRAs: {error}");
            self.messages
                .push(Message::error(MessageSource::Restore, text));
        }
    }

    /// Puts the LoRAs the latest restore found into the list, and names those missing.
    pub(super) fn handle_found_loras(&mut self) {
        let Some(restored) = self.models_panel.loras.take_found() else {
            return;
        };
        if !restored.missing.is_empty() {
            let text = format!(
                "LoRAs not found at their paths or by hash in the LoRA folders: {}",
                describe_missing(&restored.missing)
            );
            self.messages
                .push(Message::warning(MessageSource::Restore, text));
        }
        self.use_loras(restored.found);
    }

    /// Makes `loras` the list, loading the models when it changes what they merge.
    fn use_loras(&mut self, loras: Vec<LoraChoice>) {
        let current = &self.settings.models.paths.loras;
        let same = current.len() == loras.len()
            && current
                .iter()
                .zip(&loras)
                .all(|(a, b)| a.path == b.path && a.strength == b.strength);
        self.settings.models.paths.loras = loras;
        if !same {
            self.load_models();
        }
    }
}
