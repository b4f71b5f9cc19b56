//! LoRA files in the folders users keep them in (a folder of their own, ComfyUI's
//! `models/loras`, A1111's `models/Lora`): listed for the window, and found again by
//! the short hash a saved picture names them by when their path no longer holds them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::choice::LoraChoice;
use super::header::read_header;
use crate::{MinusError, Result};

/// At most this many LoRA files are listed (and hashed when a restore looks for one).
pub const MAX_LISTED_FILES: usize = 2000;
/// At most this many folder entries are read per listing, so a folder of a million
/// unrelated files costs a bounded time.
const MAX_ENTRIES_READ: usize = 20_000;
/// Sub-folders deeper than this are not read (users sort LoRAs into a level or two).
const MAX_DEPTH: usize = 4;

/// Where LoRA files are looked for: `lora_dir` (when chosen), then the LoRA folders of
/// the ComfyUI/A1111 install (or `models` folder) `models_dir` (when set). Nothing is
/// read here: folders that do not exist list nothing.
pub fn lora_folders(lora_dir: Option<&Path>, models_dir: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = lora_dir.into_iter().map(Path::to_path_buf).collect();
    if !models_dir.as_os_str().is_empty() {
        for base in [models_dir.join("models"), models_dir.to_path_buf()] {
            folders.extend(["loras", "Lora"].map(|sub| base.join(sub)));
        }
    }
    folders
}

/// The `.safetensors` files found in some folders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Sorted by path.
    pub files: Vec<PathBuf>,
    /// The caps stopped the listing: there may be more files.
    pub truncated: bool,
}

/// Lists the `.safetensors` files in `folders` and their sub-folders (at most
/// [`MAX_DEPTH`] deep, [`MAX_LISTED_FILES`] files): linked files are listed, linked
/// folders are not entered, so the listing stays inside the folders chosen.
pub fn list_loras(folders: &[PathBuf]) -> Listing {
    let mut listing = Listing::default();
    let mut entries_read = 0;
    let mut seen_folders = HashSet::new();
    for folder in folders {
        // One folder reached under two names (a chosen folder that is also the
        // install's `models/loras`) is read once.
        let Ok(identity) = std::fs::canonicalize(folder) else {
            continue;
        };
        if identity.is_dir() && seen_folders.insert(identity) {
            collect(folder, 0, &mut entries_read, &mut listing);
        }
    }
    listing.files.sort();
    listing.files.dedup();
    listing
}

fn collect(folder: &Path, depth: usize, entries_read: &mut usize, listing: &mut Listing) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        *entries_read += 1;
        if *entries_read > MAX_ENTRIES_READ || listing.files.len() >= MAX_LISTED_FILES {
            listing.truncated = true;
            return;
        }
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if depth < MAX_DEPTH {
                collect(&path, depth + 1, entries_read, listing);
            }
        } else if is_safetensors(&path) && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            listing.files.push(path);
        }
    }
}

fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Addnet hashes already computed, by path, size and modification time: hashing reads
/// the whole file, and a restore may look through many.
#[derive(Debug, Default)]
pub struct HashCache {
    known: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
}

/// What tells a changed file from the one hashed.
type FileStamp = (u64, Option<SystemTime>);

impl HashCache {
    /// The addnet hash (hex SHA-256 after the safetensors header) of the file at `path`.
    pub fn addnet_hash(&self, path: &Path) -> Result<String> {
        let metadata = std::fs::metadata(path).map_err(|e| MinusError::io(path, e))?;
        let stamp = (metadata.len(), metadata.modified().ok());
        // A thread that panicked while holding the lock left a usable map behind.
        let cached = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .filter(|(known, _)| *known == stamp)
            .map(|(_, hash)| hash.clone());
        if let Some(hash) = cached {
            return Ok(hash);
        }
        let hash = read_header(path)?.addnet_hash;
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_path_buf(), (stamp, hash.clone()));
        Ok(hash)
    }
}

/// The LoRAs of saved settings, found on disk or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// Found, in the saved order, at their saved strengths, with their hashes.
    pub found: Vec<LoraChoice>,
    /// Not found (as saved).
    pub missing: Vec<LoraChoice>,
}

/// Finds each saved LoRA: at its saved path when the file there has its hash, else
/// among `candidates` by hash (files of the same name first). A LoRA saved without a
/// hash is only taken at its own path.
pub fn find_saved(saved: &[LoraChoice], candidates: &[PathBuf], hashes: &HashCache) -> Restored {
    let mut restored = Restored::default();
    for lora in saved {
        match find_one(lora, candidates, hashes) {
            Some(found) => restored.found.push(found),
            None => restored.missing.push(lora.clone()),
        }
    }
    restored
}

fn find_one(lora: &LoraChoice, candidates: &[PathBuf], hashes: &HashCache) -> Option<LoraChoice> {
    let Some(wanted) = lora.short_hash().filter(|hash| !hash.is_empty()) else {
        return lora.path.is_file().then(|| lora.clone());
    };
    let name = lora.name();
    let named = |path: &&PathBuf| LoraChoice::new(path.as_path(), 1.0).name() == name;
    let same_name = candidates.iter().filter(named);
    let others = candidates.iter().filter(|path| !named(path));
    std::iter::once(&lora.path)
        .chain(same_name)
        .chain(others)
        .find_map(|path| {
            let hash = hashes.addnet_hash(path).ok()?;
            let short = LoraChoice {
                addnet_hash: Some(hash.clone()),
                ..LoraChoice::new(path.as_path(), lora.strength)
            };
            short
                .short_hash()
                .is_some_and(|short| short.eq_ignore_ascii_case(wanted))
                .then_some(short)
        })
}

