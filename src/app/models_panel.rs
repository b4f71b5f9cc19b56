//! The Models section: what is loaded at a glance, the adapter chosen by kind, and
//! every path with a Browse... button. A changed model reloads without an extra click.

use std::path::PathBuf;

use egui::RichText;

use super::browse::{PathField, PickKind};
use super::fields::{choice_field, optional_path_field, path_field};
use super::loras::{LoraAction, LoraLibrary};
use super::settings::ModelSettings;
use crate::device::DeviceChoice;
use crate::engine::LoadedModels;
use crate::models::family::ModelFamily;
use crate::weights::ModelPaths;
use crate::weights::catalogue::{Catalogue, CatalogueEntry};

/// What the Models section asks the app to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelsAction {
    None,
    /// Load the models as they are set now.
    Reload,
    Browse(PathField, PickKind),
    ScanModelsDir,
    /// Use the catalogue adapter of this name (downloading it first if needed).
    ChooseAdapter(String),
    /// Download the offered adapter, then use it.
    DownloadAdapter(String),
}

/// The Models section's own state.
#[derive(Default)]
pub struct ModelsPanel {
    /// A model path was typed into and not loaded yet: it loads when the field
    /// loses focus.
    edited: bool,
    /// An adapter chosen by kind that is not downloaded yet (its catalogue name).
    pub offer: Option<String>,
    /// The built-in catalogue, whose adapters the kind list offers (`None` only if
    /// the built-in file were broken: then the list is empty).
    catalogue: Option<&'static Catalogue>,
    /// The LoRA folders' files, and restored LoRAs being looked for.
    pub loras: LoraLibrary,
    /// The loaded model's family: the kind list offers the adapters made for it.
    pub family: ModelFamily,
}

impl ModelsPanel {
    /// The section with the catalogue's adapters.
    pub fn new() -> Self {
        Self {
            catalogue: Catalogue::built_in().ok(),
            ..Self::default()
        }
    }

    /// The catalogue's adapters for the loaded model's family, in order.
    fn adapters(&self) -> impl Iterator<Item = &CatalogueEntry> {
        let family = self.family;
        self.catalogue
            .into_iter()
            .flat_map(move |c| c.adapters_for(family))
    }

    /// The label of the adapter `path` is, "Other file", or "None".
    fn adapter_label(&self, path: Option<&PathBuf>) -> String {
        let Some(path) = path else {
            return "None".to_string();
        };
        self.catalogue
            .as_ref()
            .and_then(|c| c.adapter_for_file(path))
            .map_or("Other file", CatalogueEntry::display_name)
            .to_string()
    }

    /// Draws the section (collapsed once a model is set).
    pub fn ui(&mut self, ui: &mut egui::Ui, models: &mut ModelSettings) -> ModelsAction {
        let mut action = ModelsAction::None;
        egui::CollapsingHeader::new("Models")
            .default_open(!models.paths.is_set())
            .show(ui, |ui| action = self.fields_ui(ui, models));
        action
    }

    fn fields_ui(&mut self, ui: &mut egui::Ui, models: &mut ModelSettings) -> ModelsAction {
        let paths = self.paths_ui(ui, &mut models.paths);
        if self.edited {
            ui.label(RichText::new("The models reload when you leave the field").small());
        }
        let device = choice_field(
            ui,
            "Device",
            &mut models.device,
            DeviceChoice::ALL,
            DeviceChoice::name,
        )
        .on_hover_text(
            "auto: CUDA, then Metal on Apple silicon, then the CPU (a GPU failing a \
                 first test falls back to the CPU)",
        );
        let device = if device.changed() {
            ModelsAction::Reload
        } else {
            ModelsAction::None
        };
        let folder = folder_ui(ui, &mut models.models_dir);
        ui.separator();
        let loras = match self.loras.ui(ui, models) {
            LoraAction::None => ModelsAction::None,
            LoraAction::Reload => ModelsAction::Reload,
            LoraAction::Browse(field, kind) => ModelsAction::Browse(field, kind),
        };
        [paths, device, folder, loras]
            .into_iter()
            .find(|action| *action != ModelsAction::None)
            .unwrap_or(ModelsAction::None)
    }

    /// The model, VAE, adapter and image encoder rows.
    fn paths_ui(&mut self, ui: &mut egui::Ui, paths: &mut ModelPaths) -> ModelsAction {
        let mut action = ModelsAction::None;
        let mut take = |candidate: ModelsAction| {
            if candidate != ModelsAction::None {
                action = candidate;
            }
        };
        let mut model = paths.model.display().to_string();
        let edit = path_field(
            ui,
            "Model",
            &mut model,
            "A diffusers SD 1.5 or SDXL folder, or a single-file checkpoint (.safetensors or .ckpt)",
            PathField::Model,
        );
        if edit.response.changed() {
            paths.model = PathBuf::from(model.trim());
        }
        take(self.after_edit(&edit.response, edit.browse, PathField::Model));
        let edit = optional_path_field(
            ui,
            "VAE",
            &mut paths.vae,
            "Optional: a VAE folder or file replacing the model's",
            PathField::Vae,
        );
        take(self.after_edit(&edit.response, edit.browse, PathField::Vae));
        take(self.adapter_ui(ui, paths.ip_adapter.as_ref()));
        let edit = optional_path_field(
            ui,
            "IP-Adapter file",
            &mut paths.ip_adapter,
            "h94 IP-Adapter file (.safetensors or .bin); the kind above picks one for you",
            PathField::IpAdapter,
        );
        take(self.after_edit(&edit.response, edit.browse, PathField::IpAdapter));
        let edit = optional_path_field(
            ui,
            "Image encoder",
            &mut paths.image_encoder,
            "h94 models/image_encoder folder, or a ComfyUI clip_vision file",
            PathField::ImageEncoder,
        );
        take(self.after_edit(&edit.response, edit.browse, PathField::ImageEncoder));
        action
    }

