//! Checking cached blobs against the SHA-256 in their names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::{Hub, names};
use crate::{MinusError, Result};

const CHUNK_BYTES: usize = 1 << 20;

/// What `verify_cache` found for one entry of a repo's `blobs` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCheck {
    /// The content hashes to the name.
    Matches,
    /// The content does not hash to the name.
    Corrupt,
    /// The file could not be read (the reason).
    Unreadable(String),
    /// Not a regular file (a FIFO, a device, a folder...), so not read.
    NotAFile,
}

/// Every checked entry of a repo's blobs, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheReport {
    pub blobs: Vec<(PathBuf, BlobCheck)>,
}

/// Whether a blob name is a SHA-256 (the etag of an LFS file).
pub(super) fn is_sha256(name: &str) -> bool {
    names::is_hex(name, 64)
}

/// SHA-256 of a file, hex encoded; `None` if `stop` was set before the end.
pub(super) fn hash_file(path: &Path, stop: &AtomicBool) -> std::io::Result<Option<String>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// SHA-256 of a file, hex encoded.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    hash_file(path, &AtomicBool::new(false)).map(Option::unwrap_or_default)
}

/// Checks every cached blob of `repo` whose name is a SHA-256 against its
/// content, going on past unreadable ones; entries that are not regular files
/// (a FIFO would block the read forever) are reported and not opened.
pub fn verify_cache(hub: &Hub, repo: &str) -> Result<CacheReport> {
    if names::check_repo(repo).is_err() {
        return Ok(CacheReport::default());
    }
    let blobs = hub.repo_dir(repo).join("blobs");
    let entries = match std::fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CacheReport::default());
        }
        Err(e) => return Err(MinusError::io(&blobs, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| is_sha256(&name.to_string_lossy()))
        })
        .collect();
    paths.sort();
    let blobs = paths
        .into_iter()
        .map(|path| {
            let check = check_blob(&path);
            (path, check)
        })
        .collect();
    Ok(CacheReport { blobs })
}

fn check_blob(path: &Path) -> BlobCheck {
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => return BlobCheck::NotAFile,
        Ok(_) => {}
        Err(e) => return BlobCheck::Unreadable(e.to_string()),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match sha256_file(path) {
        Ok(hash) if hash == name => BlobCheck::Matches,
        Ok(_) => BlobCheck::Corrupt,
        Err(e) => BlobCheck::Unreadable(e.to_string()),
    }
}
