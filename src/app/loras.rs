//! The LoRA list under Models: each LoRA with its strength slider and Remove, Add
//! LoRA..., and the LoRA files of the LoRA folders to add with one click. Folders are
//! listed on their own thread; the files themselves are read when the models load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, unbounded};
use egui::RichText;

use super::browse::{PathField, PickKind};
use super::fields::optional_path_field;
use super::settings::ModelSettings;
use crate::weights::lora::LoraChoice;
use crate::weights::lora::choice::LORA_STRENGTH_RANGE;
use crate::weights::lora::library::{HashCache, Listing, Restored, list_loras, lora_folders};

/// The slider's span; the number beside it takes any strength in
/// [`LORA_STRENGTH_RANGE`].
const SLIDER_RANGE: std::ops::RangeInclusive<f64> = -2.0..=2.0;
/// Height of the list of files found in the folders before it scrolls.
const FOUND_LIST_HEIGHT: f32 = 140.0;

/// What the LoRA list asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraAction {
    /// Nothing to do.
    None,
    /// The list changed: load the models with it (only new strengths re-merge).
    Reload,
    /// Open the file dialog for a LoRA file or the LoRA folder.
    Browse(PathField, PickKind),
}

/// A listing of some folders, as the scan thread answers.
type Scan = (Vec<PathBuf>, Listing);
/// A restore's LoRAs, found or not, with the number of the restore they belong to.
type Found = (u64, Restored);

/// What the LoRA folders hold, and the threads that read them.
pub struct LoraLibrary {
    /// The folders of the latest listing asked for.
    folders: Vec<PathBuf>,
    /// Their files, `None` while they are being listed.
    listing: Option<Listing>,
    scans: (Sender<Scan>, Receiver<Scan>),
    founds: (Sender<Found>, Receiver<Found>),
    /// Counts restores, so that only the latest one's LoRAs are used.
    restores: u64,
    /// Shared with the threads that look for restored LoRAs.
    hashes: Arc<HashCache>,
}

impl Default for LoraLibrary {
    fn default() -> Self {
        Self {
            folders: Vec::new(),
            listing: None,
            scans: unbounded(),
            founds: unbounded(),
            restores: 0,
            hashes: Arc::new(HashCache::default()),
        }
    }
}

/// The folders the LoRA list reads for `models`.
fn folders_of(models: &ModelSettings) -> Vec<PathBuf> {
    lora_folders(
        models.lora_dir.as_deref(),
        Path::new(models.models_dir.trim()),
    )
}

impl LoraLibrary {
    /// Lists `folders` on a thread unless they are the ones listed last (`again`
    /// lists them anyway, for files added on disk since).
    fn scan(&mut self, folders: Vec<PathBuf>, again: bool, wake: impl Fn() + Send + 'static) {
        if folders == self.folders && !again {
            return;
        }
        self.folders = folders.clone();
        self.listing = None;
        let answers = self.scans.0.clone();
        let spawned = std::thread::Builder::new()
            .name("minus-lora-scan".to_string())
            .spawn(move || {
                let listing = list_loras(&folders);
                // The window owns the receiver for as long as it lives.
                let _ = answers.send((folders, listing));
                wake();
            });
        if spawned.is_err() {
            // Nothing is listed; the folder row says so.
            self.listing = Some(Listing::default());
        }
    }

    /// Takes the listings that arrived, keeping the one of the folders now chosen.
    fn take_scans(&mut self) {
        for (folders, listing) in self.scans.1.try_iter() {
            if folders == self.folders {
                self.listing = Some(listing);
            }
        }
    }

    /// Looks for `saved` (a restored picture's LoRAs) in `models`' folders on a thread;
    /// [`Self::take_found`] hands over what it found.
    pub fn find(
        &mut self,
        saved: Vec<LoraChoice>,
        models: &ModelSettings,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        self.restores += 1;
        let (id, folders) = (self.restores, folders_of(models));
        let (answers, hashes) = (self.founds.0.clone(), self.hashes.clone());
        std::thread::Builder::new()
            .name("minus-lora-find".to_string())
            .spawn(move || {
                let listing = list_loras(&folders);
                let restored =
                    crate::weights::lora::library::find_saved(&saved, &listing.files, &hashes);
                // The window owns the receiver for as long as it lives.
                let _ = answers.send((id, restored));
                wake();
            })
            .map(drop)
    }

    /// Ignores what restores under way find (a later restore named no LoRAs).
    pub fn forget_finds(&mut self) {
        self.restores += 1;
    }

    /// What the latest restore found, once it has.
    pub fn take_found(&self) -> Option<Restored> {
        let latest = self.restores;
        self.founds
            .1
            .try_iter()
            .filter(|(id, _)| *id == latest)
            .map(|(_, restored)| restored)
            .last()
    }

