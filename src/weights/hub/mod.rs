//! Downloads from the Hugging Face hub into its standard cache layout, with
//! progress, resume after an interruption, cancellation and verification; files
//! already in the cache are used without any network access.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{MinusError, Result};

/// Progress of one file's download.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadProgress {
    /// Bytes on disk so far (including a resumed part).
    pub bytes: u64,
    /// Size of the file, when the server said.
    pub total: Option<u64>,
    /// Average rate of this attempt.
    pub bytes_per_sec: f64,
}

/// The hub endpoint and the cache folder.
#[derive(Debug, Clone)]
pub struct Hub {
    endpoint: String,
    cache_dir: PathBuf,
}

/// What the hub says about a file before it is downloaded.
struct Metadata {
    commit: String,
    etag: String,
    size: Option<u64>,
    url: String,
}

const CHUNK_BYTES: usize = 1 << 20;

impl Hub {
    /// An explicit endpoint (e.g. `https://huggingface.co`) and cache folder.
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
        }
    }

    /// The hub as `huggingface_hub` configures it: `HF_ENDPOINT`, then `HF_HUB_CACHE`,
    /// `HF_HOME/hub`, or `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        let endpoint =
            std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
        let cache = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
            .or_else(|| {
                directories::BaseDirs::new().map(|d| d.home_dir().join(".cache/huggingface/hub"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        Self::new(endpoint, cache)
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The cached copy of `file` at the `main` revision, if complete; no network access.
    pub fn cached(&self, repo: &str, file: &str) -> Option<PathBuf> {
        let repo_dir = self.repo_dir(repo);
        let commit = std::fs::read_to_string(repo_dir.join("refs/main")).ok()?;
        let path = repo_dir.join("snapshots").join(commit.trim()).join(file);
        path.is_file().then_some(path)
    }

    /// The cached snapshot folder of `repo` (where a diffusers layout lives), if any.
    pub fn snapshot_dir(&self, repo: &str) -> Option<PathBuf> {
        let repo_dir = self.repo_dir(repo);
        let commit = std::fs::read_to_string(repo_dir.join("refs/main")).ok()?;
        let dir = repo_dir.join("snapshots").join(commit.trim());
        dir.is_dir().then_some(dir)
    }

    /// Returns the cached file, or downloads it (resuming a partial download),
    /// reporting progress; `cancel` stops it between chunks.
    pub fn fetch(
        &self,
        repo: &str,
        file: &str,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf> {
        if let Some(path) = self.cached(repo, file) {
            return Ok(path);
        }
        let what = format!("{repo}/{file}");
        let fail = |message: String| MinusError::Download {
            what: what.clone(),
            message,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(20)))
            .build()
            .into();
        let metadata = self.metadata(&agent, repo, file).map_err(fail)?;
        let repo_dir = self.repo_dir(repo);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| MinusError::io(&blobs, e))?;
        let blob = blobs.join(&metadata.etag);
        if !blob.is_file() {
            let partial = blobs.join(format!("{}.incomplete", metadata.etag));
            download_to(&agent, &metadata, &partial, progress, cancel).map_err(|e| match e {
                DownloadError::Cancelled => MinusError::Cancelled,
                DownloadError::Io(path, e) => MinusError::io(path, e),
                DownloadError::Http(message) => fail(message),
            })?;
            verify(&partial, &metadata).map_err(fail)?;
            std::fs::rename(&partial, &blob).map_err(|e| MinusError::io(&blob, e))?;
        }
        let link = repo_dir.join("snapshots").join(&metadata.commit).join(file);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|e| MinusError::io(parent, e))?;
        }
        place_in_snapshot(&blob, &link).map_err(|e| MinusError::io(&link, e))?;
        let refs = repo_dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| MinusError::io(&refs, e))?;
        std::fs::write(refs.join("main"), &metadata.commit)
            .map_err(|e| MinusError::io(&refs, e))?;
        Ok(link)
    }

    /// Asks the hub for the file's commit, etag and size (following redirects by hand,
    /// because the hub puts its metadata on the first response).
    fn metadata(
        &self,
        agent: &ureq::Agent,
        repo: &str,
        file: &str,
    ) -> std::result::Result<Metadata, String> {
        let url = format!("{}/{repo}/resolve/main/{file}", self.endpoint);
        let response = agent
            .head(&url)
            .header("Accept-Encoding", "identity")
            .call()
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let status = response.status().as_u16();
        if status == 404 || status == 401 {
            return Err(format!("not found on the hub (HTTP {status})"));
        }
        if status >= 400 {
            return Err(format!("the hub answered HTTP {status}"));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_start_matches("W/").trim_matches('"').to_string())
        };
        let commit = header("x-repo-commit").ok_or("the hub sent no commit hash")?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .ok_or("the hub sent no etag")?;
        if etag.is_empty() || etag.contains('/') || etag.contains("..") {
            return Err(format!("unusable etag `{etag}`"));
        }
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|v| v.parse().ok());
        let url = match (status, header("location")) {
            (300..=399, Some(location)) if location.starts_with("http") => location,
            (300..=399, Some(location)) => format!("{}{location}", self.endpoint),
            _ => url,
        };
        Ok(Metadata {
            commit,
            etag,
            size,
            url,
        })
    }
}

