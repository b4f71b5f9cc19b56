//! Model files in folders users already have: ComfyUI (`models/checkpoints`,
//! `models/ipadapter`, `models/clip_vision`, `models/vae`, `models/controlnet`) and
//! A1111 (`models/Stable-diffusion`, `models/VAE`, `models/ControlNet`) layouts.

use std::path::{Path, PathBuf};

use crate::{MinusError, Result};

/// What a found file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    Checkpoint,
    IpAdapter,
    ImageEncoder,
    Vae,
    /// Recognised, but Minus does not use ControlNets.
    ControlNet,
}

impl LocalKind {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::IpAdapter => "ip-adapter",
            Self::ImageEncoder => "image encoder",
            Self::Vae => "vae",
            Self::ControlNet => "controlnet (not used)",
        }
    }
}

/// A model file (or encoder folder) found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    pub kind: LocalKind,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// Sub-folders of a `models` folder and what they hold.
const LAYOUT: [(&str, LocalKind); 9] = [
    ("checkpoints", LocalKind::Checkpoint),
    ("Stable-diffusion", LocalKind::Checkpoint),
    ("ipadapter", LocalKind::IpAdapter),
    ("ip-adapter", LocalKind::IpAdapter),
    ("clip_vision", LocalKind::ImageEncoder),
    ("vae", LocalKind::Vae),
    ("VAE", LocalKind::Vae),
    ("controlnet", LocalKind::ControlNet),
    ("ControlNet", LocalKind::ControlNet),
];

const WEIGHT_EXTENSIONS: [&str; 5] = ["safetensors", "ckpt", "bin", "pt", "pth"];

fn is_weights_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| WEIGHT_EXTENSIONS.iter().any(|w| e.eq_ignore_ascii_case(w)))
}