    /// The LoRA list, Add LoRA..., the folder and the files found there.
    pub fn ui(&mut self, ui: &mut egui::Ui, models: &mut ModelSettings) -> LoraAction {
        let ctx = ui.ctx().clone();
        self.scan(folders_of(models), false, move || ctx.request_repaint());
        self.take_scans();
        ui.label(RichText::new("LoRAs").strong())
            .on_hover_text("LoRA files merged into the model as it loads, each at its strength");
        let mut action = list_ui(ui, &mut models.paths.loras);
        let add = ui
            .button("Add LoRA...")
            .on_hover_text("Choose a LoRA file (.safetensors)");
        if add.clicked() {
            action = LoraAction::Browse(PathField::Lora, PickKind::File);
        }
        let folder = optional_path_field(
            ui,
            "LoRA folder",
            &mut models.lora_dir,
            "A folder of LoRA files (sub-folders too); a ComfyUI/A1111 folder's \
             models/loras or models/Lora is listed as well",
            PathField::LoraDir,
        );
        if let Some(kind) = folder.browse {
            action = LoraAction::Browse(PathField::LoraDir, kind);
        }
        if let Some(path) = self.found_ui(ui, &models.paths.loras) {
            models.paths.loras.push(LoraChoice::new(path, 1.0));
            action = LoraAction::Reload;
        }
        action
    }

    /// The files found in the folders, each a button that adds it; the one clicked.
    fn found_ui(&mut self, ui: &mut egui::Ui, chosen: &[LoraChoice]) -> Option<PathBuf> {
        let rescan = ui.horizontal(|ui| {
            let text = match &self.listing {
                _ if self.folders.is_empty() => "No LoRA folder set".to_string(),
                None => "Listing the LoRA folders...".to_string(),
                Some(listing) if listing.files.is_empty() => {
                    "No LoRA files in the LoRA folders".to_string()
                }
                Some(listing) if listing.truncated => {
                    format!("The first {} LoRA files found:", listing.files.len())
                }
                Some(listing) => format!("{} LoRA files found:", listing.files.len()),
            };
            ui.label(RichText::new(text).small());
            ui.small_button("Rescan")
                .on_hover_text("List the LoRA folders again")
                .clicked()
        });
        if rescan.inner {
            let ctx = ui.ctx().clone();
            self.scan(self.folders.clone(), true, move || ctx.request_repaint());
        }
        let files = self.listing.as_ref().map_or(&[][..], |l| &l.files[..]);
        let mut clicked = None;
        let row_height = ui.spacing().interact_size.y;
        // Only the rows in view are laid out: a folder may list thousands.
        egui::ScrollArea::vertical()
            .id_salt("found loras")
            .max_height(FOUND_LIST_HEIGHT)
            .show_rows(ui, row_height, files.len(), |ui, rows| {
                for path in &files[rows] {
                    let in_list = chosen.iter().any(|l| l.path == *path);
                    if found_button(ui, path, in_list, row_height) {
                        clicked = Some(path.clone());
                    }
                }
            });
        clicked
    }
}

/// One found file: a button `height` high adding it (disabled once it is in the list).
fn found_button(ui: &mut egui::Ui, path: &Path, in_list: bool, height: f32) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let button = ui
        .add_enabled(
            !in_list,
            egui::Button::new(format!("+ {name}"))
                .small()
                .min_size(egui::vec2(0.0, height)),
        )
        .on_hover_text(path.display().to_string());
    let accessible = format!("add LoRA {name}");
    button.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, !in_list, &accessible));
    button.clicked()
}

/// The chosen LoRAs, each with its strength and a Remove button.
fn list_ui(ui: &mut egui::Ui, loras: &mut Vec<LoraChoice>) -> LoraAction {
    if loras.is_empty() {
        ui.label(RichText::new("None: add one below").small().weak());
    }
    let mut action = LoraAction::None;
    let mut removed = None;
    for (index, lora) in loras.iter_mut().enumerate() {
        ui.push_id(index, |ui| {
            ui.horizontal(|ui| {
                let name = lora.name();
                if strength_ui(ui, lora, &name) {
                    action = LoraAction::Reload;
                }
                let remove = ui
                    .small_button("Remove")
                    .on_hover_text("Take it out of the list");
                let accessible = format!("remove LoRA {name}");
                remove.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, &accessible)
                });
                if remove.clicked() {
                    removed = Some(index);
                }
            });
        });
    }
    if let Some(index) = removed {
        loras.remove(index);
        action = LoraAction::Reload;
    }
    action
}

/// A LoRA's strength slider, labelled with its name; true once a change is done
/// (the slider let go, a number typed in): the models merge again then, not on every
/// step of a drag.
fn strength_ui(ui: &mut egui::Ui, lora: &mut LoraChoice, name: &str) -> bool {
    let response = ui
        .add(
            egui::Slider::new(&mut lora.strength, SLIDER_RANGE)
                .clamping(egui::SliderClamping::Never)
                .update_while_editing(false)
                .text(name),
        )
        .on_hover_text(format!(
            "{}\nStrength: 1 as trained, 0 off, negative pushes the other way \
             (type a number for {} to {})",
            lora.path.display(),
            LORA_STRENGTH_RANGE.start(),
            LORA_STRENGTH_RANGE.end()
        ));
    if !lora.strength.is_finite() {
        lora.strength = 1.0;
    }
    lora.strength = lora
        .strength
        .clamp(*LORA_STRENGTH_RANGE.start(), *LORA_STRENGTH_RANGE.end());
    response.drag_stopped() || (response.changed() && !response.dragged())
}
