//! One file's transfer, on its own named thread: the hub's metadata (following
//! the hub's relative redirects, e.g. of a renamed repo), the body (following
//! the CDN's absolute redirects, resuming a partial file), the checksum, and the
//! cache layout. Every connection gives up after the hub's stall timeout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::{DownloadProgress, Hub, names, verify};
use crate::{MinusError, Result};

/// What the transfer thread tells the caller.
pub(super) enum Update {
    Progress(DownloadProgress),
    Done(Result<PathBuf>),
}

/// The caller's handle on a running transfer.
pub(super) struct Transfer {
    pub updates: Receiver<Update>,
    stop: Arc<AtomicBool>,
    agent: ureq::Agent,
}

/// Everything the transfer thread owns.
struct Job {
    hub: Hub,
    repo: String,
    file: String,
    agent: ureq::Agent,
    stop: Arc<AtomicBool>,
    updates: Sender<Update>,
}

/// What the hub says about a file before it is downloaded.
struct Metadata {
    commit: String,
    etag: String,
    size: Option<u64>,
    url: String,
}

enum DownloadError {
    Cancelled,
    Io(PathBuf, std::io::Error),
    Http(String),
}

const CHUNK_BYTES: usize = 1 << 20;
/// Redirects followed by hand on the metadata request (the hub's own, relative).
const MAX_METADATA_REDIRECTS: usize = 10;
/// Redirects ureq follows on the download (CDNs, absolute).
const MAX_DOWNLOAD_REDIRECTS: u32 = 10;
/// How long a cancelled transfer may take to close its partial file.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// On macOS and Windows, the system's TLS and certificate store (ureq is built with
/// native-tls there, see Cargo.toml, so a company's root certificate in the system store
/// works); elsewhere ureq's default, rustls with Mozilla's roots.
fn tls_config() -> ureq::tls::TlsConfig {
    let builder = ureq::tls::TlsConfig::builder();
    #[cfg(any(target_os = "macos", windows))]
    let builder = builder
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier);
    builder.build()
}

impl Transfer {
    /// Starts downloading `repo`/`file` (both checked) on a new thread.
    pub fn start(hub: &Hub, repo: &str, file: &str) -> Result<Self> {
        let stall = Some(hub.stall_timeout());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(stall)
            .timeout_connect(stall)
            .timeout_per_read(stall)
            .timeout_per_write(stall)
            .tls_config(tls_config())
            .build()
            .into();
        // A rendezvous channel: the thread waits until the caller has seen each
        // update, so a cancel from the progress callback stops it within a chunk.
        let (updates_tx, updates) = crossbeam_channel::bounded(0);
        let stop = Arc::new(AtomicBool::new(false));
        let job = Job {
            hub: hub.clone(),
            repo: repo.to_string(),
            file: file.to_string(),
            agent: agent.clone(),
            stop: stop.clone(),
            updates: updates_tx,
        };
        std::thread::Builder::new()
            .name("minus-download".to_string())
            .spawn(move || {
                let result = job.run();
                // The caller is gone only after a cancel, which needs no answer.
                let _ = job.updates.send(Update::Done(result));
            })
            .map_err(|e| MinusError::Download {
                what: format!("{repo}/{file}"),
                message: format!("cannot start the download thread: {e}"),
            })?;
        Ok(Self {
            updates,
            stop,
            agent,
        })
    }

    /// Stops the transfer: interrupts its I/O and waits a moment for it to close
    /// the partial file. A transfer still connecting is left to fail on its own:
    /// it has nothing open yet and writes nothing once stopped.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.agent.shutdown();
        let deadline = Instant::now() + CANCEL_GRACE;
        while let Ok(update) = self.updates.recv_deadline(deadline) {
            if matches!(update, Update::Done(_)) {
                break;
            }
        }
    }
}

