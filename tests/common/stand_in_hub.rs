//! A stand-in for the Hugging Face hub on loopback: it answers the file-resolution
//! endpoint (`/{repo}/resolve/main/{file}`) with the hub's metadata headers and
//! supports ranges, and can cut connections to test resuming.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// The commit every file is served at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A file server speaking just enough of the hub protocol.
pub struct StandInHub {
    pub endpoint: String,
    /// Range headers of every GET, in order.
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
}

struct ServerFile {
    bytes: Vec<u8>,
    etag: String,
}

impl StandInHub {
    /// Serves `files` (path → content). The first `cut_first_gets` GETs stop after half the body.
    pub fn start(files: HashMap<String, Vec<u8>>, cut_first_gets: usize) -> Self {
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
