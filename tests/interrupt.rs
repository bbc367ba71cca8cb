//! Interrupted training loses at most the current batch: SIGINT and SIGTERM
//! make `train` finish its batch, write `last.safetensors` and exit 130
//! naming it; `--resume` then ends with the same weights, bit for bit on the
//! CPU backend, as a run that was never interrupted.
#![cfg(unix)]

mod common;
use common::cli::snapshot;

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

/// Starts `train` with `args`, sends `signal` in the middle of epoch 2 of 3
/// and returns its stderr after it exited 130 naming the checkpoint.
fn interrupt(args: &[&str], signal: libc::c_int, name: &str) -> String {
    // Interrupted in the middle of epoch 2 of 3, however fast the build (a
    // fixed 300 ms sleep after the start line outlasted the whole run in a
    // release build): wait for the first epoch's line on stdout, then half
    // as long again as that took, then signal.
    let mut child = bin()
        .args(args)
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
    // Mid-epoch the checkpoint is last.safetensors; a signal that lands
    // as an epoch ends (under load, or in the validation pass after it)
    // stops there, at that epoch's checkpoint: both are a named checkpoint.
    assert!(
        log.contains("finishing the current batch")
            && (log.contains("(checkpoint ") && log.contains(".safetensors)")),
        "{name}: the message must name the checkpoint: {log}"
    );
    assert!(log.contains("--resume"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

/// A run with `extra` flags, interrupted by `signal` and resumed, against
/// one never interrupted.
fn interrupted_then_resumed(signal: libc::c_int, name: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let (full_s, cut_s) = (full.to_string_lossy(), cut.to_string_lossy());
    let args = |corpus, out| [args(corpus, out), extra.to_vec()].concat();

    let o = bin().args(args(&corpus, &full_s)).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    interrupt(&args(&corpus, &cut_s), signal, name);
    assert!(cut.join("last.safetensors").is_file());
    // No temp file left behind, and no lock.
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
    // With a validation split: the same validation losses, best epochs
    // and best weights (metrics.jsonl differs only in its timings).
    if extra.contains(&"--val-fraction") {
        assert_eq!(
            tensors(&full.join("best.safetensors")),
            tensors(&cut.join("best.safetensors")),
            "{name}: best.safetensors"
        );
        let validation = |d: &Path| -> Vec<(serde_json::Value, serde_json::Value)> {
            std::fs::read_to_string(d.join("metrics.jsonl"))
                .expect("metrics.jsonl")
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
                .map(|r| (r["val_loss"].clone(), r["best_epoch"].clone()))
                .collect()
        };
        let want = validation(&full);
        assert_eq!(want.len(), 3);
        assert!(want.iter().all(|(v, _)| v.is_f64()), "{want:?}");
        assert_eq!(want, validation(&cut), "{name}: val_loss and best_epoch");
    }
}

#[test]
fn sigint_finishes_the_batch_writes_a_checkpoint_and_resume_is_exact() {
    interrupted_then_resumed(libc::SIGINT, "SIGINT", &[]);
}

#[test]
fn sigterm_does_the_same() {
    interrupted_then_resumed(libc::SIGTERM, "SIGTERM", &[]);
}

/// Issue 18: the validation split, the best validation loss so far and
/// patience's count survive the interrupt too.
#[test]
fn sigint_with_a_validation_split_and_patience_resumes_exactly() {
    let extra = ["--val-fraction", "0.2", "--patience", "2"];
    interrupted_then_resumed(libc::SIGINT, "SIGINT with --val-fraction", &extra);
}

/// Issue 18: stream mode; the state carried into the next batch is in the
/// checkpoint, so the resumed epoch goes on from it.
#[test]
fn sigint_in_stream_mode_resumes_exactly() {
    let extra = [
        "--mode",
        "stream",
        "--seq-len",
        "5",
        "--val-fraction",
        "0.2",
    ];
    interrupted_then_resumed(libc::SIGINT, "SIGINT in stream mode", &extra);
}

/// The command printed after "continue with: ", as arguments for [`bin`].
fn printed_resume_command(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find_map(|l| l.split_once("continue with: ").map(|(_, c)| c))
        .unwrap_or_else(|| panic!("no resume command printed: {log}"));
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(words[0], "charlstm-cuda", "{line}");
    words[1..].to_vec()
}

/// A copy of the checkpoint at `path` without the `run` metadata: a
/// checkpoint as written before runs recorded their corpus and settings.
fn strip_run_metadata(path: &Path) {
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    header["__metadata__"]
        .as_object_mut()
        .expect("metadata")
        .remove("run");
    let mut text = serde_json::to_string(&header).expect("JSON");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).expect("write");
}

/// Issue 15, item 1: the checkpoint carries the run (the corpus and every
/// training flag), so the command printed on Ctrl-C works as printed, on
/// another text than the built-in one and with `--steps-per-epoch`; a text
/// that is not the run's (same vocabulary, shorter) is refused naming both
/// fingerprints, and a checkpoint of the older format asks for `--corpus`.
#[test]
fn the_printed_resume_command_continues_the_run_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let (full_s, cut_s) = (full.to_string_lossy(), cut.to_string_lossy());
    let o = bin().args(args(&corpus, &full_s)).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = interrupt(&args(&corpus, &cut_s), libc::SIGINT, "SIGINT");
    let printed = printed_resume_command(&log);

    // Another text with the same vocabulary (its first half): refused, and
    // nothing in the run directory changes.
    let half = text()[..text().len() / 2].to_string();
    let other = dir.path().join("half.txt");
    std::fs::write(&other, half).expect("write");
    let before = snapshot(&cut);
    let o = bin()
        .args(&printed)
        .arg("--corpus")
        .arg(&other)
        .output()
        .expect("resume on another text");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "another text must be refused: {err}"
    );
    assert_eq!(err.matches("error: ").count(), 1, "{err}");
    assert!(err.contains("hint: "), "{err}");
    let fingerprints: Vec<&str> = err.matches("CRC32 ").collect();
    assert!(
        fingerprints.len() >= 2 && err.contains("half.txt") && err.contains("t.txt"),
        "both texts and fingerprints named: {err}"
    );
    assert_eq!(before, snapshot(&cut), "a refused resume writes nothing");

    // The printed command, verbatim: the same weights as the run never cut.
    let o = bin().args(&printed).output().expect("resume");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{printed:?}: {err}");
    assert!(err.contains("150 batches"), "steps per epoch kept: {err}");
    assert_eq!(
        tensors(&full.join("last.safetensors")),
        tensors(&cut.join("last.safetensors")),
        "the printed resume command must continue the run bit for bit"
    );

    // A checkpoint without the run's record (today's format before it)
    // still loads, and a resume from it asks for the corpus.
    strip_run_metadata(&cut.join("last.safetensors"));
    let before = snapshot(&cut);
    let o = bin()
        .args(["train", "--resume", "--out", &cut_s, "--epochs", "4"])
        .output()
        .expect("resume without corpus");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("error: ").count(), 1, "{err}");
    assert!(err.contains("hint: ") && err.contains("--corpus"), "{err}");
    assert_eq!(before, snapshot(&cut), "a refused resume writes nothing");
    // The text is memorised by epoch 3 (loss ~4e-4), so the extra epoch's
    // loss can jump more than the guard's 2x from there (RMSprop at lr
    // 0.01); what is tested here is the resume, not the guard.
    let o = bin()
        .args(["train", "--resume", "--out", &cut_s, "--epochs", "4"])
        .args(["--corpus", &corpus, "--steps-per-epoch", "150", "--quiet"])
        .args(["--gen-length", "5", "--device", "cpu"])
        .args(["--divergence-factor", "inf"])
        .output()
        .expect("resume with corpus");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Issue 15, item 6: Ctrl-C while the after-epoch samples are drawn (a
/// long --gen-length) stops them at the next character, saying so, instead
/// of finishing every sample while claiming to finish a batch (13 s at
/// --gen-length 20000; a million characters here would take minutes); the
/// epoch's files are complete, and the printed resume command ends with
/// the weights of a run never interrupted.
#[test]
fn sigint_during_the_samples_stops_them_and_resume_is_exact() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let (full_s, cut_s) = (full.to_string_lossy(), cut.to_string_lossy());
    let run_args = |out: &str, gen_length: &'static str| -> Vec<String> {
        let mut a: Vec<String> = args(&corpus, out).into_iter().map(str::to_string).collect();
        let at = a.iter().position(|x| x == "--gen-length").expect("flag");
        a[at + 1] = gen_length.into();
        let at = a
            .iter()
            .position(|x| x == "--steps-per-epoch")
            .expect("flag");
        a[at + 1] = "20".into();
        let at = a.iter().position(|x| x == "--epochs").expect("flag");
        a[at + 1] = "2".into();
        a
    };

    // CHARLSTM_BIN's binary where it is set (to show the old one fails).
    let mut child = common::cli::bin()
        .args(run_args(&cut_s, "1000000"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out_reader = drain(Box::new(child.stdout.take().expect("stdout")));
    let err_reader = drain(Box::new(child.stderr.take().expect("stderr")));
    // The epoch's checkpoints are written (by rename, so whole) just
    // before its samples are drawn, last.safetensors second; a second after
    // it appears, sampling is on (and lasts minutes at this length).
    let started = Instant::now();
    while !cut.join("last.safetensors").exists() {
        if started.elapsed().as_secs() > 300 || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "epoch 1 never ended: {}",
                err_reader.join().expect("stderr")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } == 0;
    let stopped = Instant::now();
    let mut status = None;
    while stopped.elapsed().as_secs() < 30 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = stopped.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let exit = child.wait().expect("wait");
    let status = status.map(|_| exit);
    assert!(sent, "SIGINT sent");
    let log = err_reader.join().expect("stderr reader");
    let printed = out_reader.join().expect("stdout reader");
    println!("stopped after {took:?}:\n{log}");
    let status = status.unwrap_or_else(|| panic!("still sampling {took:?} after SIGINT: {log}"));
    // Generous for a loaded machine: a character takes well under a
    // millisecond here.
    assert!(took.as_secs_f64() < 2.0, "stopped after {took:?}");
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains("stopping the after-epoch samples")
            && !log.contains("finishing the current batch"),
        "says what it stops: {log}"
    );
    assert!(log.contains("stopped after epoch 1"), "{log}");
    assert!(
        printed.contains("epoch 1/2:"),
        "the epoch is reported: {printed}"
    );
    // The epoch's files are all there, its row with the characters drawn.
    for f in [
        "epoch-001.safetensors",
        "last.safetensors",
        "loss.svg",
        "batches.jsonl",
    ] {
        assert!(cut.join(f).is_file(), "{f} missing");
    }
    assert!(!cut.join(".lock").exists(), "the lock is released");
    let metrics = std::fs::read_to_string(cut.join("metrics.jsonl")).expect("metrics");
    let rows: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(rows.len(), 1, "{metrics}");
    let samples = rows[0]["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 4);
    let n = samples[0]["text"].as_str().expect("text").chars().count();
    assert!(n < 1_000_000, "cut short: {n}");
    assert!(
        samples
            .iter()
            .all(|s| s["text"].as_str().expect("text").chars().count() == n)
    );

    // The printed command, without the samples, trains epoch 2; the
    // weights are those of a run never interrupted (samples draw from
    // their own random streams, so they do not change training).
    let mut resume = printed_resume_command(&log);
    resume.extend(["--gen-length", "0"].map(String::from));
    let o = common::cli::bin().args(&resume).output().expect("resume");
    assert!(
        o.status.success(),
        "{resume:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = common::cli::bin()
        .args(run_args(&full_s, "0"))
        .output()
        .expect("full run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        tensors(&full.join("last.safetensors")),
        tensors(&cut.join("last.safetensors")),
        "interrupted in the samples + resumed must equal uninterrupted, bit for bit"
    );
}