    /// A model field's edit: browse, or reload once the user leaves a changed field.
    fn after_edit(
        &mut self,
        response: &egui::Response,
        browse: Option<PickKind>,
        field: PathField,
    ) -> ModelsAction {
        if response.changed() {
            self.edited = true;
        }
        if let Some(kind) = browse {
            return ModelsAction::Browse(field, kind);
        }
        if response.lost_focus() && self.edited {
            self.edited = false;
            return ModelsAction::Reload;
        }
        ModelsAction::None
    }

    /// The adapter-kind picker, and the download offer for a kind not cached yet.
    fn adapter_ui(&mut self, ui: &mut egui::Ui, current: Option<&PathBuf>) -> ModelsAction {
        let mut action = ModelsAction::None;
        egui::ComboBox::from_label("IP-Adapter")
            .selected_text(self.adapter_label(current))
            .show_ui(ui, |ui| {
                for entry in self.adapters() {
                    if ui.selectable_label(false, entry.display_name()).clicked() {
                        action = ModelsAction::ChooseAdapter(entry.name.clone());
                    }
                }
            })
            .response
            .on_hover_text(
                "The adapter kind: base, Light (subtler), Plus (closer to the image), \
                 Plus Face and Full Face (faces)",
            );
        let offered = self.offer.as_deref().and_then(|name| {
            let entry = self.catalogue.as_ref()?.get(name).ok()?;
            Some((
                entry.name.clone(),
                entry.display_name().to_string(),
                entry.approx_mb,
            ))
        });
        if let Some((name, label, approx_mb)) = offered {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!(
                    "{label} is not downloaded yet (about {approx_mb} MB)."
                ));
                if ui
                    .button(format!("Download {label}"))
                    .on_hover_text("Download it into the Hugging Face cache, then use it")
                    .clicked()
                {
                    action = ModelsAction::DownloadAdapter(name);
                    self.offer = None;
                }
                if ui.small_button("Not now").clicked() {
                    self.offer = None;
                }
            });
        }
        action
    }
}

/// The ComfyUI/A1111 folder with its Find and Reload buttons.
fn folder_ui(ui: &mut egui::Ui, models_dir: &mut String) -> ModelsAction {
    let edit = path_field(
        ui,
        "ComfyUI/A1111 folder",
        models_dir,
        "An existing ComfyUI or A1111 install (or its models folder) to pick files from",
        PathField::ModelsDir,
    );
    let (scan, reload) = ui
        .horizontal(|ui| {
            let scan = ui.button("Find models there").on_hover_text(
                "List checkpoints, IP-Adapters, image encoders and VAEs in that folder",
            );
            let reload = ui
                .button("Reload models")
                .on_hover_text("Load these models again (after changing files on disk)");
            (scan.clicked(), reload.clicked())
        })
        .inner;
    match (edit.browse, scan, reload) {
        (Some(kind), _, _) => ModelsAction::Browse(PathField::ModelsDir, kind),
        (None, true, _) => ModelsAction::ScanModelsDir,
        (None, false, true) => ModelsAction::Reload,
        (None, false, false) => ModelsAction::None,
    }
}

/// What is loaded, for the top of the settings column. Drawn with dashes while
/// nothing is loaded, so the fields below do not move when loading ends.
pub fn loaded_ui(ui: &mut egui::Ui, loaded: Option<&LoadedModels>) {
    let dash = "-".to_string();
    let or_dash = |name: Option<&String>| name.unwrap_or(&dash).clone();
    let vae = match loaded {
        Some(loaded) => loaded
            .vae
            .clone()
            .unwrap_or_else(|| "the model's".to_string()),
        None => dash.clone(),
    };
    let adapter = loaded.map_or(dash.clone(), |l| {
        l.adapter.clone().unwrap_or_else(|| "none".to_string())
    });
    let device = loaded.map_or(dash.clone(), |l| format!("{} ({})", l.device, l.dtype));
    let preview = loaded.map_or(dash.clone(), |l| {
        if l.taesd { "TAESD" } else { "latent colours" }.to_string()
    });
    let model = loaded.map_or(dash.clone(), |l| {
        format!("{} ({})", l.model, l.family.display_name())
    });
    let rows = [
        [("Model:", model), ("VAE:", vae)],
        [
            ("Adapter:", adapter),
            (
                "Encoder:",
                or_dash(loaded.and_then(|l| l.image_encoder.as_ref())),
            ),
        ],
        [("Device:", device), ("Preview:", preview)],
    ];
    egui::Grid::new("loaded models")
        .num_columns(4)
        .spacing([6.0, 2.0])
        .show(ui, |ui| {
            for row in rows {
                for (part, name) in row {
                    ui.label(RichText::new(part).small().weak());
                    ui.label(RichText::new(name).small());
                }
                ui.end_row();
            }
        });
    // Below the grid, where a long list wraps instead of widening the column.
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("LoRAs:").small().weak());
        ui.label(RichText::new(loras_text(loaded)).small());
    });
}

/// The loaded LoRAs with their strengths ("detail 0.8, style -0.5"), "none", or a
/// dash while nothing is loaded.
fn loras_text(loaded: Option<&LoadedModels>) -> String {
    let Some(loaded) = loaded else {
        return "-".to_string();
    };
    if loaded.loras.is_empty() {
        return "none".to_string();
    }
    let named: Vec<String> = loaded
        .loras
        .iter()
        .map(|(name, strength)| format!("{name} {strength}"))
        .collect();
    named.join(", ")
}
