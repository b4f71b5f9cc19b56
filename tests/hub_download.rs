//! Downloads against a stand-in hub on loopback that answers like the Hugging Face
//! hub's file-resolution endpoint: progress, resume after a cut connection, cancel,
//! verification, and cache hits with no network.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::temp_dir;
use minus::MinusError;
use minus::weights::hub::{DownloadProgress, Hub, sha256_file};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A file server speaking just enough of the hub protocol.
struct StandInHub {
    endpoint: String,
    /// Range headers of every GET, in order.
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

struct ServerFile {
    bytes: Vec<u8>,
    etag: String,
}

impl StandInHub {
    /// Serves `files` (path → content). The first `cut_first_gets` GETs stop after half the body.
    fn start(files: HashMap<String, Vec<u8>>, cut_first_gets: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let files: HashMap<String, ServerFile> = files
            .into_iter()
            .map(|(path, bytes)| {
                let etag = hex::encode(Sha256::digest(&bytes));
                (path, ServerFile { bytes, etag })
            })
            .collect();
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        let cuts = Arc::new(AtomicUsize::new(cut_first_gets));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &files, &seen, &cuts);
            }
        });
        Self { endpoint, ranges }
    }
}

fn serve(
    mut stream: TcpStream,
    files: &HashMap<String, ServerFile>,
    ranges: &Mutex<Vec<Option<String>>>,
    cuts: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(value.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(file) = path
        .strip_prefix("/")
        .and_then(|p| p.split_once("/resolve/main/"))
        .and_then(|(repo, file)| files.get(&format!("{repo}/{file}")))
    else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let body = &file.bytes[start.min(file.bytes.len())..];
    let status = if start > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nx-repo-commit: {COMMIT}\r\netag: \"{}\"\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        file.etag,
        if method == "HEAD" {
            file.bytes.len()
        } else {
            body.len()
        },
    );
    let _ = stream.write_all(header.as_bytes());
    if method == "GET" {
        ranges.lock().expect("lock").push(range);
        let cut = cuts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let sent = if cut { &body[..body.len() / 2] } else { body };
        let _ = stream.write_all(sent);
    }
}

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
