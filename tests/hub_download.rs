//! Downloads against a stand-in hub on loopback that answers like the Hugging Face
//! hub's file-resolution endpoint: progress, resume after a cut connection, cancel,
//! verification, cache hits with no network, the CDN's redirects, and hostile or
//! broken servers (bad commits, silence, stalls).

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::stand_in_hub::{Behaviour, COMMIT, StandInHub};
use common::temp_dir;
use minus::MinusError;
use minus::engine::{Command as EngineCommand, Engine, Event, LoadSettings};
use minus::pipeline::Request;
use minus::weights::hub::{DownloadProgress, Hub, sha256_file};
use sha2::{Digest, Sha256};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

const REPO: &str = "h94/IP-Adapter";
const FILE: &str = "models/image_encoder/model.safetensors";

#[test]
fn downloads_with_progress_into_the_hub_cache_layout() {
    let bytes = content(3 << 20);
    let hub_server = StandInHub::start(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        0,
    );
    let cache = temp_dir("hub-progress");
    let hub = Hub::new(&hub_server.endpoint, &cache);
    let mut events: Vec<DownloadProgress> = Vec::new();
    let path = hub
        .fetch(REPO, FILE, &mut |p| events.push(p), &AtomicBool::new(false))
        .expect("download");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    assert!(events.len() >= 2, "progress reported along the way");
    assert!(events.windows(2).all(|w| w[0].bytes < w[1].bytes));
    let last = events.last().expect("events");
    assert_eq!(
        (last.bytes, last.total),
        (bytes.len() as u64, Some(bytes.len() as u64))
    );
    // The standard layout: refs/main, blobs/<sha256>, snapshots/<commit>/<file>.
    let repo_dir = cache.join("models--h94--IP-Adapter");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).expect("ref"),
        COMMIT
    );
    let etag = sha256_file(&path).expect("hash");
    assert!(repo_dir.join("blobs").join(&etag).is_file());
    assert_eq!(path, repo_dir.join("snapshots").join(COMMIT).join(FILE));
}

#[test]
fn resumes_after_a_cut_connection() {
    let bytes = content(2 << 20);
    let hub_server = StandInHub::start(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        1,
    );
    let cache = temp_dir("hub-resume");
    let hub = Hub::new(&hub_server.endpoint, &cache);
    let cancel = AtomicBool::new(false);
    let first = hub.fetch(REPO, FILE, &mut |_| {}, &cancel);
    assert!(
        matches!(first, Err(MinusError::Download { .. })),
        "the cut is reported"
    );
    let path = hub
        .fetch(REPO, FILE, &mut |_| {}, &cancel)
        .expect("resumed download");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    let ranges = hub_server.ranges.lock().expect("lock").clone();
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0], None);
    assert_eq!(
        ranges[1].as_deref(),
        Some(format!("bytes={}-", bytes.len() / 2).as_str())
    );
    // The resume fetched only what the cut left out: the file crossed the wire once.
    let sent = hub_server.sent_bytes.lock().expect("lock").clone();
    assert_eq!(sent, [bytes.len() / 2, bytes.len() - bytes.len() / 2]);
}

#[test]
fn cancel_stops_and_keeps_the_partial_file_for_later() {
    let bytes = content(4 << 20);
    let hub_server = StandInHub::start(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        0,
    );
    let cache = temp_dir("hub-cancel");
    let hub = Hub::new(&hub_server.endpoint, &cache);
    let cancel = AtomicBool::new(false);
    let result = hub.fetch(
        REPO,
        FILE,
        &mut |_| cancel.store(true, Ordering::Relaxed),
        &cancel,
    );
    assert!(matches!(result, Err(MinusError::Cancelled)));
    let partial_exists = std::fs::read_dir(cache.join("models--h94--IP-Adapter/blobs"))
        .expect("blobs")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".incomplete"));
    assert!(partial_exists);
    let path = hub
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect("finish later");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn cached_files_are_used_without_network() {
    let bytes = content(1000);
    let hub_server = StandInHub::start(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        0,
    );
    let cache = temp_dir("hub-offline");
    Hub::new(&hub_server.endpoint, &cache)
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect("download");
    // An endpoint where nothing listens: only the cache can answer.
    let offline = Hub::new("http://127.0.0.1:9", &cache);
    assert!(offline.cached(REPO, FILE).is_some());
    let path = offline
        .fetch(
            REPO,
            FILE,
            &mut |_| panic!("no download expected"),
            &AtomicBool::new(false),
        )
        .expect("cache hit");
    assert_eq!(std::fs::read(path).expect("read"), bytes);
    let missing = offline.fetch(
        REPO,
        "models/other.bin",
        &mut |_| {},
        &AtomicBool::new(false),
    );
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("h94/IP-Adapter/models/other.bin") && message.contains("cannot reach"),
        "{message}"
    );
}

