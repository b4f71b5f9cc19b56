//! The one-line model status under the Generate button.

use super::messages::{Message, MessageSource};
use crate::engine::{Event, LoadedModels};

/// What is loaded, being loaded, or failed, and how long the last run took.
pub struct ModelStatus {
    text: String,
    last_run_secs: Option<f64>,
    /// What the engine holds now, for the at-a-glance list.
    pub loaded: Option<LoadedModels>,
    /// Models are being loaded: queued runs wait for them.
    pub loading: bool,
}

/// Shown until a model is chosen.
const NO_MODELS: &str = "No models loaded: set a model under Models";

impl Default for ModelStatus {
    fn default() -> Self {
        Self {
            text: NO_MODELS.to_string(),
            last_run_secs: None,
            loaded: None,
            loading: false,
        }
    }
}

impl ModelStatus {
    /// Back to "nothing loaded".
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Takes a model-loading event; returns a message for the message list, if any.
    pub fn apply(&mut self, event: &Event) -> Option<Message> {
        match event {
            Event::ModelsLoading => {
                self.text = "Loading models...".to_string();
                self.loading = true;
                self.loaded = None;
            }
            Event::ModelsLoaded {
                elapsed_secs,
                loaded,
                fallback,
            } => {
                self.text = format!(
                    "Models loaded on {} ({}) in {elapsed_secs:.1}s",
                    loaded.device, loaded.dtype
                );
                self.loading = false;
                self.loaded = Some(loaded.clone());
                return fallback
                    .as_ref()
                    .map(|text| Message::warning(MessageSource::Models, text));
            }
            Event::ModelsFailed { error } => {
                self.text = "Models failed to load".to_string();
                self.loading = false;
                return Some(Message::error(
                    MessageSource::Models,
                    format!("Models: {error}"),
                ));
            }
            Event::Finished { elapsed_secs, .. } => self.last_run_secs = Some(*elapsed_secs),
            _ => {}
        }
        None
    }

    /// The line to show.
    pub fn text(&self) -> String {
        match self.last_run_secs {
            Some(secs) => format!("{}; last run {secs:.1}s", self.text),
            None => self.text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_then_failure_is_reported_once() {
        let mut status = ModelStatus::default();
        assert_eq!(status.apply(&Event::ModelsLoading), None);
        assert_eq!(status.text(), "Loading models...");
        assert!(status.loading);
        let message = status.apply(&Event::ModelsFailed {
            error: "x: missing tensor".to_string(),
        });
        assert_eq!(
            message,
            Some(Message::error(
                MessageSource::Models,
                "Models: x: missing tensor"
            ))
        );
        assert_eq!(status.text(), "Models failed to load");
    }

    #[test]
    fn a_finished_run_adds_its_time() {
        let mut status = ModelStatus::default();
        status.apply(&Event::ModelsLoaded {
            elapsed_secs: 1.5,
            loaded: LoadedModels {
                device: "cpu".to_string(),
                dtype: "f32".to_string(),
                ..LoadedModels::default()
            },
            fallback: None,
        });
        status.apply(&Event::Finished {
            job: crate::engine::JobId(1),
            images: Vec::new(),
            request: Box::default(),
            saved: Vec::new(),
            elapsed_secs: 3.0,
        });
        assert_eq!(
            status.text(),
            "Models loaded on cpu (f32) in 1.5s; last run 3.0s"
        );
    }

    #[test]
    fn a_fallback_to_the_cpu_becomes_a_message() {
        let mut status = ModelStatus::default();
        let message = status.apply(&Event::ModelsLoaded {
            elapsed_secs: 1.0,
            loaded: LoadedModels::default(),
            fallback: Some("Metal failed a first test (x), so this runs on the CPU".to_string()),
        });
        assert_eq!(
            message,
            Some(Message::warning(
                MessageSource::Models,
                "Metal failed a first test (x), so this runs on the CPU"
            ))
        );
    }
}
