//! A stand-in for the Hugging Face hub on loopback: it answers the file-resolution
//! endpoint (`/{repo}/resolve/main/{file}`) with the hub's metadata headers and
//! supports ranges. On request it behaves as the real hub does (LFS files served
//! from a CDN on a second port, through a chain of redirects; renamed repos
//! answered with a relative redirect) or as a hostile or broken one does (cut
//! connections, a bad commit, silence, a stalled body).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The commit every file is served at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The hub's files `url_prefix/<file>` for each of `files`, read from `dir/<file>`.
pub fn served_files(dir: &Path, url_prefix: &str, files: &[&str]) -> HashMap<String, Vec<u8>> {
    files
        .iter()
        .map(|file| {
            let bytes = std::fs::read(dir.join(file)).expect("fixture");
            (format!("{url_prefix}/{file}"), bytes)
        })
        .collect()
}

/// How the stand-in behaves; the default is a plain, well-behaved hub.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// The first this many body GETs stop after half the body.
    pub cut_first_gets: usize,
    /// Sent as `x-repo-commit` instead of [`COMMIT`].
    pub commit: Option<String>,
    /// `resolve/` answers with the metadata and a redirect to a CDN on a second
    /// port, which redirects once more (absolute) before serving the body.
    pub via_cdn: bool,
    /// Old repo id → new one: requests under the old id get a relative redirect.
    pub renamed: Vec<(String, String)>,
    /// Connections are accepted and never answered.
    pub silent: bool,
    /// Bodies stop after half and the connection stays open without a byte.
    pub stall_body: bool,
}

/// A file server speaking just enough of the hub protocol.
pub struct StandInHub {
    pub endpoint: String,
    /// Where the CDN listens (used when `via_cdn`).
    pub cdn_endpoint: String,
    /// Range headers of every GET that was answered with a body, in order.
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
    /// Body bytes written for each of those GETs, in the same order.
    pub sent_bytes: Arc<Mutex<Vec<usize>>>,
    /// `METHOD path` of every request to the hub and the CDN, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

struct ServerFile {
    bytes: Vec<u8>,
    etag: String,
}

struct State {
    files: HashMap<String, ServerFile>,
    behaviour: Behaviour,
    cdn_endpoint: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    sent_bytes: Arc<Mutex<Vec<usize>>>,
    requests: Arc<Mutex<Vec<String>>>,
    cuts: AtomicUsize,
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

/// How long a silent or stalled connection is held open.
const HOLD: Duration = Duration::from_secs(120);

impl StandInHub {
    /// Serves `files` (path → content). The first `cut_first_gets` GETs stop after half the body.
    pub fn start(files: HashMap<String, Vec<u8>>, cut_first_gets: usize) -> Self {
        Self::start_with(
            files,
            Behaviour {
                cut_first_gets,
                ..Behaviour::default()
            },
        )
    }

    /// Serves `files` (path → content) as `behaviour` says.
    pub fn start_with(files: HashMap<String, Vec<u8>>, behaviour: Behaviour) -> Self {
        let hub = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let cdn = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = format!("http://{}", hub.local_addr().expect("addr"));
        let cdn_endpoint = format!("http://{}", cdn.local_addr().expect("addr"));
        let files = files
            .into_iter()
            .map(|(path, bytes)| {
                let etag = hex::encode(Sha256::digest(&bytes));
                (path, ServerFile { bytes, etag })
            })
            .collect();
        let state = Arc::new(State {
            files,
            cuts: AtomicUsize::new(behaviour.cut_first_gets),
            behaviour,
            cdn_endpoint: cdn_endpoint.clone(),
            ranges: Arc::new(Mutex::new(Vec::new())),
            sent_bytes: Arc::new(Mutex::new(Vec::new())),
            requests: Arc::new(Mutex::new(Vec::new())),
        });
        listen(hub, state.clone(), serve_hub);
        listen(cdn, state.clone(), serve_cdn);
        Self {
            endpoint,
            cdn_endpoint,
            ranges: state.ranges.clone(),
            sent_bytes: state.sent_bytes.clone(),
            requests: state.requests.clone(),
        }
    }
}

/// Answers every connection on its own thread, so a held one blocks no other.
fn listen(listener: TcpListener, state: Arc<State>, serve: fn(&State, TcpStream)) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            std::thread::spawn(move || serve(&state, stream));
        }
    });
}

