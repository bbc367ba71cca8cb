//! Running the `charlstm-cuda` binary from the CLI tests (tests/cli.rs,
//! cli_polish.rs, report.rs, bench_cli.rs): colour off, output captured.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, `NO_COLOR` set: the one cargo built next to this
/// test, or `CHARLSTM_BIN` where the test binary runs without its build
/// tree (scripts/gpu-check.sh points it at the GPU bundle's binary).
pub fn bin() -> Command {
    let path = std::env::var_os("CHARLSTM_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_charlstm-cuda").into());
    let mut c = Command::new(path);
    c.env("NO_COLOR", "1");
    c
}

/// Runs it with `args`, output captured.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary starts")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs it and asserts success, showing both streams otherwise.
pub fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Deterministic pseudo-English, a few thousand characters.
pub fn small_text() -> String {
    let words = [
        "the", "will", "to", "power", "is", "truth", "and", "of", "a", "spirit", "Free", "good",
        "evil",
    ];
    let mut s = String::new();
    let mut x: u32 = 12345;
    for i in 0..900 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(words[(x >> 16) as usize % words.len()]);
        s.push(if i % 11 == 10 { '.' } else { ' ' });
        if i % 37 == 36 {
            s.push('\n');
        }
    }
    s
}

/// A temporary directory with short helpers for the paths the tests pass.
pub struct Dir(pub tempfile::TempDir);
impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    pub fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).expect("write");
        self.s(name)
    }
}

/// A checkpoint minus its metadata header: weights and optimizer state,
/// to compare two runs bit for bit.
pub fn tensors(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[8 + n..].to_vec()
}

/// Every file of `dir` with its bytes, to show a refused command wrote nothing.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let e = e.expect("entry");
            let bytes = std::fs::read(e.path()).expect("read");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}
