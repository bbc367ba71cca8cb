//! Inputs and outputs a user can get wrong: an output that is one of the
//! command's inputs or a run's checkpoint (refused, inputs byte for byte
//! intact), and inputs that never end or are read twice (`/dev/zero`, a
//! FIFO, `<(cat t.txt)`), bounded and read once.

mod common;
use common::cli::{Dir, bin, ok, run, small_text, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A one-epoch run of two batches in `dir/run`, on `dir/t.txt`.
fn trained_run(d: &Dir) -> (String, String) {
    let text = d.write("t.txt", small_text().as_bytes());
    let out = d.s("run");
    ok(&[
        "train",
        "--corpus",
        &text,
        "--out",
        &out,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--maxlen",
        "10",
        "--step",
        "3",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--gen-length",
        "5",
        "--temperatures",
        "0.5",
        "--device",
        "cpu",
        "--quiet",
    ]);
    (text, out)
}

/// The bytes of every file under `dir` (names sorted), to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push((p.clone(), std::fs::read(&p).expect("read")));
            } else {
                out.push((
                    p.clone(),
                    std::fs::read_link(&p).map_or_else(
                        |_| Vec::new(),
                        |t| t.to_string_lossy().into_owned().into_bytes(),
                    ),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs `args`, asserts one `error:` line naming `needle` plus a `hint:`
/// containing `hint`, exit status 1, and that nothing under `dir` changed.
fn refused(dir: &Path, args: &[&str], needle: &str, hint: &str) {
    let before = snapshot(dir);
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should fail:\n{}\n{err}",
        stdout(&o)
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    let hints: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("hint: "))
        .collect();
    assert!(
        errors.len() == 1 && errors[0].contains(needle),
        "{args:?}: want one error line with {needle:?}:\n{err}"
    );
    assert!(
        hints.len() == 1 && hints[0].contains(hint),
        "{args:?}: want one hint line with {hint:?}:\n{err}"
    );
    assert!(
        snapshot(dir) == before,
        "{args:?} changed files under {}",
        dir.display()
    );
}

const SAME: &str = "is the same file as";
const SAME_HINT: &str = "write the output to another file";
const PROTECTED_HINT: &str = "add --force";

#[test]
fn prepare_onto_its_own_text_is_refused() {
    let d = Dir::new();
    let text = d.write("lf.txt", small_text().as_bytes());
    refused(
        d.0.path(),
        &["prepare", &text, "-o", &text],
        SAME,
        SAME_HINT,
    );
    refused(
        d.0.path(),
        &["prepare", &text, "-o", &text, "--force"],
        SAME,
        SAME_HINT,
    );
}

#[cfg(unix)]
#[test]
fn prepare_onto_a_symlink_to_its_text_is_refused() {
    let d = Dir::new();
    let text = d.write("lf.txt", small_text().as_bytes());
    std::os::unix::fs::symlink(&text, d.path("link.ohc")).expect("symlink");
    refused(
        d.0.path(),
        &["prepare", &text, "-o", &d.s("link.ohc")],
        SAME,
        SAME_HINT,
    );
}

#[test]
fn prepare_onto_a_hard_link_of_its_text_is_refused() {
    let d = Dir::new();
    let text = d.write("lf.txt", small_text().as_bytes());
    std::fs::hard_link(&text, d.path("hard.ohc")).expect("hard link");
    refused(
        d.0.path(),
        &["prepare", &text, "-o", &d.s("hard.ohc")],
        SAME,
        SAME_HINT,
    );
}

#[test]
fn prepare_onto_a_training_checkpoint_needs_force() {
    let d = Dir::new();
    let (text, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    refused(
        d.0.path(),
        &["prepare", &text, "-o", &last],
        "a training checkpoint (epoch",
        PROTECTED_HINT,
    );
    // A new file in the run directory loses nothing.
    ok(&["prepare", &text, "-o", &format!("{out}/t.ohc")]);
    ok(&["prepare", &text, "-o", &last, "--force"]);
}

#[test]
fn export_onto_its_own_checkpoint_is_refused_even_with_force() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    for format in ["keras", "pytorch"] {
        let args = [
            "export",
            "--checkpoint",
            &last,
            "--format",
            format,
            "-o",
            &last,
        ];
        refused(d.0.path(), &args, SAME, SAME_HINT);
        let mut forced = args.to_vec();
        forced.push("--force");
        refused(d.0.path(), &forced, SAME, SAME_HINT);
    }
}

#[test]
fn export_onto_a_run_checkpoint_needs_force() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let epoch = format!("{out}/epoch-001.safetensors");
    let metrics = format!("{out}/metrics.jsonl");
    refused(
        d.0.path(),
        &["export", "--checkpoint", &last, "-o", &epoch],
        "a training checkpoint (epoch 1, batch 0, step 2)",
        PROTECTED_HINT,
    );
    refused(
        d.0.path(),
        &[
            "export",
            "--checkpoint",
            &last,
            "--format",
            "keras",
            "-o",
            &metrics,
        ],
        "a file of the training run in",
        PROTECTED_HINT,
    );
    // Elsewhere, and a new file in the run directory, are fine; so is --force.
    ok(&["export", "--checkpoint", &last, "-o", &d.s("n.npz")]);
    ok(&["export", "--checkpoint", &last, "-o", &d.s("n.npz")]);
    ok(&[
        "export",
        "--checkpoint",
        &last,
        "-o",
        &format!("{out}/n.npz"),
    ]);
    ok(&["export", "--checkpoint", &last, "-o", &epoch, "--force"]);
}

#[test]
fn import_onto_a_training_checkpoint_needs_force() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let npz = d.s("n.npz");
    ok(&["export", "--checkpoint", &last, "-o", &npz]);
    refused(
        d.0.path(),
        &["import", &npz, "-o", &last],
        "a training checkpoint (epoch",
        PROTECTED_HINT,
    );
    // An imported checkpoint has no training to lose: importing again replaces it.
    let k = d.s("k/last.safetensors");
    ok(&["import", &npz, "-o", &k]);
    ok(&["import", &npz, "-o", &k]);
    ok(&["import", &npz, "-o", &last, "--force"]);
}

