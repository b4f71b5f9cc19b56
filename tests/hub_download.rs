//! Downloads against a stand-in hub on loopback that answers like the Hugging Face
//! hub's file-resolution endpoint: progress, resume after a cut connection, cancel,
//! verification, and cache hits with no network.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use common::stand_in_hub::{COMMIT, StandInHub};
use common::temp_dir;
use minus::MinusError;
use minus::weights::hub::{DownloadProgress, Hub, sha256_file};

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
    let hub = Hub::new(&hub_server.endpoint, temp_dir("hub-404"));
    let error = hub
        .fetch(REPO, FILE, &mut |_| {}, &AtomicBool::new(false))
        .expect_err("404");
    assert!(error.to_string().contains("not found"), "{error}");
}