enum DownloadError {
    Cancelled,
    Io(PathBuf, std::io::Error),
    Http(String),
}

/// Appends the rest of the file to `partial` (resuming from its current length).
fn download_to(
    agent: &ureq::Agent,
    metadata: &Metadata,
    partial: &Path,
    progress: &mut dyn FnMut(DownloadProgress),
    cancel: &AtomicBool,
) -> std::result::Result<(), DownloadError> {
    let io = |e| DownloadError::Io(partial.to_path_buf(), e);
    let mut have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if metadata.size.is_some_and(|size| have > size) {
        std::fs::remove_file(partial).map_err(io)?;
        have = 0;
    }
    let mut request = agent
        .get(&metadata.url)
        .header("Accept-Encoding", "identity");
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .map_err(|e| DownloadError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    if status >= 400 {
        return Err(DownloadError::Http(format!("HTTP {status}")));
    }
    if status != 206 {
        // The server ignored the range: start over.
        have = 0;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(have > 0)
        .write(true)
        .truncate(have == 0)
        .open(partial)
        .map_err(io)?;
    let started = Instant::now();
    let mut received = 0u64;
    let mut reader = response.body_mut().as_reader();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
        let n = reader
            .read(&mut buffer)
            .map_err(|e| DownloadError::Http(format!("connection lost: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n]).map_err(io)?;
        received += n as u64;
        progress(DownloadProgress {
            bytes: have + received,
            total: metadata.size,
            bytes_per_sec: received as f64 / started.elapsed().as_secs_f64().max(1e-6),
        });
    }
    out.sync_all().map_err(io)?;
    Ok(())
}

/// Checks the downloaded file against the size and, for LFS files (whose etag is
/// the SHA-256 of the content), the hash.
fn verify(path: &Path, metadata: &Metadata) -> std::result::Result<(), String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if let Some(expected) = metadata.size
        && size != expected
    {
        return Err(format!(
            "incomplete: {size} of {expected} bytes (run again to resume)"
        ));
    }
    if is_sha256(&metadata.etag) {
        let actual = sha256_file(path).map_err(|e| e.to_string())?;
        if actual != metadata.etag {
            // A corrupt part cannot be resumed; start over next time.
            let _ = std::fs::remove_file(path);
            return Err(format!(
                "checksum mismatch (expected {}, got {actual})",
                metadata.etag
            ));
        }
    }
    Ok(())
}

fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of a file, hex encoded.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every cached blob whose name is a SHA-256 against its content; returns
/// the blobs that do not match.
pub fn verify_cache(hub: &Hub, repo: &str) -> std::io::Result<Vec<PathBuf>> {
    let blobs = hub.repo_dir(repo).join("blobs");
    let Ok(entries) = std::fs::read_dir(&blobs) else {
        return Ok(Vec::new());
    };
    let mut bad = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_sha256(&name) && sha256_file(&path)? != name {
            bad.push(path);
        }
    }
    Ok(bad)
}

/// Puts the blob at its snapshot path: a relative symlink where the OS allows, else a copy.
fn place_in_snapshot(blob: &Path, link: &Path) -> std::io::Result<()> {
    if link.exists() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        let depth = link
            .strip_prefix(
                blob.parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("")),
            )
            .map(|p| p.components().count().saturating_sub(1))
            .unwrap_or(0);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(target, link)
    }
    #[cfg(not(unix))]
    {
        std::fs::copy(blob, link).map(|_| ())
    }
}