impl Job {
    fn fail(&self, message: String) -> MinusError {
        MinusError::Download {
            what: format!("{}/{}", self.repo, self.file),
            message,
        }
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            Err(MinusError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn run(&self) -> Result<PathBuf> {
        let metadata = self.metadata().map_err(|m| self.fail(m))?;
        self.check_stop()?;
        let repo_dir = self.hub.repo_dir(&self.repo);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| MinusError::io(&blobs, e))?;
        let blob = blobs.join(&metadata.etag);
        if !blob.is_file() {
            let partial = blobs.join(format!("{}.incomplete", metadata.etag));
            self.download_to(&metadata, &partial).map_err(|e| match e {
                DownloadError::Cancelled => MinusError::Cancelled,
                DownloadError::Io(path, e) => MinusError::io(path, e),
                DownloadError::Http(message) => self.fail(message),
            })?;
            self.verify(&partial, &metadata)?;
            std::fs::rename(&partial, &blob).map_err(|e| MinusError::io(&blob, e))?;
        }
        let link = repo_dir
            .join("snapshots")
            .join(&metadata.commit)
            .join(&self.file);
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

    /// What a failed call says, with the stall timeout when that was the cause.
    fn describe(&self, error: &ureq::Error) -> String {
        match error {
            ureq::Error::Timeout(_) => format!(
                "no answer from {} within {} s",
                self.hub.endpoint(),
                self.hub.stall_timeout().as_secs_f64()
            ),
            other => format!("cannot reach {}: {other}", self.hub.endpoint()),
        }
    }

    /// Asks the hub for the file's commit, etag and size. The hub puts them on its
    /// first answer, often a redirect to its CDN (whose URL is the download's);
    /// relative redirects (a renamed repo) are followed to reach that answer.
    fn metadata(&self) -> std::result::Result<Metadata, String> {
        let mut url = format!(
            "{}/{}/resolve/main/{}",
            self.hub.endpoint(),
            self.repo,
            self.file
        );
        for _ in 0..=MAX_METADATA_REDIRECTS {
            let response = self
                .agent
                .head(&url)
                .header("Accept-Encoding", "identity")
                .call()
                .map_err(|e| self.describe(&e))?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_start_matches("W/").trim_matches('"').to_string())
            };
            let redirect = match ((300..=399).contains(&status), header("location")) {
                (true, Some(location)) => Some(resolve_location(&url, &location)?),
                _ => None,
            };
            if let Some(Location::SameHost(next)) = redirect {
                url = next;
                continue;
            }
            if status == 404 || status == 401 {
                return Err(format!("not found on the hub (HTTP {status})"));
            }
            if !(200..=399).contains(&status) {
                return Err(format!("the hub answered HTTP {status}"));
            }
            let commit = header("x-repo-commit").ok_or("the hub sent no commit hash")?;
            names::check_commit(&commit)?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .ok_or("the hub sent no etag")?;
            names::check_etag(&etag)?;
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|v| v.parse().ok());
            let url = match redirect {
                Some(Location::Elsewhere(cdn)) => cdn,
                _ => url,
            };
            return Ok(Metadata {
                commit,
                etag,
                size,
                url,
            });
        }
        Err(format!(
            "more than {MAX_METADATA_REDIRECTS} redirects from the hub"
        ))
    }

    /// Appends the rest of the file to `partial` (resuming from its current length).
    fn download_to(
        &self,
        metadata: &Metadata,
        partial: &Path,
    ) -> std::result::Result<(), DownloadError> {
        let io = |e| DownloadError::Io(partial.to_path_buf(), e);
        let mut have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if metadata.size.is_some_and(|size| have > size) {
            std::fs::remove_file(partial).map_err(io)?;
            have = 0;
        }
        let (mut response, resumed) = self.request(&metadata.url, have)?;
        if !resumed {
            // The server ignored the range: start over.
            have = 0;
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(have > 0)
            .write(true)
            .truncate(have == 0)
            .open(partial)
            .map_err(io)?;
        let mut reader = response.body_mut().as_reader();
        self.receive(&mut reader, &mut out, partial, have, metadata.size)?;
        out.sync_all().map_err(io)?;
        Ok(())
    }

    /// Asks for `url` from byte `have` on (the whole file when 0); true with the answer
    /// when the server resumes there.
    fn request(
        &self,
        url: &str,
        have: u64,
    ) -> std::result::Result<(ureq::http::Response<ureq::Body>, bool), DownloadError> {
        let mut request = self
            .agent
            .get(url)
            .config()
            .max_redirects(MAX_DOWNLOAD_REDIRECTS)
            .build()
            .header("Accept-Encoding", "identity");
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = request
            .call()
            .map_err(|e| DownloadError::Http(self.describe(&e)))?;
        let status = response.status().as_u16();
        if status != 200 && status != 206 {
            return Err(DownloadError::Http(format!(
                "the download answered HTTP {status}"
            )));
        }
        Ok((response, status == 206))
    }

    /// Appends what `reader` brings to `out` (the file `partial`, already holding `have`
    /// bytes), sending progress after every chunk, until the end or a stop.
    fn receive(
        &self,
        reader: &mut impl Read,
        out: &mut std::fs::File,
        partial: &Path,
        have: u64,
        total: Option<u64>,
    ) -> std::result::Result<(), DownloadError> {
        let started = Instant::now();
        let mut received = 0u64;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            let read = reader.read(&mut buffer);
            if self.stop.load(Ordering::Relaxed) {
                return Err(DownloadError::Cancelled);
            }
            let n = read.map_err(|e| {
                DownloadError::Http(if is_timeout(&e) {
                    format!(
                        "the connection stalled: no data for {} s (run again to resume)",
                        self.hub.stall_timeout().as_secs_f64()
                    )
                } else {
                    format!("connection lost: {e}")
                })
            })?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buffer[..n])
                .map_err(|e| DownloadError::Io(partial.to_path_buf(), e))?;
            received += n as u64;
            let progress = DownloadProgress {
                bytes: have + received,
                total,
                bytes_per_sec: received as f64 / started.elapsed().as_secs_f64().max(1e-6),
            };
            if self.updates.send(Update::Progress(progress)).is_err() {
                return Err(DownloadError::Cancelled);
            }
        }
    }

    /// Checks the downloaded file against the size and, for LFS files (whose etag
    /// is the SHA-256 of the content), the hash.
    fn verify(&self, path: &Path, metadata: &Metadata) -> Result<()> {
        let size = std::fs::metadata(path)
            .map_err(|e| MinusError::io(path, e))?
            .len();
        if let Some(expected) = metadata.size
            && size != expected
        {
            return Err(self.fail(format!(
                "incomplete: {size} of {expected} bytes (run again to resume)"
            )));
        }
        if verify::is_sha256(&metadata.etag) {
            let actual = verify::hash_file(path, &self.stop)
                .map_err(|e| MinusError::io(path, e))?
                .ok_or(MinusError::Cancelled)?;
            if actual != metadata.etag {
                // A corrupt part cannot be resumed; start over next time.
                let _ = std::fs::remove_file(path);
                return Err(self.fail(format!(
                    "checksum mismatch (expected {}, got {actual})",
                    metadata.etag
                )));
            }
        }
        Ok(())
    }
}