#[test]
fn unknown_files_are_reported_as_not_found() {
    let hub_server = StandInHub::start(HashMap::new(), 0);
    let cache = temp_dir("hub-404");
    let hub = Hub::new(&hub_server.endpoint, &cache);
    let error = hub
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect_err("404");
    assert!(error.to_string().contains("not found"), "{error}");
}

/// Runs `fetch` on another thread, sets `cancel` after `after`, and returns the result.
fn cancel_after(hub: &Hub, after: Duration) -> minus::Result<std::path::PathBuf> {
    let cancel = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let fetch = scope.spawn(|| hub.fetch(REPO, FILE, &mut |_| {}, &cancel));
        std::thread::sleep(after);
        cancel.store(true, Ordering::Relaxed);
        fetch.join().expect("fetch thread")
    })
}

#[test]
fn a_hostile_commit_writes_nothing_outside_the_cache() {
    let root = temp_dir("hub-hostile-commit");
    let cache = root.join("cache");
    let absolute = root.join("absolute").display().to_string();
    for commit in ["../../../escaped", absolute.as_str(), "main"] {
        let hub_server = StandInHub::start_with(
            HashMap::from([(format!("{REPO}/{FILE}"), content(1000))]),
            Behaviour {
                commit: Some(commit.to_string()),
                ..Behaviour::default()
            },
        );
        let error = Hub::new(&hub_server.endpoint, &cache)
            .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
            .expect_err("a commit that is no hash is refused");
        let message = error.to_string();
        assert!(
            message.contains(FILE) && message.contains("not a 40-digit hex hash"),
            "{message}"
        );
    }
    let mut written: Vec<String> = std::fs::read_dir(&root)
        .expect("root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert!(
        written.iter().all(|name| name == "cache"),
        "nothing beside the cache: {written:?}"
    );
    assert!(!cache.join("models--h94--IP-Adapter/refs/main").exists());
    assert!(!cache.join("models--h94--IP-Adapter/snapshots").exists());
}

#[test]
fn repo_and_file_names_that_leave_the_cache_are_refused() {
    let cache = temp_dir("hub-names");
    let hub = Hub::new("http://127.0.0.1:9", &cache);
    for (repo, file) in [("../x", FILE), (REPO, "../../x"), (REPO, "/etc/passwd")] {
        let error = hub
            .fetch(repo, file, &mut |_| {}, &AtomicBool::new(false))
            .expect_err("refused");
        assert!(error.to_string().contains("not a"), "{error}");
    }
}

#[test]
fn a_silent_hub_times_out_with_a_clear_message() {
    let hub_server = StandInHub::start_with(
        HashMap::new(),
        Behaviour {
            silent: true,
            ..Behaviour::default()
        },
    );
    let cache = temp_dir("hub-silent");
    let hub = Hub::new(&hub_server.endpoint, &cache).with_stall_timeout(Duration::from_secs(1));
    // The stand-in stays silent for 120 s: only the 1 s timeout, which the message names,
    // ends the wait.
    let error = hub
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect_err("timeout");
    let message = error.to_string();
    assert!(
        message.contains(FILE) && message.contains("no answer from") && message.contains("1 s"),
        "{message}"
    );
}