#[test]
fn import_onto_its_own_weight_file_or_vocab_source_is_refused() {
    let d = Dir::new();
    let (text, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let npz = d.s("n.npz");
    ok(&["export", "--checkpoint", &last, "-o", &npz]);
    refused(
        d.0.path(),
        &["import", &npz, "--format", "keras", "-o", &npz],
        SAME,
        SAME_HINT,
    );
    refused(
        d.0.path(),
        &["import", &npz, "--format", "keras", "-o", &npz, "--force"],
        SAME,
        SAME_HINT,
    );
    refused(
        d.0.path(),
        &[
            "import",
            &npz,
            "--vocab-from",
            &text,
            "--format",
            "pytorch",
            "-o",
            &text,
        ],
        SAME,
        SAME_HINT,
    );
}

#[test]
fn report_onto_a_run_input_is_refused() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    for f in ["metrics.jsonl", "batches.jsonl", "last.safetensors"] {
        let target = format!("{out}/{f}");
        refused(
            d.0.path(),
            &["report", "--out", &out, "-o", &target],
            SAME,
            SAME_HINT,
        );
        refused(
            d.0.path(),
            &["report", "--out", &out, "-o", &target, "--force"],
            SAME,
            SAME_HINT,
        );
    }
    // Its own page, written twice, is fine.
    ok(&["report", "--out", &out]);
    ok(&["report", "--out", &out]);
}

/// Runs the binary with `args` and kills it after `limit`: a regression
/// that reads forever or blocks fails here instead of hanging the suite.
fn run_with_timeout(args: &[&str], limit: Duration) -> (Output, Duration) {
    let d = Dir::new();
    let (out, err) = (d.path("stdout"), d.path("stderr"));
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{args:?} still running after {limit:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let output = Output {
        status,
        stdout: std::fs::read(&out).expect("stdout"),
        stderr: std::fs::read(&err).expect("stderr"),
    };
    (output, elapsed)
}

/// `args` fails within a second with one error line containing `needle` and a hint.
#[cfg(target_os = "linux")]
fn fails_fast(args: &[&str], needle: &str) {
    let (o, elapsed) = run_with_timeout(args, Duration::from_secs(10));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error: ")).count() == 1
            && err.contains(needle)
            && err.contains("hint: "),
        "{args:?}: want one error with {needle:?} and a hint:\n{err}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "{args:?} took {elapsed:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn dev_zero_as_a_text_corpus_fails_within_a_second() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let binary = "/dev/zero: looks like a binary file (NUL byte at offset 0)";
    fails_fast(&["prepare", "/dev/zero", "-o", &d.s("z.ohc")], binary);
    fails_fast(
        &[
            "train",
            "--corpus",
            "/dev/zero",
            "--out",
            &d.s("z"),
            "--device",
            "cpu",
        ],
        binary,
    );
    fails_fast(
        &[
            "eval",
            "--checkpoint",
            &last,
            "--corpus",
            "/dev/zero",
            "--device",
            "cpu",
        ],
        binary,
    );
    fails_fast(
        &[
            "generate",
            "--checkpoint",
            &last,
            "--corpus",
            "/dev/zero",
            "--device",
            "cpu",
        ],
        binary,
    );
    fails_fast(
        &["bench", "--corpus", "/dev/zero", "--device", "cpu"],
        binary,
    );
    fails_fast(
        &[
            "import",
            &d.write("w.npz", b""),
            "--vocab-from",
            "/dev/zero",
            "-o",
            &d.s("k.safetensors"),
        ],
        binary,
    );
}

#[cfg(target_os = "linux")]
#[test]
fn dev_zero_as_a_checkpoint_fails_within_a_second() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let bad = "/dev/zero: not a valid checkpoint";
    fails_fast(
        &["generate", "--checkpoint", "/dev/zero", "--device", "cpu"],
        bad,
    );
    fails_fast(
        &[
            "eval",
            "--checkpoint",
            "/dev/zero",
            "--corpus",
            &text,
            "--device",
            "cpu",
        ],
        bad,
    );
    fails_fast(
        &["export", "--checkpoint", "/dev/zero", "-o", &d.s("z.npz")],
        bad,
    );
}

#[cfg(target_os = "linux")]
#[test]
fn dev_zero_as_a_weight_file_fails_within_a_second() {
    let d = Dir::new();
    let o = d.s("k.safetensors");
    fails_fast(
        &["import", "/dev/zero", "--format", "keras", "-o", &o],
        "/dev/zero: not a usable keras weight file: not a zip archive",
    );
    fails_fast(
        &["import", "/dev/zero", "--format", "pytorch", "-o", &o],
        "/dev/zero: not a usable pytorch weight file",
    );
}

#[cfg(target_os = "linux")]
#[test]
fn dev_zero_as_a_config_file_fails_within_a_second() {
    fails_fast(
        &["train", "--config", "/dev/zero", "--device", "cpu"],
        "/dev/zero: more than 1048576 bytes, the most a --config file may hold",
    );
}

/// A text over the limit, as a sparse file: refused from its size, before
/// a byte is read (today's code would read and allocate 4 GiB first).
#[cfg(target_os = "linux")]
#[test]
fn a_text_corpus_over_the_limit_is_refused_before_reading() {
    let d = Dir::new();
    let big = d.path("big.txt");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(u64::from(u32::MAX) + 1).expect("sparse file");
    drop(f);
    fails_fast(
        &["prepare", &d.s("big.txt"), "-o", &d.s("big.ohc")],
        "more than 4294967295 bytes, the most a text corpus may hold",
    );
    assert!(!d.path("big.ohc").exists());
}

/// Writes `bytes` into the FIFO `path` from a thread (which ends when the
/// reader has taken them, or stays blocked if no reader ever opens it).
#[cfg(target_os = "linux")]
fn fifo_with(path: &Path, bytes: Vec<u8>) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
            let _ = f.write_all(&bytes);
        }
    });
}

