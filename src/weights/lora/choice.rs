//! One LoRA of a setup: its file and its strength, as the command line, the window and
//! the saved settings name it.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{MinusError, Result};

/// Strengths a LoRA may have: A1111 and ComfyUI allow any number, but beyond ±10 a LoRA
/// gives noise, and a typo should give a message instead.
pub const LORA_STRENGTH_RANGE: RangeInclusive<f64> = -10.0..=10.0;

/// The file name diffusers' `save_lora_weights` gives every LoRA it writes.
const DIFFUSERS_LORA_STEM: &str = "pytorch_lora_weights";

/// Hex digits of the hash A1111 writes into `Lora hashes` (its `shorthash`).
const SHORT_HASH_LEN: usize = 12;

/// A LoRA file and how strongly it changes the weights (1 = as trained, negative
/// strengths push the other way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraChoice {
    pub path: PathBuf,
    #[serde(default = "one")]
    pub strength: f64,
    /// SHA-256 (hex) of the file after its safetensors header, the "addnet" hash A1111
    /// and kohya compute for LoRA files; filled in when the file is read, so a saved
    /// picture names the file even where its path does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addnet_hash: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl LoraChoice {
    /// `path` at `strength`, its hash not yet known.
    pub fn new(path: impl Into<PathBuf>, strength: f64) -> Self {
        Self {
            path: path.into(),
            strength,
            addnet_hash: None,
        }
    }

    /// The name A1111 gives the LoRA in its settings text: the file name without its
    /// extension, without the `:` and `,` that would break the `name: hash` list. A file
    /// with diffusers' default name in a Hugging Face cache is named by its repository
    /// instead (`TCD-SD15-LoRA`, not `pytorch_lora_weights`).
    pub fn name(&self) -> String {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match crate::weights::hub::cached_repo_name(&self.path) {
            Some(repo) if stem == DIFFUSERS_LORA_STEM => repo,
            _ => stem,
        };
        name.replace([':', ','], "")
    }

    /// The first 12 hex digits of the addnet hash, as A1111's `Lora hashes` lists it.
    pub fn short_hash(&self) -> Option<&str> {
        self.addnet_hash
            .as_deref()
            .map(|hash| hash.get(..SHORT_HASH_LEN).unwrap_or(hash))
    }

    /// Refuses a strength that is not a number within [`LORA_STRENGTH_RANGE`].
    pub fn check_strength(&self) -> Result<()> {
        if self.strength.is_finite() && LORA_STRENGTH_RANGE.contains(&self.strength) {
            return Ok(());
        }
        Err(MinusError::InvalidRequest(format!(
            "the strength of LoRA {} must be a number from {} to {}, got {}",
            self.path.display(),
            LORA_STRENGTH_RANGE.start(),
            LORA_STRENGTH_RANGE.end(),
            self.strength
        )))
    }
}

/// The LoRAs for a saved picture's settings text: A1111's `Lora hashes: "name: hash, …"`
/// (quoted as A1111 quotes values with `,` or `:`), which other tools look LoRAs up
/// by, and `Lora weights: "name: strength, …"` beside it; empty without LoRAs.
pub fn settings_text(loras: &[LoraChoice]) -> String {
    if loras.is_empty() {
        return String::new();
    }
    let list = |item: &dyn Fn(&LoraChoice) -> Option<String>| {
        let items: Vec<String> = loras
            .iter()
            .filter_map(|lora| Some(format!("{}: {}", lora.name(), item(lora)?)))
            .collect();
        // A JSON string, as A1111 quotes values (a `String` always serialises).
        serde_json::to_string(&items.join(", ")).unwrap_or_default()
    };
    let hashes = list(&|lora| lora.short_hash().map(str::to_string));
    let weights = list(&|lora| Some(lora.strength.to_string()));
    format!("Lora hashes: {hashes}, Lora weights: {weights}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_stem_without_list_separators() {
        let lora = LoraChoice::new("/loras/style: v2, final.safetensors", 1.0);
        assert_eq!(lora.name(), "style v2 final");
    }

    #[test]
    fn a_cached_diffusers_lora_is_named_by_its_repository() {
        let snapshot = "/hub/models--h1t--TCD-SD15-LoRA/snapshots/0123abcd";
        let lora = LoraChoice::new(format!("{snapshot}/pytorch_lora_weights.safetensors"), 1.0);
        assert_eq!(lora.name(), "TCD-SD15-LoRA");
        let named = LoraChoice::new(format!("{snapshot}/Hyper-SD15-8steps.safetensors"), 1.0);
        assert_eq!(
            named.name(),
            "Hyper-SD15-8steps",
            "a file with its own name keeps it"
        );
        let elsewhere = LoraChoice::new("/loras/pytorch_lora_weights.safetensors", 1.0);
        assert_eq!(elsewhere.name(), "pytorch_lora_weights");
    }

    #[test]
    fn the_short_hash_is_a1111s_twelve_digits() {
        let mut lora = LoraChoice::new("a.safetensors", 1.0);
        assert_eq!(lora.short_hash(), None);
        lora.addnet_hash = Some("0123456789abcdef0123".to_string());
        assert_eq!(lora.short_hash(), Some("0123456789ab"));
    }

    #[test]
    fn the_settings_text_lists_a1111_hashes_and_the_strengths() {
        assert_eq!(settings_text(&[]), "");
        let hashed = |path: &str, strength, hash: &str| LoraChoice {
            addnet_hash: Some(hash.to_string()),
            ..LoraChoice::new(path, strength)
        };
        let loras = [
            hashed("/l/detail.safetensors", 0.8, "0123456789abcdef"),
            hashed("/l/Ünder \"a\".safetensors", -0.5, "fedcba9876543210"),
        ];
        assert_eq!(
            settings_text(&loras),
            r#"Lora hashes: "detail: 0123456789ab, Ünder \"a\": fedcba987654", Lora weights: "detail: 0.8, Ünder \"a\": -0.5""#
        );
    }

    #[test]
    fn strengths_out_of_range_are_refused_with_the_file() {
        for strength in [f64::NAN, f64::INFINITY, 10.5, -11.0] {
            let error = LoraChoice::new("/l/a.safetensors", strength).check_strength();
            let message = error.map_err(|e| e.to_string()).expect_err("refused");
            assert!(message.contains("/l/a.safetensors"), "{message}");
        }
        assert!(LoraChoice::new("a", -0.5).check_strength().is_ok());
    }

    #[test]
    fn settings_without_a_strength_or_hash_read_as_strength_one() -> serde_json::Result<()> {
        let lora: LoraChoice = serde_json::from_str(r#"{"path": "/l/a.safetensors"}"#)?;
        assert_eq!(lora, LoraChoice::new("/l/a.safetensors", 1.0));
        assert!(!serde_json::to_string(&lora)?.contains("addnet_hash"));
        Ok(())
    }
}