/// The missing LoRAs, for a message: each by name and short hash.
pub fn describe_missing(missing: &[LoraChoice]) -> String {
    let named: Vec<String> = missing
        .iter()
        .map(|lora| {
            format!(
                "{} ({})",
                lora.name(),
                lora.short_hash().unwrap_or("no hash")
            )
        })
        .collect();
    named.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    /// A safetensors file whose body is `body` (its hash is SHA-256 of `body`).
    fn write_lora(path: &Path, body: &[u8]) -> Result<()> {
        let header = b"{}";
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(body);
        let io = |e| MinusError::io(path, e);
        std::fs::create_dir_all(path.parent().unwrap_or(path)).map_err(io)?;
        std::fs::write(path, bytes).map_err(io)
    }

    #[test]
    fn folders_are_the_chosen_one_then_the_installs() {
        let folders = lora_folders(Some(Path::new("/mine")), Path::new("/comfy"));
        assert_eq!(folders[0], PathBuf::from("/mine"));
        assert!(folders.contains(&PathBuf::from("/comfy/models/loras")));
        assert!(folders.contains(&PathBuf::from("/comfy/models/Lora")));
        assert!(lora_folders(None, Path::new("")).is_empty());
    }

    #[test]
    fn listing_finds_safetensors_in_sub_folders_once() -> Result<()> {
        let root = ScratchDir::new("lora-library-list");
        write_lora(&root.join("models/loras/a.safetensors"), b"a")?;
        write_lora(&root.join("models/loras/styles/b.SAFETENSORS"), b"b")?;
        write_lora(&root.join("models/loras/c.pt"), b"c")?;
        let folders = lora_folders(Some(&root.join("models/loras")), root.path());
        let listing = list_loras(&folders);
        let names: Vec<_> = listing.files.iter().filter_map(|p| p.file_name()).collect();
        assert_eq!(names, ["a.safetensors", "b.SAFETENSORS"]);
        assert!(!listing.truncated);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn linked_folders_are_not_entered() -> Result<()> {
        let root = ScratchDir::new("lora-library-link");
        write_lora(&root.join("outside/secret.safetensors"), b"s")?;
        write_lora(&root.join("loras/own.safetensors"), b"o")?;
        let link = root.join("loras/out");
        std::os::unix::fs::symlink(root.join("outside"), &link)
            .map_err(|e| MinusError::io(&link, e))?;
        let listing = list_loras(&[root.join("loras")]);
        assert_eq!(listing.files, [root.join("loras/own.safetensors")]);
        Ok(())
    }

    #[test]
    fn saved_loras_are_found_by_path_then_by_hash_and_the_rest_named() -> Result<()> {
        let root = ScratchDir::new("lora-library-find");
        let (here, moved) = (
            root.join("here.safetensors"),
            root.join("lib/x.safetensors"),
        );
        write_lora(&here, b"here")?;
        write_lora(&moved, b"moved")?;
        let hashes = HashCache::default();
        let saved = |path: PathBuf, hash: String| LoraChoice {
            addnet_hash: Some(hash),
            ..LoraChoice::new(path, -0.5)
        };
        let moved_hash = hashes.addnet_hash(&moved)?;
        let at_path = saved(here.clone(), hashes.addnet_hash(&here)?);
        let gone = saved(
            root.join("gone/old.safetensors"),
            moved_hash[..12].to_string(),
        );
        let unknown = saved(root.join("u.safetensors"), "0123456789ab".to_string());
        let restored = find_saved(
            &[at_path.clone(), gone, unknown.clone()],
            std::slice::from_ref(&moved),
            &hashes,
        );
        assert_eq!(restored.found[0], at_path);
        assert_eq!(restored.found[1].path, moved);
        assert_eq!(restored.found[1].strength, -0.5);
        assert_eq!(
            restored.found[1].addnet_hash.as_deref(),
            Some(moved_hash.as_str())
        );
        assert_eq!(restored.missing, [unknown]);
        assert_eq!(describe_missing(&restored.missing), "u (0123456789ab)");
        Ok(())
    }

    #[test]
    fn a_file_at_the_saved_path_with_another_hash_is_not_taken() -> Result<()> {
        let root = ScratchDir::new("lora-library-changed");
        let path = root.join("style.safetensors");
        write_lora(&path, b"retrained")?;
        let saved = LoraChoice {
            addnet_hash: Some("0123456789abcdef".to_string()),
            ..LoraChoice::new(&path, 1.0)
        };
        let restored = find_saved(
            std::slice::from_ref(&saved),
            std::slice::from_ref(&path),
            &HashCache::default(),
        );
        assert_eq!(restored.missing, [saved]);
        Ok(())
    }

    #[test]
    fn a_changed_file_is_hashed_again() -> Result<()> {
        let root = ScratchDir::new("lora-library-cache");
        let path = root.join("a.safetensors");
        let hashes = HashCache::default();
        write_lora(&path, b"one")?;
        let first = hashes.addnet_hash(&path)?;
        write_lora(&path, b"other")?;
        assert_ne!(hashes.addnet_hash(&path)?, first);
        Ok(())
    }
}