#[cfg(target_os = "linux")]
#[test]
fn a_fifo_carrying_text_is_read_once() {
    let d = Dir::new();
    let (text, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let want = ok(&[
        "eval",
        "--checkpoint",
        &last,
        "--corpus",
        &text,
        "--device",
        "cpu",
        "--quiet",
    ]);
    let fifo = d.path("t.fifo");
    fifo_with(&fifo, small_text().into_bytes());
    let fifo = fifo.to_string_lossy().into_owned();
    let (o, _) = run_with_timeout(
        &[
            "eval",
            "--checkpoint",
            &last,
            "--corpus",
            &fifo,
            "--device",
            "cpu",
            "--quiet",
        ],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        stdout(&want),
        "the FIFO gave another loss than the file"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_fifo_carrying_a_checkpoint_is_read_once() {
    let d = Dir::new();
    let (_, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let base = [
        "generate",
        "--seed-text",
        "the",
        "--length",
        "20",
        "--seed",
        "3",
        "--device",
        "cpu",
    ];
    let mut args = base.to_vec();
    args.extend(["--checkpoint", last.as_str()]);
    let want = ok(&args);
    let fifo = d.path("c.fifo");
    fifo_with(&fifo, std::fs::read(&last).expect("checkpoint"));
    let fifo = fifo.to_string_lossy().into_owned();
    let mut args = base.to_vec();
    args.extend(["--checkpoint", fifo.as_str()]);
    let (o, _) = run_with_timeout(&args, Duration::from_secs(20));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&want));
}

#[cfg(unix)]
#[test]
fn process_substitution_loses_no_characters() {
    if std::process::Command::new("bash")
        .arg("-c")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: no bash");
        return;
    }
    let d = Dir::new();
    let (text, out) = trained_run(&d);
    let last = format!("{out}/last.safetensors");
    let want = ok(&[
        "eval",
        "--checkpoint",
        &last,
        "--corpus",
        &text,
        "--device",
        "cpu",
        "--quiet",
    ]);
    let exe = std::env::var_os("CHARLSTM_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_charlstm-cuda").into());
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            "\"$0\" eval --checkpoint \"$1\" --corpus <(cat \"$2\") --device cpu --quiet",
        ])
        .arg(&exe)
        .arg(&last)
        .arg(&text)
        .env("NO_COLOR", "1")
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        stdout(&want),
        "<(cat t.txt) gave another loss than t.txt"
    );
    // prepare reads it once too: the same file as from the text itself.
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            "\"$0\" prepare <(cat \"$1\") -o \"$2\" && \"$0\" prepare \"$1\" -o \"$3\"",
        ])
        .arg(&exe)
        .arg(&text)
        .arg(d.path("a.ohc"))
        .arg(d.path("b.ohc"))
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.path("a.ohc")).unwrap(),
        std::fs::read(d.path("b.ohc")).unwrap()
    );
}
