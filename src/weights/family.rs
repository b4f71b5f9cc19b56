//! A quick look at a model's files to tell its family before loading it, so that the
//! window can pick what goes with it (TAESD or TAESDXL for previews). The load itself
//! reads the family from the full configs and files.

use std::path::Path;

use super::config::read_json;
use super::safetensors_header::read_header_bytes;
use super::sgm::CONDITIONER_PREFIX;
use crate::models::family::ModelFamily;

/// The family `model` (a diffusers folder or a single file) looks like: SDXL when its
/// UNet config has SDXL's "text_time" conditioning or its single file has SDXL's
/// `conditioner.embedders.*` tensors; SD 1.5 otherwise, and when the files cannot be
/// read (the load then says why).
pub fn peek_family(model: &Path) -> ModelFamily {
    let sdxl = if model.is_dir() {
        read_json::<serde_json::Value>(&model.join("unet").join("config.json"))
            .is_ok_and(|config| config["addition_embed_type"] == "text_time")
    } else {
        read_header_bytes(model).is_ok_and(|(header, _)| {
            let needle = format!("\"{CONDITIONER_PREFIX}");
            let needle = needle.as_bytes();
            header.windows(needle.len()).any(|w| w == needle)
        })
    };
    if sdxl {
        ModelFamily::Sdxl
    } else {
        ModelFamily::Sd15
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    #[test]
    fn folders_and_single_files_are_told_apart() -> crate::Result<()> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        assert_eq!(
            peek_family(&fixtures.join("sdxl/models/sdxl")),
            ModelFamily::Sdxl
        );
        assert_eq!(
            peek_family(&fixtures.join("models/sd15")),
            ModelFamily::Sd15
        );
        let dir = ScratchDir::new("peek-family");
        let file = |name: &str, header: &str| -> crate::Result<std::path::PathBuf> {
            let path = dir.path().join(name);
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            std::fs::write(&path, bytes).map_err(|e| crate::MinusError::io(&path, e))?;
            Ok(path)
        };
        let sgm = r#"{"conditioner.embedders.0.transformer.x":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#;
        let ldm = r#"{"model.diffusion_model.x":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#;
        assert_eq!(
            peek_family(&file("xl.safetensors", sgm)?),
            ModelFamily::Sdxl
        );
        assert_eq!(
            peek_family(&file("15.safetensors", ldm)?),
            ModelFamily::Sd15
        );
        assert_eq!(peek_family(&dir.path().join("missing")), ModelFamily::Sd15);
        Ok(())
    }
}