#[test]
fn a_stalled_body_times_out_and_keeps_what_arrived() {
    let bytes = content(1 << 20);
    let hub_server = StandInHub::start_with(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        Behaviour {
            stall_body: true,
            ..Behaviour::default()
        },
    );
    let cache = temp_dir("hub-stalled");
    let hub = Hub::new(&hub_server.endpoint, &cache).with_stall_timeout(Duration::from_secs(1));
    let error = hub
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect_err("stall");
    let message = error.to_string();
    assert!(
        message.contains("stalled") && message.contains("1 s"),
        "{message}"
    );
    let partial = cache.join("models--h94--IP-Adapter/blobs").join(format!(
        "{}.incomplete",
        hex::encode(Sha256::digest(&bytes))
    ));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        kept,
        bytes.len() as u64 / 2,
        "what arrived is kept for a resume"
    );
}

#[test]
fn cancel_ends_a_download_in_every_phase() {
    let bytes = content(1 << 20);
    let files = HashMap::from([(format!("{REPO}/{FILE}"), bytes)]);
    let silent = StandInHub::start_with(
        files.clone(),
        Behaviour {
            silent: true,
            ..Behaviour::default()
        },
    );
    let stalled = StandInHub::start_with(
        files,
        Behaviour {
            stall_body: true,
            ..Behaviour::default()
        },
    );
    let mut endpoints = vec![
        ("metadata", silent.endpoint.clone()),
        ("body", stalled.endpoint.clone()),
    ];
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let unanswered = full_listener::FullListener::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    endpoints.push(("connect", unanswered.endpoint.clone()));
    for (phase, endpoint) in endpoints {
        // The default 30 s stall timeout: only the cancel can end these before it, and
        // a transfer that missed the cancel would end in a timeout error instead.
        let cache = temp_dir(&format!("hub-cancel-{phase}"));
        let hub = Hub::new(endpoint, &cache);
        let result = cancel_after(&hub, Duration::from_millis(500));
        assert!(
            matches!(result, Err(MinusError::Cancelled)),
            "{phase}: {result:?}"
        );
    }
}

/// A loopback listener whose accept queue is full, so that a new connection
/// waits in the connect phase.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod full_listener {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    pub struct FullListener {
        pub endpoint: String,
        _listener: TcpListener,
        _queued: Vec<TcpStream>,
    }

    impl FullListener {
        pub fn new() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("addr");
            // SAFETY: `listen` on a socket this function owns; it only changes the backlog.
            assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
            let mut queued = Vec::new();
            while let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(300))
            {
                queued.push(stream);
                assert!(queued.len() < 64, "the accept queue never fills");
            }
            Self {
                endpoint: format!("http://{address}"),
                _listener: listener,
                _queued: queued,
            }
        }
    }
}

#[test]
fn downloads_follow_the_cdn_redirect_chain_and_resume_through_it() {
    let bytes = content(2 << 20);
    let hub_server = StandInHub::start_with(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        Behaviour {
            via_cdn: true,
            cut_first_gets: 1,
            ..Behaviour::default()
        },
    );
    let cache = temp_dir("hub-cdn");
    let hub = Hub::new(&hub_server.endpoint, &cache);
    let cancel = AtomicBool::new(false);
    let cut = hub.fetch(REPO, FILE, &mut |_| {}, &cancel);
    assert!(matches!(cut, Err(MinusError::Download { .. })), "{cut:?}");
    let path = hub
        .fetch(REPO, FILE, &mut |_| {}, &cancel)
        .expect("resumed through the redirects");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    let ranges = hub_server.ranges.lock().expect("lock").clone();
    assert_eq!(
        ranges,
        [None, Some(format!("bytes={}-", bytes.len() / 2))],
        "the range survives the redirects"
    );
    let requests = hub_server.requests.lock().expect("lock").clone();
    let etag = sha256_file(&path).expect("hash");
    assert_eq!(
        requests[..3],
        [
            format!("HEAD /{REPO}/resolve/main/{FILE}"),
            format!("GET /blobs/{etag}?hop=1"),
            format!("GET /blobs/{etag}?hop=2"),
        ]
    );
}

