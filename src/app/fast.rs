//! The Fast button: TCD's few steps with guidance kept on (so the negative image
//! still acts), the TCD LoRA in the LoRA list and the TAESD final decode. What is not
//! in the download cache yet is downloaded first, through the window's downloads.

use std::path::PathBuf;

use egui::RichText;

use super::MinusApp;
use super::messages::{Message, MessageSource};
use crate::models::family::ModelFamily;
use crate::pipeline::fast_preset::{FAST_CFG, FAST_STEPS, apply_fast_preset};
use crate::weights::catalogue::{Catalogue, TAESD, TCD_LORA};
use crate::weights::lora::LoraChoice;

/// The strength the TCD LoRA is trained for.
const TCD_STRENGTH: f64 = 1.0;

/// Where the Fast preset's files stand.
struct FastFiles {
    /// The cached TCD LoRA, `None` while it is not downloaded.
    lora: Option<PathBuf>,
    /// TAESD is neither set under Models nor in the download cache.
    taesd_missing: bool,
}

impl FastFiles {
    /// What the preset would download, with sizes ("the TCD LoRA (about 135 MB) and
    /// TAESD (about 10 MB)"); `None` when everything is at hand.
    fn downloads(&self) -> Option<String> {
        let sizes: Vec<String> = [
            (self.lora.is_none(), TCD_LORA, "the TCD LoRA"),
            (self.taesd_missing, TAESD, "TAESD"),
        ]
        .into_iter()
        .filter(|(needed, _, _)| *needed)
        .map(|(_, name, label)| match approx_mb(name) {
            Some(mb) => format!("{label} (about {mb} MB)"),
            None => label.to_string(),
        })
        .collect();
        (!sizes.is_empty()).then(|| sizes.join(" and "))
    }
}

impl MinusApp {
    /// The Fast button with its one-line summary.
    pub(super) fn fast_ui(&mut self, ui: &mut egui::Ui) {
        // The preset's LoRA is made for SD 1.5.
        let sd15 = self.loaded_family() == ModelFamily::Sd15;
        let pressed = ui
            .horizontal(|ui| {
                let button = ui.add_enabled(sd15, egui::Button::new("Fast"));
                ui.label(
                    RichText::new(format!(
                        "a draft in {FAST_STEPS} steps (TCD LoRA, TAESD decode)"
                    ))
                    .small()
                    .weak(),
                );
                // The cache is looked at only while the tooltip shows.
                button
                    .on_hover_ui(|ui| {
                        ui.label(self.fast_tooltip());
                    })
                    .on_disabled_hover_text(
                        "The Fast preset's TCD LoRA is made for SD 1.5: load an SD 1.5 model to use it",
                    )
                    .clicked()
            })
            .inner;
        ui.separator();
        if pressed {
            self.apply_fast();
        }
    }

    /// What the preset sets and gives up, and what it would download first.
    fn fast_tooltip(&self) -> String {
        let mut text = format!(
            "Sets the TCD sampler, {FAST_STEPS} steps, CFG {FAST_CFG} (above 1, so the \
             negative image still acts), the TCD LoRA at strength {TCD_STRENGTH} and the \
             TAESD final decode: a draft in a few steps. It gives up detail: softer than a \
             full run decoded by the VAE."
        );
        if let Some(downloads) = self.fast_files().downloads() {
            text.push_str(&format!("\nDownloads first: {downloads}."));
        }
        text
    }

    /// The cached TCD LoRA, and whether TAESD is missing.
    fn fast_files(&self) -> FastFiles {
        let taesd_set = self.settings.models.paths.taesd.is_some();
        FastFiles {
            lora: self.downloads.cached_entry(TCD_LORA),
            taesd_missing: !taesd_set && self.downloads.cached_entry(TAESD).is_none(),
        }
    }

    /// Applies the preset to the settings and makes the TCD LoRA and TAESD part of
    /// the loaded setup, downloading them first where they are not cached.
    pub(super) fn apply_fast(&mut self) {
        apply_fast_preset(&mut self.settings.request);
        let files = self.fast_files();
        if let Some(lora) = &files.lora {
            self.use_fast_lora(lora.clone());
        }
        let Some(downloads) = files.downloads() else {
            return;
        };
        if self.downloads.is_fetching_fast() {
            return;
        }
        if self.downloads.progress.is_some() {
            self.messages.push(Message::warning(
                MessageSource::Download,
                format!(
                    "Another download is running: press Fast again once it ends, to \
                     download {downloads}"
                ),
            ));
            return;
        }
        match files.lora {
            Some(_) => self
                .downloads
                .start_preview(&self.engine, ModelFamily::Sd15),
            None => self.downloads.start_fast(&self.engine, files.taesd_missing),
        }
    }

    /// Puts `lora` in the LoRA list at the strength TCD is trained for (once) and
    /// loads the models with it.
    pub(super) fn use_fast_lora(&mut self, lora: PathBuf) {
        let loras = &mut self.settings.models.paths.loras;
        match loras.iter_mut().find(|chosen| chosen.path == lora) {
            Some(chosen) if chosen.strength == TCD_STRENGTH => return,
            Some(chosen) => chosen.strength = TCD_STRENGTH,
            None => loras.push(LoraChoice::new(lora, TCD_STRENGTH)),
        }
        self.load_models();
    }
}

/// The catalogue's size of entry `name`, in MB.
fn approx_mb(name: &str) -> Option<u64> {
    let entry = Catalogue::built_in().ok()?.get(name).ok()?;
    Some(entry.approx_mb)
}
