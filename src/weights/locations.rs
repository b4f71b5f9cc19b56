//! Where the model files of one setup are: the one type the window, the command line
//! and the engine share.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// Where the model files are. An empty `model` means "not chosen yet" (the window
/// before the first download).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ModelPaths {
    /// Diffusers SD 1.5 model folder, or a single-file checkpoint (.safetensors/.ckpt).
    #[arg(long)]
    pub model: PathBuf,
    /// VAE (diffusers folder or single file) replacing the model's own.
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub vae: Option<PathBuf>,
    /// IP-Adapter weights file (h94 layout, .safetensors or .bin).
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub ip_adapter: Option<PathBuf>,
    /// CLIP image encoder folder (h94 `models/image_encoder`) or single file.
    #[arg(long)]
    #[serde(deserialize_with = "empty_is_none")]
    pub image_encoder: Option<PathBuf>,
    /// TAESD folder (diffusers `AutoencoderTiny`: `config.json` + weights) for live
    /// previews; the window fills it from the download cache. A missing folder means
    /// previews fall back to the latent colour map.
    #[arg(skip)]
    #[serde(deserialize_with = "empty_is_none")]
    pub taesd: Option<PathBuf>,
    /// Diffusers folder whose config.json files describe a single-file checkpoint
    /// of unusual size (default: SD 1.5's configuration).
    #[arg(long = "config-from")]
    #[serde(deserialize_with = "empty_is_none")]
    pub configs: Option<PathBuf>,
}

impl ModelPaths {
    /// Whether a model has been chosen at all.
    pub fn is_set(&self) -> bool {
        !self.model.as_os_str().is_empty()
    }

    /// The model's file or folder name, as saved PNGs name it.
    pub fn model_name(&self) -> String {
        self.model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
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
        Ok(())
    }
}