#[test]
fn renamed_repos_are_followed_and_cached_under_the_asked_name() {
    let bytes = content(5000);
    let hub_server = StandInHub::start_with(
        HashMap::from([(format!("{REPO}/{FILE}"), bytes.clone())]),
        Behaviour {
            via_cdn: true,
            renamed: vec![("old-owner/IP-Adapter".to_string(), REPO.to_string())],
            ..Behaviour::default()
        },
    );
    let cache = temp_dir("hub-renamed");
    let path = Hub::new(&hub_server.endpoint, &cache)
        .fetch(
            "old-owner/IP-Adapter",
            FILE,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .expect("followed the rename");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    assert!(path.starts_with(cache.join("models--old-owner--IP-Adapter")));
}

fn minus() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minus"));
    command.env_remove("HF_HUB_CACHE").env_remove("HF_HOME");
    command
}

/// Runs `command`, killing it if it has not ended after `limit`.
fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("minus runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("`minus` still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn the_cache_is_found_under_xdg_cache_home() {
    let xdg = temp_dir("hub-xdg");
    let output = output_within(
        minus().args(["models", "list"]).env("XDG_CACHE_HOME", &xdg),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "Hugging Face cache: {}",
        xdg.join("huggingface/hub").display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn models_verify_reports_each_file_and_skips_what_is_not_a_file() {
    let cache = temp_dir("hub-verify");
    let blobs = cache.join("models--h94--IP-Adapter/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let good = content(100);
    let good_name = hex::encode(Sha256::digest(&good));
    std::fs::write(blobs.join(&good_name), &good).expect("good blob");
    let corrupt = "1".repeat(64);
    std::fs::write(blobs.join(&corrupt), b"not what the name says").expect("corrupt blob");
    let dangling = "2".repeat(64);
    std::os::unix::fs::symlink(cache.join("gone"), blobs.join(&dangling)).expect("symlink");
    let fifo = "3".repeat(64);
    let made = Command::new("mkfifo")
        .arg(blobs.join(&fifo))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let output = output_within(
        minus()
            .args(["models", "verify"])
            .env("HF_HUB_CACHE", &cache),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for expected in [
        format!("corrupt: {}", blobs.join(&corrupt).display()),
        format!("unreadable: {}", blobs.join(&dangling).display()),
        format!(
            "skipped (not a regular file): {}",
            blobs.join(&fifo).display()
        ),
        "2 cached file(s) do not match their checksum or cannot be read (1 match, 1 skipped)"
            .to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn a_stalled_download_blocks_no_generation_and_is_cancelled() {
    let silent = StandInHub::start_with(
        HashMap::new(),
        Behaviour {
            silent: true,
            ..Behaviour::default()
        },
    );
    let mut engine = Engine::spawn(Arc::new(|| {})).expect("engine");
    let wait_for = |engine: &Engine, what: &str, found: &mut dyn FnMut(&Event) -> bool| {
        let started = Instant::now();
        loop {
            let events = engine.drain_events();
            for event in &events {
                assert!(
                    !matches!(
                        event,
                        Event::DownloadFailed { .. } | Event::Downloaded { .. }
                    ) || what.contains("download"),
                    "the download ended early: {event:?}"
                );
            }
            if events.iter().any(&mut *found) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    engine.send(EngineCommand::LoadModels(LoadSettings {
        paths: common::model_paths(None),
        device: minus::device::DeviceChoice::Cpu,
        dtype: None,
    }));
    wait_for(&engine, "models", &mut |e| {
        matches!(e, Event::ModelsLoaded { .. })
    });
    let cache = temp_dir("hub-engine");
    // A stall timeout longer than the test's waits: only the cancel can end the download.
    engine.send(EngineCommand::Download {
        hub: Hub::new(&silent.endpoint, &cache).with_stall_timeout(Duration::from_secs(600)),
        names: vec!["ip-adapter".to_string()],
    });
    let job = engine.next_job_id();
    engine.send(EngineCommand::Generate {
        job,
        request: Request {
            steps: 2,
            width: 64,
            height: 64,
            ..Request::default()
        },
        output_dir: None,
    });
    wait_for(
        &engine,
        "generation",
        &mut |e| matches!(e, Event::Finished { job: done, .. } if *done == job),
    );
    engine.send(EngineCommand::CancelDownload);
    wait_for(
        &engine,
        "download cancel",
        &mut |e| matches!(e, Event::DownloadFailed { error } if error.contains("cancelled")),
    );
}