/// Finds model files under `dir`, which may be a ComfyUI/A1111 install, its `models`
/// folder, or one of the sub-folders named above; a missing `dir` is an error, not an
/// empty list.
pub fn scan(dir: &Path) -> Result<Vec<LocalModel>> {
    let metadata = std::fs::metadata(dir).map_err(|e| MinusError::io(dir, e))?;
    if !metadata.is_dir() {
        return Err(MinusError::io(dir, std::io::Error::other("not a folder")));
    }
    let models_dir = if dir.join("models").is_dir() {
        dir.join("models")
    } else {
        dir.to_path_buf()
    };
    let mut found = Vec::new();
    let mut scanned = Vec::new();
    for (sub, kind) in LAYOUT {
        let folder = models_dir.join(sub);
        // On a case-insensitive file system (macOS's and Windows' usual ones) `vae` and
        // `VAE` are one folder, and a link may name a folder twice: each is read once.
        let Some(identity) = folder_identity(&folder) else {
            continue;
        };
        if scanned.contains(&identity) {
            continue;
        }
        scanned.push(identity);
        collect(&folder, kind, &mut found);
    }
    let own_kind = dir
        .file_name()
        .and_then(|name| {
            LAYOUT
                .iter()
                .find(|(sub, _)| *sub == name.to_string_lossy())
        })
        .map(|(_, kind)| *kind);
    if let Some(kind) = own_kind {
        collect(dir, kind, &mut found);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup();
    Ok(found)
}

/// What a folder is, whatever name reached it: its device and inode on Unix; its
/// final path elsewhere (Windows gives it with the names' case as stored). `None`
/// where there is no such folder.
#[cfg(unix)]
fn folder_identity(folder: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(folder).ok()?;
    metadata.is_dir().then(|| (metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn folder_identity(folder: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(folder)
        .ok()
        .filter(|path| path.is_dir())
}

fn collect(folder: &Path, kind: LocalKind, found: &mut Vec<LocalModel>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Follows symlinks: model folders often link to files kept elsewhere.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_file() && is_weights_file(&path) {
            found.push(LocalModel {
                kind,
                path,
                size_bytes: metadata.len(),
            });
        } else if metadata.is_dir() && path.join("config.json").is_file() {
            // A diffusers-style folder (e.g. an image encoder with config.json).
            let size_bytes = std::fs::read_dir(&path)
                .map(|files| {
                    files
                        .flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            found.push(LocalModel {
                kind,
                path,
                size_bytes,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    #[test]
    fn recognises_comfyui_and_a1111_layouts() -> std::io::Result<()> {
        let root = ScratchDir::new("local-scan");
        for (folder, file) in [
            ("models/checkpoints", "rv4.safetensors"),
            ("models/ipadapter", "ip-adapter-plus_sd15.bin"),
            ("models/clip_vision", "vit-h.safetensors"),
            ("models/Stable-diffusion", "dreamshaper.ckpt"),
            ("models/ControlNet", "canny.pth"),
            ("models/checkpoints", "notes.txt"),
        ] {
            std::fs::create_dir_all(root.join(folder))?;
            std::fs::write(root.join(folder).join(file), b"1234")?;
        }
        std::fs::create_dir_all(root.join("models/clip_vision/image_encoder"))?;
        std::fs::write(
            root.join("models/clip_vision/image_encoder/config.json"),
            b"{}",
        )?;
        let found = scan(&root).map_err(std::io::Error::other)?;
        let kinds: Vec<(LocalKind, String)> = found
            .iter()
            .map(|m| {
                (
                    m.kind,
                    m.path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                )
            })
            .collect();
        assert_eq!(found.len(), 6, "{kinds:?}");
        assert!(kinds.contains(&(LocalKind::Checkpoint, "dreamshaper.ckpt".into())));
        assert!(kinds.contains(&(LocalKind::IpAdapter, "ip-adapter-plus_sd15.bin".into())));
        assert!(kinds.contains(&(LocalKind::ImageEncoder, "image_encoder".into())));
        assert!(kinds.contains(&(LocalKind::ControlNet, "canny.pth".into())));
        // Pointing at one sub-folder works too.
        let one = scan(&root.join("models/ipadapter")).map_err(std::io::Error::other)?;
        assert_eq!(one.len(), 1);
        Ok(())
    }

    /// Writes `bytes` to `root/relative`, making its folders.
    #[cfg(unix)]
    fn put(root: &Path, relative: &str, bytes: &[u8]) -> Result<()> {
        let path = root.join(relative);
        let io = |e| MinusError::io(&path, e);
        std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io)?;
        std::fs::write(&path, bytes).map_err(io)
    }

    #[cfg(unix)]
    #[test]
    fn one_folder_under_two_names_is_listed_once() -> Result<()> {
        // `VAE` as a link to `vae`: what a case-insensitive file system (macOS, Windows)
        // shows when a folder `vae` exists and `VAE` is asked for.
        let root = ScratchDir::new("local-case");
        put(&root, "models/vae/kl-f8.safetensors", b"1234")?;
        let (vae, upper) = (root.join("models/vae"), root.join("models/VAE"));
        std::os::unix::fs::symlink(&vae, &upper).map_err(|e| MinusError::io(&upper, e))?;
        let found = scan(&root)?;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, vae.join("kl-f8.safetensors"));
        // Two folders that only differ in case (a case-sensitive file system) are both read.
        std::fs::remove_file(&upper).map_err(|e| MinusError::io(&upper, e))?;
        put(&root, "models/VAE/other.safetensors", b"12")?;
        assert_eq!(scan(&root)?.len(), 2);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_model_files_are_found_and_a_missing_folder_is_an_error() -> Result<()> {
        let root = ScratchDir::new("local-link");
        let io = |e| MinusError::io(&root, e);
        std::fs::create_dir_all(root.join("store")).map_err(io)?;
        std::fs::create_dir_all(root.join("models/checkpoints")).map_err(io)?;
        std::fs::write(root.join("store/rv4.safetensors"), b"1234").map_err(io)?;
        std::os::unix::fs::symlink(
            root.join("store/rv4.safetensors"),
            root.join("models/checkpoints/rv4.safetensors"),
        )
        .map_err(io)?;
        let found = scan(&root)?;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].size_bytes, 4);
        let missing = scan(&root.join("no-such-folder")).map(|f| f.len());
        let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("no-such-folder"), "{message}");
        Ok(())
    }
}
