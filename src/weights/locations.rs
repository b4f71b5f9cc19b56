//! Where the model files of one setup are: the one type the window, the command line
//! and the engine share.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::lora::LoraChoice;

/// Where the model files are. An empty `model` means "not chosen yet" (the window
/// before the first download).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ModelPaths {
    /// Diffusers SD 1.5 or SDXL model folder, or a single-file checkpoint (.safetensors/.ckpt)
    /// [default: the catalogue's model (with its VAE) from the download cache].
    // Empty when not given: the command line then fills it from the download cache.
    #[arg(long, default_value = "", hide_default_value = true, value_parser = any_path())]
    pub model: PathBuf,
    /// VAE (diffusers folder or single file) replacing the model's own.
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub vae: Option<PathBuf>,
    /// IP-Adapter weights file (h94 layout, .safetensors or .bin) [default with image
    /// prompts: h94's `ip-adapter_sd15` from the download cache].
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub ip_adapter: Option<PathBuf>,
    /// CLIP image encoder folder (h94 `models/image_encoder`) or single file [default
    /// with image prompts: h94's from the download cache].
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub image_encoder: Option<PathBuf>,
    /// TAESD folder (diffusers `AutoencoderTiny`: `config.json` + weights), the decoder
    /// of `--decode taesd` [default: TAESD from the download cache]. The window uses it
    /// for live previews too; without it they fall back to the latent colour map.
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub taesd: Option<PathBuf>,
    /// Diffusers folder whose config.json files describe a single-file checkpoint
    /// of unusual size (default: SD 1.5's or SDXL base 1.0's configuration, as the file is).
    #[arg(long = "config-from")]
    #[serde(deserialize_with = "empty_is_none")]
    pub configs: Option<PathBuf>,
    /// LoRA files merged into the UNet and text encoders as they load, in order, each at
    /// its strength (the command line fills it from `--lora` and `--lora-weights`).
    #[arg(skip)]
    pub loras: Vec<LoraChoice>,
}

impl ModelPaths {
    /// Whether a model has been chosen at all.
    pub fn is_set(&self) -> bool {
        !self.model.as_os_str().is_empty()
    }

    /// The model's file or folder name, as saved PNGs name it; for a folder of the
    /// download cache (named by its commit) the repository's name.
    pub fn model_name(&self) -> String {
        super::hub::cached_repo_name(&self.model).unwrap_or_else(|| {
            self.model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    /// The new strengths, when `self` is `loaded` with other LoRA strengths only (the
    /// same files in the same order): a change the loaded networks can take by merging
    /// again, without reading the model files.
    pub fn lora_strengths_change(&self, loaded: &ModelPaths) -> Option<Vec<f64>> {
        let without_loras = |paths: &ModelPaths| ModelPaths {
            loras: Vec::new(),
            ..paths.clone()
        };
        let same_files = self.loras.len() == loaded.loras.len()
            && self
                .loras
                .iter()
                .zip(&loaded.loras)
                .all(|(a, b)| a.path == b.path);
        let strengths: Vec<f64> = self.loras.iter().map(|lora| lora.strength).collect();
        let changed = self
            .loras
            .iter()
            .zip(&loaded.loras)
            .any(|(a, b)| a.strength != b.strength);
        (same_files && changed && without_loras(self) == without_loras(loaded)).then_some(strengths)
    }
}

/// clap's path parser refuses an empty value, which here means "not given".
fn any_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// Earlier versions saved unset paths as empty strings.
fn empty_is_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let path: Option<PathBuf> = Option::deserialize(deserializer)?;
    Ok(path.filter(|p| !p.as_os_str().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_of_older_settings_mean_unset() -> serde_json::Result<()> {
        let paths: ModelPaths =
            serde_json::from_str(r#"{"model": "/m", "vae": "", "ip_adapter": "/a.bin"}"#)?;
        assert_eq!(paths.vae, None);
        assert_eq!(paths.ip_adapter, Some(PathBuf::from("/a.bin")));
        assert!(paths.is_set());
        assert!(!ModelPaths::default().is_set());
        assert!(paths.loras.is_empty());
        Ok(())
    }

    #[test]
    fn a_model_in_the_download_cache_is_named_by_its_repository() {
        let named = |model: &str| {
            ModelPaths {
                model: PathBuf::from(model),
                ..ModelPaths::default()
            }
            .model_name()
        };
        assert_eq!(
            named("/hub/models--SG161222--Realistic_Vision_V4.0_noVAE/snapshots/0123abc"),
            "Realistic_Vision_V4.0_noVAE"
        );
        assert_eq!(
            named("/models/dreamshaper_8.safetensors"),
            "dreamshaper_8.safetensors"
        );
        assert_eq!(named("/elsewhere/snapshots/0123abc"), "0123abc");
        assert_eq!(named(""), "");
    }

    #[test]
    fn only_new_strengths_of_the_same_loras_are_a_strength_change() {
        let loaded = ModelPaths {
            model: PathBuf::from("/m"),
            loras: vec![LoraChoice::new("/a", 1.0), LoraChoice::new("/b", 0.5)],
            ..ModelPaths::default()
        };
        let with = |loras: Vec<LoraChoice>| ModelPaths {
            loras,
            ..loaded.clone()
        };
        let stronger = with(vec![LoraChoice::new("/a", 0.2), LoraChoice::new("/b", 0.5)]);
        assert_eq!(
            stronger.lora_strengths_change(&loaded),
            Some(vec![0.2, 0.5])
        );
        assert_eq!(loaded.lora_strengths_change(&loaded), None);
        let swapped = with(vec![LoraChoice::new("/b", 0.5), LoraChoice::new("/a", 0.2)]);
        assert_eq!(swapped.lora_strengths_change(&loaded), None);
        let other_model = ModelPaths {
            model: PathBuf::from("/other"),
            ..stronger
        };
        assert_eq!(other_model.lora_strengths_change(&loaded), None);
    }
}