fn read_request(stream: &TcpStream, state: &State) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
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
    let request = Request {
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        range,
    };
    state
        .requests
        .lock()
        .expect("lock")
        .push(format!("{} {}", request.method, request.path));
    Some(request)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)]) {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
}

fn serve_hub(state: &State, mut stream: TcpStream) {
    if state.behaviour.silent {
        std::thread::sleep(HOLD);
        return;
    }
    let Some(request) = read_request(&stream, state) else {
        return;
    };
    let Some((repo, file)) = request
        .path
        .strip_prefix("/")
        .and_then(|p| p.split_once("/resolve/main/"))
    else {
        return respond(
            &mut stream,
            "404 Not Found",
            &[("content-length", "0".into())],
        );
    };
    if let Some((_, new)) = state.behaviour.renamed.iter().find(|(old, _)| old == repo) {
        let location = format!("/{new}/resolve/main/{file}");
        return respond(
            &mut stream,
            "307 Temporary Redirect",
            &[("location", location), ("content-length", "0".into())],
        );
    }
    let Some(served) = state.files.get(&format!("{repo}/{file}")) else {
        return respond(
            &mut stream,
            "404 Not Found",
            &[("content-length", "0".into())],
        );
    };
    let commit = state
        .behaviour
        .commit
        .as_deref()
        .unwrap_or(COMMIT)
        .to_string();
    if state.behaviour.via_cdn {
        let location = format!("{}/blobs/{}?hop=1", state.cdn_endpoint, served.etag);
        return respond(
            &mut stream,
            "302 Found",
            &[
                ("location", location),
                ("x-repo-commit", commit),
                ("x-linked-etag", format!("\"{}\"", served.etag)),
                ("x-linked-size", served.bytes.len().to_string()),
                ("content-length", "0".into()),
            ],
        );
    }
    serve_body(
        state,
        stream,
        &request,
        served,
        &[("x-repo-commit", commit)],
    );
}

fn serve_cdn(state: &State, mut stream: TcpStream) {
    let Some(request) = read_request(&stream, state) else {
        return;
    };
    let found = request
        .path
        .strip_prefix("/blobs/")
        .and_then(|p| p.split_once("?hop="))
        .and_then(|(etag, hop)| {
            let served = state.files.values().find(|f| f.etag == etag)?;
            Some((served, hop))
        });
    match found {
        Some((served, "1")) => {
            let location = format!("{}/blobs/{}?hop=2", state.cdn_endpoint, served.etag);
            respond(
                &mut stream,
                "302 Found",
                &[("location", location), ("content-length", "0".into())],
            );
        }
        Some((served, _)) => serve_body(state, stream, &request, served, &[]),
        None => respond(
            &mut stream,
            "404 Not Found",
            &[("content-length", "0".into())],
        ),
    }
}

/// Answers with the file (from the requested range on), cutting or stalling the
/// body as the behaviour says.
fn serve_body(
    state: &State,
    mut stream: TcpStream,
    request: &Request,
    served: &ServerFile,
    extra_headers: &[(&str, String)],
) {
    let start: usize = request
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let body = &served.bytes[start.min(served.bytes.len())..];
    let status = if start > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let length = if request.method == "HEAD" {
        served.bytes.len()
    } else {
        body.len()
    };
    let mut headers = vec![
        ("etag", format!("\"{}\"", served.etag)),
        ("content-length", length.to_string()),
    ];
    headers.extend(extra_headers.iter().cloned());
    respond(&mut stream, status, &headers);
    if request.method != "GET" {
        return;
    }
    state
        .ranges
        .lock()
        .expect("lock")
        .push(request.range.clone());
    let cut = state
        .cuts
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let shortened = cut || state.behaviour.stall_body;
    let sent = if shortened {
        &body[..body.len() / 2]
    } else {
        body
    };
    if stream.write_all(sent).is_ok() {
        state.sent_bytes.lock().expect("lock").push(sent.len());
    }
    if state.behaviour.stall_body {
        let _ = stream.flush();
        std::thread::sleep(HOLD);
    }
}
