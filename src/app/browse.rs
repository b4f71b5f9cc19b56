//! Browse… buttons: the system file dialog runs off the UI thread, behind a seam
//! the tests answer instead of a person.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::messages::MessageSource;
use super::tasks::{Done, Notices, spawn};

/// A path field that has a Browse… button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    Model,
    Vae,
    IpAdapter,
    ImageEncoder,
    /// A LoRA file to add to the list.
    Lora,
    /// The folder whose LoRA files are listed.
    LoraDir,
    ModelsDir,
    OutputDir,
}

/// Whether the dialog picks a file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickKind {
    File,
    Folder,
}

impl PathField {
    /// What the field may hold: a file, a folder, or either (diffusers folders and
    /// single files are both models).
    pub fn kinds(self) -> &'static [PickKind] {
        match self {
            Self::Model | Self::Vae | Self::ImageEncoder => &[PickKind::File, PickKind::Folder],
            Self::IpAdapter | Self::Lora => &[PickKind::File],
            Self::ModelsDir | Self::OutputDir | Self::LoraDir => &[PickKind::Folder],
        }
    }

    /// The file dialog's filter: a name and the extensions it lets through.
    fn filter(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Self::Model => Some(("Checkpoints", &["safetensors", "ckpt"])),
            Self::Vae => Some(("VAEs", &["safetensors", "ckpt", "pt", "bin"])),
            Self::IpAdapter => Some(("IP-Adapters", &["safetensors", "bin"])),
            Self::ImageEncoder => Some(("Image encoders", &["safetensors", "bin"])),
            Self::Lora => Some(("LoRAs", &["safetensors"])),
            Self::ModelsDir | Self::OutputDir | Self::LoraDir => None,
        }
    }
}

/// Asks the user for a path (the system dialog; tests answer with a fixed one).
pub trait PathPicker: Send + Sync {
    /// The chosen path, or `None` when the user cancelled.
    fn pick(&self, field: PathField, kind: PickKind) -> Option<PathBuf>;
}

/// The operating system's file dialog (rfd).
struct SystemPicker;

impl PathPicker for SystemPicker {
    fn pick(&self, field: PathField, kind: PickKind) -> Option<PathBuf> {
        let dialog = rfd::FileDialog::new();
        match kind {
            PickKind::Folder => dialog.pick_folder(),
            PickKind::File => match field.filter() {
                Some((name, extensions)) => dialog.add_filter(name, extensions).pick_file(),
                None => dialog.pick_file(),
            },
        }
    }
}

/// A path chosen for a field.
type Answer = (PathField, PathBuf);

/// The Browse buttons' picker and the answers the window has not applied yet.
pub struct Browser {
    picker: Arc<dyn PathPicker>,
    answers: (Sender<Answer>, Receiver<Answer>),
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            picker: Arc::new(SystemPicker),
            answers: unbounded(),
        }
    }
}

impl Browser {
    /// Replaces the system dialog (tests).
    #[cfg(feature = "test-support")]
    pub fn set_picker(&mut self, picker: Arc<dyn PathPicker>) {
        self.picker = picker;
    }

    /// Opens the dialog on its own thread; the answer arrives through [`Self::answers`].
    pub fn open(&self, notices: &Notices, field: PathField, kind: PickKind) {
        let picker = self.picker.clone();
        let answers = self.answers.0.clone();
        let wake = notices.waker();
        spawn(notices, MessageSource::Browse, "file-dialog", move || {
            if let Some(path) = picker.pick(field, kind) {
                // The window owns the receiver for as long as it lives.
                let _ = answers.send((field, path));
                wake();
            }
            // The field shows the answer.
            Ok(Done::Nothing)
        });
    }

    /// Paths chosen since the last call.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.1.try_iter().collect()
    }
}

/// The text of every Browse... button.
pub const BROWSE_TEXT: &str = "Browse...";

/// A "Browse..." button for `field` (a menu of File.../Folder... when it takes both);
/// the kind of dialog asked for.
pub fn browse_button(ui: &mut egui::Ui, field: PathField, label: &str) -> Option<PickKind> {
    let accessible = format!("browse {label}");
    match field.kinds() {
        [kind] => {
            let button = ui.small_button(BROWSE_TEXT).on_hover_text(match kind {
                PickKind::File => "Choose a file",
                PickKind::Folder => "Choose a folder",
            });
            button.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::Button, true, accessible.clone())
            });
            button.clicked().then_some(*kind)
        }
        kinds => {
            let mut chosen = None;
            let menu = ui.menu_button(BROWSE_TEXT, |ui| {
                for kind in kinds {
                    let text = match kind {
                        PickKind::File => "File...",
                        PickKind::Folder => "Folder...",
                    };
                    if ui.button(text).clicked() {
                        chosen = Some(*kind);
                        ui.close();
                    }
                }
            });
            menu.response.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::Button, true, accessible.clone())
            });
            chosen
        }
    }
}
