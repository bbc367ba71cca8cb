//! `corpus::download` against a tiny local HTTP/1.1 server: success and
//! caching, wrong bytes, HTTP errors, and an unreachable host.

mod common;
use common::nietzsche_file;

use charlstm_cuda::Error;
use charlstm_cuda::corpus::download::{NIETZSCHE_LEN, nietzsche, nietzsche_from};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server that answers at most `max` requests with `status` and `body`, then
/// exits; it also gives up after a few seconds so a test never hangs on it.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Server {
    fn start(status: &'static str, body: Vec<u8>, max: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/nietzsche.txt", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while counter.load(Ordering::SeqCst) < max && Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let mut out = &stream;
                let _ = out
                    .write_all(head.as_bytes())
                    .and_then(|_| out.write_all(&body));
            }
        });
        Server { url, hits, thread }
    }

    fn finish(self) -> usize {
        // Returns at once when all `max` requests came, else at the deadline.
        let _ = self.thread.join();
        self.hits.load(Ordering::SeqCst)
    }
}

fn download_error(url: &str, cache: &Path) -> (String, String) {
    match nietzsche_from(url, Some(cache)) {
        Err(e @ Error::Download { .. }) => {
            eprintln!("{e}\n  hint: {}", e.hint());
            (e.to_string(), e.hint())
        }
        other => panic!("expected a Download error, got {other:?}"),
    }
}

#[test]
fn downloads_verifies_and_caches() {
    let Some(src) = nietzsche_file() else { return };
    let body = std::fs::read(src).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start("200 OK", body.clone(), 1);
    let path = nietzsche_from(&server.url, Some(cache.path())).unwrap();
    assert_eq!(path, cache.path().join("charlstm-cuda/nietzsche.txt"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    // The second call is served from the cache, even with no server at all.
    let again = nietzsche(Some(cache.path())).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        nietzsche_from("http://127.0.0.1:9/unused", Some(cache.path())).unwrap(),
        path
    );
    assert_eq!(server.finish(), 1);
    // A corrupted cache entry is fetched again.
    std::fs::write(&path, b"truncated").unwrap();
    let server = Server::start("200 OK", body.clone(), 1);
    nietzsche_from(&server.url, Some(cache.path())).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(server.finish(), 1);
}

#[test]
fn wrong_bytes_are_rejected_and_not_cached() {
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start("200 OK", vec![b'x'; NIETZSCHE_LEN as usize], 1);
    let (msg, _) = download_error(&server.url, cache.path());
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains("expected sha256 23cf6987"), "{msg}");
    assert!(msg.contains(", got "), "{msg}");
    assert_eq!(server.finish(), 1);
    let server = Server::start("200 OK", b"<html>moved</html>".to_vec(), 1);
    let (msg, _) = download_error(&server.url, cache.path());
    assert!(msg.contains("expected 600901 bytes, got 18"), "{msg}");
    server.finish();
    assert!(!cache.path().join("charlstm-cuda/nietzsche.txt").exists());
}

#[test]
fn http_errors_are_download_errors() {
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start("404 Not Found", b"no such file".to_vec(), 1);
    let (msg, hint) = download_error(&server.url, cache.path());
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert!(msg.contains(&server.url), "{msg}");
    assert!(hint.contains("--corpus FILE"), "{hint}");
    server.finish();
}

#[test]
fn unreachable_server_suggests_a_local_file() {
    let cache = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: connecting is refused
    let url = format!("http://127.0.0.1:{port}/nietzsche.txt");
    let (msg, hint) = download_error(&url, cache.path());
    assert!(msg.contains("could not download"), "{msg}");
    assert!(hint.contains("--corpus FILE"), "{hint}");
}
