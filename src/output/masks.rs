//! Masks kept beside saved results: a saved PNG names its masks by path, and a mask
//! drawn in the window or moved since would otherwise be lost to a restore.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::write_atomic;
use crate::Result;
use crate::files::{MAX_IMAGE_FILE_BYTES, read_regular_file};
use crate::pipeline::{MaskFile, Request};

/// Folder of the kept masks, inside the results folder.
pub const MASKS_FOLDER: &str = "masks";

/// Writes a mask drawn in the window (PNG `bytes`) into `dir/masks`, named by its
/// SHA-256 as the masks kept beside results are, so that a result saved in `dir`
/// finds it there already; returns its path.
pub fn keep_drawn_mask(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let path = drawn_mask_path(dir, bytes);
    if !path.is_file() {
        write_atomic(&path, bytes)?;
    }
    Ok(path)
}

/// Where [`keep_drawn_mask`] keeps the PNG `bytes`.
pub fn drawn_mask_path(dir: &Path, bytes: &[u8]) -> PathBuf {
    dir.join(MASKS_FOLDER)
        .join(format!("{}.png", hex::encode(Sha256::digest(bytes))))
}

/// `request` with each mask it read copied to `dir/masks/<sha256>.<ext>` (once per
/// content) and named there, so that results saved in `dir` bring their masks back.
/// A mask whose file no longer has the bytes the run read keeps its own path.
pub fn keep_masks_beside(dir: &Path, request: &Request) -> Result<Request> {
    let mut kept = request.clone();
    for image in kept
        .images
        .iter_mut()
        .chain(kept.negative_images.iter_mut())
    {
        if let Some(mask) = image.mask.as_mut()
            && let Some(copy) = kept_copy(dir, mask)?
        {
            mask.path = copy;
        }
    }
    Ok(kept)
}

/// The path of `mask`'s copy in `dir`, made if it is not there yet; `None` for a mask
/// that was not read or whose file changed since.
fn kept_copy(dir: &Path, mask: &MaskFile) -> Result<Option<PathBuf>> {
    let Some(hash) = &mask.sha256 else {
        return Ok(None);
    };
    let extension = mask
        .path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "png".to_string());
    let copy = dir.join(MASKS_FOLDER).join(format!("{hash}.{extension}"));
    if copy == mask.path || copy.is_file() {
        return Ok(Some(copy));
    }
    let Ok(bytes) = read_regular_file(&mask.path, MAX_IMAGE_FILE_BYTES) else {
        return Ok(None);
    };
    if hex::encode(Sha256::digest(&bytes)) != *hash {
        return Ok(None);
    }
    write_atomic(&copy, &bytes)?;
    Ok(Some(copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ImagePrompt;
    use crate::scratch::ScratchDir;

    #[test]
    fn read_masks_are_copied_once_by_content_and_named_there() -> Result<()> {
        let scratch = ScratchDir::new("output-masks");
        let original = scratch.join("drawn.PNG");
        std::fs::write(&original, b"mask bytes").expect("mask");
        let hash = hex::encode(Sha256::digest(b"mask bytes"));
        let masked = |sha256: Option<String>| ImagePrompt {
            mask: Some(MaskFile {
                path: original.clone(),
                sha256,
            }),
            ..ImagePrompt::new("/a.png")
        };
        let request = Request {
            images: vec![masked(Some(hash.clone())), masked(None)],
            negative_images: vec![masked(Some(hash.clone()))],
            ..Request::default()
        };
        let results = scratch.join("results");
        let kept = keep_masks_beside(&results, &request)?;
        let copy = results.join("masks").join(format!("{hash}.png"));
        assert_eq!(std::fs::read(&copy).expect("copy"), b"mask bytes");
        let path = |image: &ImagePrompt| image.mask.as_ref().map(|m| m.path.clone());
        assert_eq!(path(&kept.images[0]), Some(copy.clone()));
        assert_eq!(path(&kept.negative_images[0]), Some(copy.clone()));
        // Not read (no hash): left as it is.
        assert_eq!(path(&kept.images[1]), Some(original.clone()));
        // Changed since the run: left as it is, the copy of the old content stays.
        std::fs::remove_file(&copy).expect("remove copy");
        std::fs::write(&original, b"painted over").expect("change");
        let kept = keep_masks_beside(&results, &request)?;
        assert_eq!(path(&kept.images[0]), Some(original));
        assert!(!copy.exists());
        Ok(())
    }
}
