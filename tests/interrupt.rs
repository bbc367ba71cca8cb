//! Interrupted training loses at most the current batch: SIGINT and SIGTERM
//! make `train` finish its batch, write `last.safetensors` and exit 130
//! naming it; `--resume` then ends with the same weights, bit for bit on the
//! CPU backend, as a run that was never interrupted.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"))
}

/// Enough batches (3 epochs x 150) that a signal sent after the first
/// epoch lands mid-run, small enough to finish in seconds.
fn args<'a>(corpus: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--corpus",
        corpus,
        "--out",
        out,
        "--epochs",
        "3",
        "--steps-per-epoch",
        "150",
        "--maxlen",
        "20",
        "--step",
        "1",
        "--hidden",
        "48",
        "--batch-size",
        "16",
        "--gen-length",
        "5",
        "--device",
        "cpu",
    ]
}

fn text() -> String {
    let words = [
        "the ", "will ", "to ", "power ", "is ", "not ", "what ", "we, ",
    ];
    (0..4000)
        .map(|i| words[(i * 7 + i / 5) % words.len()])
        .collect()
}

/// The checkpoint minus its metadata: weights and optimizer state.
fn tensors(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[8 + n..].to_vec()
}

fn interrupted_then_resumed(signal: libc::c_int, name: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let (full_s, cut_s) = (full.to_string_lossy(), cut.to_string_lossy());

    let o = bin().args(args(&corpus, &full_s)).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Interrupted in the middle of epoch 2 of 3, however fast the build (a
    // fixed 300 ms sleep after the start line outlasted the whole run in a
    // release build): wait for the first epoch's line on stdout, then half
    // as long again as that took, then signal.
    let mut child = bin()
        .args(args(&corpus, &cut_s))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let spawned = Instant::now();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut progress = String::new();
    while !progress.contains("epoch 1/3:") {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            panic!("train ended before its first epoch: {progress}");
        }
        progress.push_str(&line);
    }
    // The rest of stdout (samples, progress) is drained so the child never
    // blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).map(|_| rest)
    });
    std::thread::sleep(spawned.elapsed() / 2);
    let mut log = String::new();
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let started = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read");
    log.push_str(&rest);
    let status = child.wait().expect("wait");
    drain.join().expect("stdout reader").expect("read stdout");
    println!("{name}: stopped in {:?}:\n{log}", started.elapsed());
    assert_eq!(status.code(), Some(130), "{name}: {log}");
    assert!(
        log.contains("finishing the current batch") && log.contains("last.safetensors"),
        "{name}: the message must name the checkpoint: {log}"
    );
    assert!(log.contains("--resume"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(cut.join("last.safetensors").is_file());
    // No temp file left behind.
    for e in std::fs::read_dir(&cut).expect("out dir") {
        let n = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            n.ends_with(".safetensors") || n.ends_with(".jsonl") || n == "loss.svg",
            "{name}: stray file {n}"
        );
    }

    let mut resume = args(&corpus, &cut_s);
    resume.push("--resume");
    let o = bin().args(resume).output().expect("resume");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        tensors(&full.join("last.safetensors")),
        tensors(&cut.join("last.safetensors")),
        "{name}: interrupted + resumed must equal uninterrupted, bit for bit"
    );
    // The per-batch log has no timings, so it must match line for line too:
    // the batches before the stop were flushed, none twice.
    let batches = |d: &std::path::Path| std::fs::read_to_string(d.join("batches.jsonl"));
    assert_eq!(
        batches(&full).expect("full run's batches.jsonl"),
        batches(&cut).expect("cut run's batches.jsonl"),
        "{name}: batches.jsonl"
    );
}

#[test]
fn sigint_finishes_the_batch_writes_a_checkpoint_and_resume_is_exact() {
    interrupted_then_resumed(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_does_the_same() {
    interrupted_then_resumed(libc::SIGTERM, "SIGTERM");
}
