//! A run directory belongs to one run at a time (`OUT/.lock`), and its
//! JSON-lines logs stay parseable after a write was cut short (issue 15,
//! items 4 and 5), through the binary.
#![cfg(unix)]

mod common;
use common::cli::{Dir, bin, ok, run, small_text, snapshot, stderr, tensors};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

fn train_args<'a>(corpus: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--corpus",
        corpus,
        "--out",
        out,
        "--epochs",
        epochs,
        "--maxlen",
        "10",
        "--step",
        "1",
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--gen-length",
        "5",
        "--device",
        "cpu",
    ]
}

/// One `error:` line, a `hint:`, exit status 1, no panic.
fn refused(o: &std::process::Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "must be refused: {err}");
    assert_eq!(err.matches("error: ").count(), 1, "{err}");
    assert!(err.contains("hint: ") && !err.contains("panicked"), "{err}");
    err
}

/// Each line of `path` parsed as JSON (all must parse).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.ends_with('\n'), "{}: no final newline", path.display());
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: line {l:?} does not parse: {e}", path.display()))
        })
        .collect()
}

/// Item 4: a second `train` into a directory a live run holds is refused,
/// naming that run's pid, and changes nothing; the first run's
/// `metrics.jsonl` holds its own epochs only, and its lock is gone at the end.
#[test]
fn a_second_run_into_a_held_out_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, small_text().repeat(3)).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let out = dir.path().join("run");
    let out_s = out.to_string_lossy().into_owned();

    // A holds the directory; B starts after A's first epoch, as --resume
    // (a fresh run would be refused anyway: last.safetensors exists).
    let mut a = bin()
        .args(train_args(&corpus, &out_s, "4"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(a.stdout.take().expect("stdout"));
    let mut progress = String::new();
    while !progress.contains("epoch 1/4:") {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            panic!("train ended before its first epoch: {progress}");
        }
        progress.push_str(&line);
    }
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).map(|_| rest)
    });
    let mut b = train_args(&corpus, &out_s, "4");
    b.push("--resume");
    let o = run(&b);
    let err = refused(&o);
    assert!(
        err.contains(&format!("pid {}", a.id())) && err.contains(".lock"),
        "the error names the run holding the directory: {err}"
    );
    assert!(a.wait().expect("wait").success());
    drain.join().expect("reader").expect("stdout");
    let epochs: Vec<u64> = json_lines(&out.join("metrics.jsonl"))
        .iter()
        .map(|r| r["epoch"].as_u64().expect("epoch"))
        .collect();
    assert_eq!(epochs, [1, 2, 3, 4], "only the first run's epochs");
    assert!(
        !out.join(".lock").exists(),
        "the lock is released at the end"
    );

    // A lock held by a live process (this test) refuses even a fresh run
    // into an empty directory, and leaves it byte for byte as it was.
    let held = dir.path().join("held");
    std::fs::create_dir(&held).expect("mkdir");
    let lock = format!("pid {}\n", std::process::id());
    std::fs::write(held.join(".lock"), &lock).expect("write");
    let before = snapshot(&held);
    let o = run(&train_args(&corpus, &held.to_string_lossy(), "1"));
    let err = refused(&o);
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(before, snapshot(&held));
}

/// Item 4: a lock left by a run that was killed (its pid no longer exists)
/// is named and taken over; the lock is released when the run ends, also
/// when it ends in an error.
#[test]
fn a_stale_lock_is_named_and_taken_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, small_text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).expect("mkdir");
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let dead = gone.id();
    gone.wait().expect("wait");
    std::fs::write(out.join(".lock"), format!("pid {dead}\n")).expect("write");
    let o = ok(&train_args(&corpus, &out.to_string_lossy(), "1"));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("pid {dead}")) && err.contains("stale"),
        "the stale lock is named: {err}"
    );
    assert!(!out.join(".lock").exists(), "released at the end");

    // An error mid-run (a NaN loss at this rate) releases it too.
    let out_s = out.to_string_lossy().into_owned();
    let mut nan = train_args(&corpus, &out_s, "3");
    nan.extend(["--resume", "--lr", "1e30"]);
    let o = run(&nan);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out.join(".lock").exists(), "released after an error");
}

/// Item 5: a last line without its newline (a write cut short) is repaired
/// before the next append: a torn row is cut off (with a message), a
/// complete row only missing its newline is kept; every line parses after.
#[test]
fn a_torn_last_line_is_repaired_before_the_next_append() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, small_text()).expect("write");
    let corpus = corpus.to_string_lossy().into_owned();
    let out = dir.path().join("run");
    let out_s = out.to_string_lossy().into_owned();
    ok(&train_args(&corpus, &out_s, "1"));
    let metrics = out.join("metrics.jsonl");
    let batches = out.join("batches.jsonl");
    // metrics.jsonl: half of a row; batches.jsonl: its last newline lost.
    let mut m = std::fs::read(&metrics).expect("read");
    m.extend_from_slice(br#"{"epoch":2,"epochs":2,"loss":1.2"#);
    std::fs::write(&metrics, m).expect("write");
    let rows_before = json_lines(&batches).len();
    let mut b = std::fs::read(&batches).expect("read");
    assert_eq!(b.pop(), Some(b'\n'));
    std::fs::write(&batches, b).expect("write");

    let mut resume = train_args(&corpus, &out_s, "2");
    resume.push("--resume");
    let o = ok(&resume);
    let err = stderr(&o);
    assert!(
        err.contains("metrics.jsonl") && err.contains("torn"),
        "the repair is reported: {err}"
    );
    let epochs: Vec<u64> = json_lines(&metrics)
        .iter()
        .map(|r| r["epoch"].as_u64().expect("epoch"))
        .collect();
    assert_eq!(epochs, [1, 2]);
    let rows = json_lines(&batches);
    assert!(rows.len() > rows_before, "no batch row lost");
    assert_eq!(
        rows.iter().filter(|r| r["epoch"] == 1).count(),
        rows_before,
        "the row that only lacked its newline is kept"
    );
}

/// `--resume DIR` is `--out DIR --resume` (char-rnn's `-init_from` names
/// what to continue): the same run, the same weights. A checkpoint file,
/// or a second directory in `--out`, is refused, naming the fix, and
/// changes nothing.
#[test]
fn resume_takes_the_run_directory_as_its_value() {
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let (a, b) = (d.s("a"), d.s("b"));
    for out in [&a, &b] {
        ok(&train_args(&text, out, "1"));
    }
    ok(&["train", "--resume", &a, "--epochs", "2", "--quiet"]);
    ok(&["train", "--out", &b, "--resume", "--epochs", "2", "--quiet"]);
    let weights = |run: &str| tensors(&Path::new(run).join("last.safetensors"));
    assert!(
        weights(&a) == weights(&b),
        "--resume DIR and --out DIR --resume trained differently"
    );

    let before = snapshot(Path::new(&a));
    let file = format!("{a}/last.safetensors");
    let err = refused(&run(&["train", "--resume", &file, "--epochs", "3"]));
    assert!(
        err.contains("is a file") && err.contains("run's directory") && err.contains(&a),
        "{err}"
    );
    let err = refused(&run(&[
        "train", "--resume", &a, "--out", &b, "--epochs", "3",
    ]));
    assert!(err.contains("give the run's directory once"), "{err}");
    assert!(
        before == snapshot(Path::new(&a)),
        "a refused --resume changed the run"
    );
}
