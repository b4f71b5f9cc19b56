//! Downloads from the Hugging Face hub into its standard cache layout, with
//! progress, resume after an interruption, cancellation and verification; files
//! already in the cache are used without any network access.

mod names;
mod transfer;
mod verify;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

pub use verify::{BlobCheck, CacheReport, sha256_file, verify_cache};

/// The repository name (without its owner) of a path inside a Hugging Face cache
/// snapshot (`models--owner--name/snapshots/<commit>/...`): a snapshot's folder and
/// file names are commit hashes and the repository's generic file names, not names a
/// person would recognise.
pub fn cached_repo_name(path: &Path) -> Option<String> {
    let snapshots = path
        .ancestors()
        .find(|dir| dir.file_name() == Some("snapshots".as_ref()))?;
    let repo = snapshots.parent()?.file_name()?.to_str()?;
    let (_owner, name) = repo.strip_prefix("models--")?.split_once("--")?;
    Some(name.to_string())
}

use crate::files::read_text_file;
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
    stall_timeout: Duration,
}

/// How long a connection may go without a byte before the download gives up.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the caller's cancel flag is looked at while a download runs.
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Hub {
    /// An explicit endpoint (e.g. `https://huggingface.co`) and cache folder.
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }

    /// The same hub, giving up on a connection (connecting, or waiting for the
    /// next byte) after `timeout` instead of 30 s.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The hub as `huggingface_hub` configures it: `HF_ENDPOINT`, and the cache in
    /// `HF_HUB_CACHE`, `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub` or
    /// `~/.cache/huggingface/hub`, the first that is set.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let endpoint = var("HF_ENDPOINT")
            .map(|value| value.to_string_lossy().into_owned())
            .unwrap_or_else(|| "https://huggingface.co".to_string());
        let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf());
        Self::new(endpoint, cache_dir_from(var, home))
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The stall timeout (see [`Hub::with_stall_timeout`]).
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The cache folder of `repo`; the caller has checked the name.
    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The snapshot folder `refs/main` points to, if the ref holds a commit hash.
    fn main_snapshot(&self, repo: &str) -> Option<PathBuf> {
        names::check_repo(repo).ok()?;
        let repo_dir = self.repo_dir(repo);
        // A ref holds a 40-character hash; anything much larger is not one.
        let commit = read_text_file(&repo_dir.join("refs/main"), 4096).ok()?;
        let commit = commit.trim();
        names::check_commit(commit).ok()?;
        Some(repo_dir.join("snapshots").join(commit))
    }

    /// The cached copy of `file` at the `main` revision, if complete; no network access.
    pub fn cached(&self, repo: &str, file: &str) -> Option<PathBuf> {
        names::check_file(file).ok()?;
        let path = self.main_snapshot(repo)?.join(file);
        path.is_file().then_some(path)
    }

    /// The cached snapshot folder of `repo` (where a diffusers layout lives), if any.
    pub fn snapshot_dir(&self, repo: &str) -> Option<PathBuf> {
        self.main_snapshot(repo).filter(|dir| dir.is_dir())
    }

    /// Returns the cached file, or downloads it (resuming a partial download),
    /// reporting progress. The transfer runs on its own thread so that `cancel`
    /// ends it within a second whatever it is waiting for (connection, answer,
    /// next byte); what is on disk is resumed next time.
    pub fn fetch(
        &self,
        repo: &str,
        file: &str,
        progress: &mut dyn FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf> {
        let what = format!("{repo}/{file}");
        names::check_repo(repo)
            .and_then(|()| names::check_file(file))
            .map_err(|message| MinusError::Download {
                what: what.clone(),
                message,
            })?;
        if let Some(path) = self.cached(repo, file) {
            return Ok(path);
        }
        let transfer = transfer::Transfer::start(self, repo, file)?;
        loop {
            match transfer.updates.recv_timeout(CANCEL_POLL) {
                Ok(transfer::Update::Progress(p)) => progress(p),
                Ok(transfer::Update::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(MinusError::Download {
                        what,
                        message: "the download thread stopped without a result".to_string(),
                    });
                }
            }
            if cancel.load(Ordering::Relaxed) {
                transfer.stop();
                return Err(MinusError::Cancelled);
            }
        }
    }
}

/// The cache folder from environment variables (`var` gives a set, non-empty
/// value) and the home folder, in `huggingface_hub`'s order.
fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>, home: Option<PathBuf>) -> PathBuf {
    var("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| var("HF_HOME").map(|dir| PathBuf::from(dir).join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("huggingface/hub")))
        .or_else(|| home.map(|home| home.join(".cache/huggingface/hub")))
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_follows_huggingface_hub_order() {
        let home = Some(PathBuf::from("/home/u"));
        fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
            move |name: &str| {
                set.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            }
        }
        const ALL: [(&str, &str); 3] = [
            ("HF_HUB_CACHE", "/a"),
            ("HF_HOME", "/b"),
            ("XDG_CACHE_HOME", "/c"),
        ];
        let all = ALL;
        assert_eq!(cache_dir_from(vars(&all), home.clone()), Path::new("/a"));
        assert_eq!(
            cache_dir_from(vars(&all[1..]), home.clone()),
            Path::new("/b/hub")
        );
        assert_eq!(
            cache_dir_from(vars(&all[2..]), home.clone()),
            Path::new("/c/huggingface/hub")
        );
        assert_eq!(
            cache_dir_from(vars(&[]), home),
            Path::new("/home/u/.cache/huggingface/hub")
        );
    }

    /// A `refs/main` that is a FIFO (or `/dev/zero`, or huge) names no snapshot and
    /// never blocks or fills memory: it is read through the bounded reader.
    #[cfg(unix)]
    #[test]
    fn a_ref_that_is_a_fifo_names_no_snapshot_without_blocking() {
        let cache = crate::scratch::ScratchDir::new("hub-fifo-ref");
        let hub = Hub::new("http://127.0.0.1:9", cache.path());
        let refs = hub.repo_dir("a/b").join("refs");
        std::fs::create_dir_all(&refs).expect("refs folder");
        let made = std::process::Command::new("mkfifo")
            .arg(refs.join("main"))
            .status()
            .expect("mkfifo runs (coreutils)");
        assert!(made.success());
        let (sender, receiver) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || sender.send(hub.snapshot_dir("a/b")));
        let answer = receiver.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(answer, Ok(None)),
            "reading refs/main blocked or named a snapshot: {answer:?}"
        );
    }
}
