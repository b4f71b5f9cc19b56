//! The LoRA files of one setup, read, each with its strength.

use super::choice::LoraChoice;
use super::file::{LoraFile, LoraLayer};
use super::kind::sdxl_lora_on_sd15;
use super::names::Network;
use crate::models::family::ModelFamily;
use crate::{MinusError, Result};

/// LoRA files and their strengths, in the order they were chosen.
#[derive(Debug, Clone, Default)]
pub struct LoraSet {
    files: Vec<LoraFile>,
    strengths: Vec<f64>,
}

impl LoraSet {
    /// Reads every chosen file (checking the strengths first, so a typo costs no reading).
    pub fn read(choices: &[LoraChoice]) -> Result<Self> {
        for choice in choices {
            choice.check_strength()?;
        }
        Ok(Self {
            files: choices
                .iter()
                .map(|choice| LoraFile::read(&choice.path))
                .collect::<Result<_>>()?,
            strengths: choices.iter().map(|choice| choice.strength).collect(),
        })
    }

    /// Refuses a LoRA made for SDXL on an SD 1.5 model (before the model is read).
    pub fn check_family(&self, family: ModelFamily) -> Result<()> {
        match self.files.iter().find(|file| file.made_for_sdxl) {
            Some(file) if family == ModelFamily::Sd15 => Err(sdxl_lora_on_sd15(&file.path)),
            _ => Ok(()),
        }
    }

    /// Whether there are no LoRAs.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The LoRAs as chosen, with their hashes.
    pub fn choices(&self) -> Vec<LoraChoice> {
        self.files
            .iter()
            .zip(&self.strengths)
            .map(|(file, &strength)| LoraChoice {
                addnet_hash: Some(file.addnet_hash.clone()),
                ..LoraChoice::new(&file.path, strength)
            })
            .collect()
    }

    /// The same files at `strengths` (one per file, in order).
    pub fn with_strengths(&self, strengths: &[f64]) -> Result<Self> {
        if strengths.len() != self.files.len() {
            return Err(MinusError::InvalidRequest(format!(
                "{} LoRA strengths for {} LoRA files",
                strengths.len(),
                self.files.len()
            )));
        }
        for (file, &strength) in self.files.iter().zip(strengths) {
            LoraChoice::new(&file.path, strength).check_strength()?;
        }
        Ok(Self {
            files: self.files.clone(),
            strengths: strengths.to_vec(),
        })
    }

    /// Whether any file has layers on `network`.
    pub fn touches(&self, network: Network) -> bool {
        self.files
            .iter()
            .any(|file| file.layers.iter().any(|layer| layer.network == network))
    }

    /// What `network`'s outputs depend on besides the model, for caches of them: the
    /// hash and strength of each file that changes it (empty when none does).
    pub fn identity(&self, network: Network) -> String {
        self.files
            .iter()
            .zip(&self.strengths)
            .filter(|(file, strength)| {
                **strength != 0.0 && file.layers.iter().any(|l| l.network == network)
            })
            .map(|(file, strength)| format!("|lora:{}@{strength}", file.addnet_hash))
            .collect()
    }

    /// The files.
    pub(super) fn files(&self) -> &[LoraFile] {
        &self.files
    }

    /// Layer `layer` of file `file`, with the file's strength.
    pub(super) fn layer(&self, file: usize, layer: usize) -> Option<(f64, &LoraLayer)> {
        let strength = *self.strengths.get(file)?;
        Some((strength, self.files.get(file)?.layers.get(layer)?))
    }

    /// Whether file `file` has another strength in `other`.
    pub(super) fn strength_differs(&self, other: &Self, file: usize) -> bool {
        self.strengths.get(file) != other.strengths.get(file)
    }
}