/// Whether a body read failed on the stall timeout.
fn is_timeout(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
}

/// Where a redirect points.
enum Location {
    /// A path on the same server (the hub's own redirects): followed for metadata.
    SameHost(String),
    /// Another server (the CDN): where the body is downloaded from.
    Elsewhere(String),
}

/// Resolves a `Location` header against the URL that answered it.
fn resolve_location(url: &str, location: &str) -> std::result::Result<Location, String> {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let origin = url[scheme_end..]
        .find('/')
        .map_or(url, |i| &url[..scheme_end + i]);
    if location.starts_with("http://") || location.starts_with("https://") {
        Ok(Location::Elsewhere(location.to_string()))
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = &url[..scheme_end.saturating_sub(3)];
        Ok(Location::Elsewhere(format!("{scheme}://{rest}")))
    } else if location.starts_with('/') {
        Ok(Location::SameHost(format!("{origin}{location}")))
    } else {
        Err(format!("unusable redirect to `{location}`"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_answering_server() {
        let url = "https://hub.example/old/name/resolve/main/a.bin";
        let same = |location| match resolve_location(url, location) {
            Ok(Location::SameHost(next)) => next,
            _ => String::new(),
        };
        let elsewhere = |location| match resolve_location(url, location) {
            Ok(Location::Elsewhere(next)) => next,
            _ => String::new(),
        };
        assert_eq!(
            same("/new/name/resolve/main/a.bin"),
            "https://hub.example/new/name/resolve/main/a.bin"
        );
        assert_eq!(elsewhere("https://cdn.example/x"), "https://cdn.example/x");
        assert_eq!(elsewhere("//cdn.example/x"), "https://cdn.example/x");
        assert_eq!(
            resolve_location(url, "relative/path").err(),
            Some("unusable redirect to `relative/path`".to_string())
        );
    }
}
