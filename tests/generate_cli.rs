//! `generate` (and `eval`) as a user pipes and interrupts them (issue 15,
//! items 6, 7 and 9): the text comes as it is drawn, Ctrl-C ends it at
//! once, lengths are bounded, `--raw` prints the text alone, and weights
//! holding NaN are refused alike by every command and backend.

mod common;
use common::cli::{Dir, bin, ok, run, stderr, stdout};

use std::io::Read;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use charlstm_cuda::corpus::Vocab;
use charlstm_cuda::model::{Checkpoint, Hyper, Params, Tensor, TrainState};
use charlstm_cuda::{Error, Model};

/// The characters of every model here: no newline, so `--raw` output
/// splits into samples at its newlines.
const CHARS: &str = "ab c";

/// A model whose predictions are uniform (all weights zero), saved at
/// `name`; `hidden` and `maxlen` set how long a character takes.
fn uniform_model(dir: &Dir, name: &str, hidden: usize, maxlen: usize) -> String {
    let vocab = Vocab::from_text(CHARS);
    let params = Params::zeros(vocab.len(), hidden);
    let model = Model::new(params, vocab, maxlen, true).expect("model");
    model.save(&dir.path(name)).expect("save");
    dir.s(name)
}

/// A checkpoint whose `lstm.recurrent_kernel[1, 2]` is NaN, written as
/// `train` writes checkpoints (Model::new refuses such weights).
fn nan_checkpoint(dir: &Dir, name: &str) -> String {
    let vocab = Vocab::from_text(CHARS);
    let hidden = 8;
    let mut params = Params::zeros(vocab.len(), hidden);
    params[Tensor::RecurrentKernel][4 * hidden + 2] = f32::NAN;
    let ckpt = Checkpoint {
        vocab: vocab.chars().to_vec(),
        hyper: Hyper {
            maxlen: 5,
            hidden,
            ..Hyper::default()
        },
        rmsprop: Params::zeros(vocab.len(), hidden),
        params,
        state: TrainState::default(),
        run: None,
    };
    ckpt.save(&dir.path(name)).expect("save");
    dir.s(name)
}

/// Runs the binary with `args`, killing it after `limit`: a command that
/// should fail at once must not be waited on for the hour it would run
/// where it does not (the binary before this change). `None`: killed.
fn run_within(args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The one `error:` line of a refused command, after checking it exited 1
/// with exactly one error and a hint.
fn the_error(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {err}{}", stdout(o));
    assert_eq!(err.matches("error: ").count(), 1, "{what}: {err}");
    assert!(err.contains("hint: "), "{what}: {err}");
    err.lines()
        .find(|l| l.starts_with("error: "))
        .expect("error line")
        .to_string()
}

/// Item 6: the first sample's characters reach stdout as they are drawn
/// (the binary before printed nothing until every sample was done: 21 s at
/// --length 20000), and Ctrl-C ends generation at once with exit 130.
#[cfg(unix)]
#[test]
fn generate_streams_its_text_and_stops_at_ctrl_c() {
    let dir = Dir::new();
    // H = 128, maxlen = 60: about a millisecond a character in a release
    // build, more in a debug one, so a million take far longer than this
    // test waits.
    let ckpt = uniform_model(&dir, "m.safetensors", 128, 60);
    let mut child: Child = bin()
        .args(["generate", "--checkpoint", &ckpt, "--device", "cpu"])
        .args(["--seed-text", "ab", "--length", "1000000"])
        .args(["--temperature", "1.0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // The notebook form: header, label, seed, then the characters drawn.
    let head = "--- Generating with seed: \"ab\"\n------ temperature: 1.0\nab";
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < head.len() + 3 && started.elapsed() < Duration::from_secs(30) {
        if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(bytes);
        }
    }
    let waited = started.elapsed();
    let running = child.try_wait().expect("try_wait").is_none();
    let seen = String::from_utf8_lossy(&seen).into_owned();
    if seen.len() < head.len() + 3 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("after {waited:?}, stdout holds only {seen:?}");
    }
    println!("{} bytes after {waited:?}", seen.len());

    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } == 0;
    let stopped = Instant::now();
    let mut status = None;
    while stopped.elapsed() < Duration::from_secs(20) {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = stopped.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let exit = child.wait().expect("wait");
    let status = status.map(|_| exit);
    assert!(sent, "SIGINT sent");
    let Some(status) = status else {
        panic!("generate still running {took:?} after SIGINT");
    };
    assert!(running, "generate ended before it was interrupted");
    let drawn = seen
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert!(
        drawn.chars().all(|c| CHARS.contains(c)),
        "only generated characters after the seed: {drawn:?}"
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    println!("stopped {took:?} after SIGINT: {err}");
    assert_eq!(status.code(), Some(130), "exit 130 like train: {err}");
    assert!(err.contains("generation stopped"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Generous for a loaded machine: a character takes milliseconds, and
    // the binary before never stopped early at all.
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
}

/// Item 6: a length above the documented maximum is refused before any
/// file is read, naming the flag, the value and the maximum (the binary
/// before accepted 2^64 - 1 and ran until it ran out of memory).
#[test]
fn lengths_above_the_maximum_are_refused_at_once() {
    let dir = Dir::new();
    let ckpt = uniform_model(&dir, "m.safetensors", 8, 5);
    let max = charlstm_cuda::sample::MAX_LENGTH;
    assert_eq!(max, 1_000_000, "docs/cli.md and the flags' help say so");
    let too_many = (max + 1).to_string();
    for length in [too_many.as_str(), "18446744073709551615"] {
        let args = [
            "generate",
            "--checkpoint",
            &ckpt,
            "--seed-text",
            "ab",
            "--device",
            "cpu",
            "--length",
            length,
        ];
        let o = run_within(&args, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("--length {length} still running after 20 s"));
        let line = the_error(&o, length);
        assert!(
            line.contains("--length") && line.contains(length) && line.contains("1000000"),
            "names the flag, the value and the maximum: {line}"
        );
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }

    // train: refused before the run directory exists.
    let text = dir.write("t.txt", "ab c ab ca bc".repeat(40).as_bytes());
    let out = dir.s("run");
    let args = [
        "train",
        "--corpus",
        &text,
        "--out",
        &out,
        "--epochs",
        "1",
        "--maxlen",
        "5",
        "--hidden",
        "8",
        "--device",
        "cpu",
        "--quiet",
        "--gen-length",
        &too_many,
    ];
    let o = run_within(&args, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("train --gen-length {too_many} still running after 60 s"));
    let line = the_error(&o, "train --gen-length");
    assert!(
        line.contains("--gen-length") && line.contains(&too_many) && line.contains("1000000"),
        "{line}"
    );
    assert!(!dir.path("run").exists(), "nothing written");

    // The maximum itself is allowed (checked without generating it all:
    // a bad seed character fails after the length was accepted).
    let o = run(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--seed-text",
        "xyz",
        "--device",
        "cpu",
        "--length",
        "1000000",
    ]);
    let line = the_error(&o, "the maximum");
    assert!(line.contains("vocabulary"), "{line}");
}

/// Item 9: `--raw` prints the generated characters alone, each sample
/// ended by a newline, the same characters the notebook form shows after
/// the seed; `--json` gives them as objects; the two together are refused.
#[test]
fn raw_prints_only_the_generated_text() {
    let dir = Dir::new();
    let ckpt = uniform_model(&dir, "m.safetensors", 8, 5);
    let base = [
        "generate",
        "--checkpoint",
        &ckpt,
        "--seed-text",
        "ab",
        "--device",
        "cpu",
        "--length",
        "50",
        "--temperature",
        "0.5,1.0",
    ];
    let raw = stdout(&ok(&[&base[..], &["--raw"]].concat()));
    let lines: Vec<&str> = raw.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2, "one line per sample: {raw:?}");
    assert!(raw.ends_with('\n'));
    for l in &lines {
        assert_eq!(
            l.chars().count(),
            50,
            "only the 50 generated characters: {l:?}"
        );
        assert!(l.chars().all(|c| CHARS.contains(c)), "{l:?}");
    }
    let alias = stdout(&ok(&[&base[..], &["--text-only"]].concat()));
    assert_eq!(alias, raw, "--text-only is --raw");

    // The same draws as the notebook form, which labels them and shows the seed.
    let notebook = stdout(&ok(&base));
    assert!(notebook.contains("------ temperature: 0.5"), "{notebook}");
    let samples: Vec<&str> = notebook.lines().filter(|l| !l.starts_with("---")).collect();
    assert_eq!(
        samples,
        vec![format!("ab{}", lines[0]), format!("ab{}", lines[1])]
    );

    let json = stdout(&ok(&[&base[..], &["--json"]].concat()));
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[1]["temperature"], 1.0);
    assert_eq!(rows[1]["seed"], "ab");
    assert_eq!(rows[1]["text"], lines[1]);

    let o = run(&[&base[..], &["--raw", "--json"]].concat());
    let line = the_error(&o, "--raw --json");
    assert!(line.contains("--raw") && line.contains("--json"), "{line}");
    assert!(stdout(&o).is_empty());
}

/// Item 7: NaN weights get one error, naming the file and the weight, from
/// every command and backend and from the library (the binary before:
/// `eval` printed {"loss":null} and exited 0, `generate --device sim`
/// printed blank lines, the CPU's generate a bad-prediction error).
#[test]
fn non_finite_weights_are_refused_alike_everywhere() {
    let dir = Dir::new();
    let ckpt = nan_checkpoint(&dir, "nan.safetensors");
    let text = dir.write("t.txt", "ab c ab ca bc".repeat(40).as_bytes());
    let before = std::fs::read(&ckpt).expect("read");
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "eval",
            "--checkpoint",
            &ckpt,
            "--corpus",
            &text,
            "--device",
            "cpu",
        ],
        vec![
            "eval",
            "--checkpoint",
            &ckpt,
            "--corpus",
            &text,
            "--device",
            "sim",
        ],
        vec![
            "generate",
            "--checkpoint",
            &ckpt,
            "--seed-text",
            "ab",
            "--device",
            "cpu",
        ],
        vec![
            "generate",
            "--checkpoint",
            &ckpt,
            "--seed-text",
            "ab",
            "--device",
            "sim",
        ],
        vec![
            "generate",
            "--checkpoint",
            &ckpt,
            "--seed-text",
            "ab",
            "--device",
            "cuda",
        ],
        vec!["export", "--checkpoint", &ckpt, "-o", "/nonexistent/x.npz"],
    ];
    let mut lines = Vec::new();
    for args in &commands {
        let o = run_within(args, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{args:?} still running after 60 s"));
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        lines.push((args.clone(), the_error(&o, &args.join(" "))));
    }
    let first = &lines[0].1;
    assert!(
        first.contains("nan.safetensors")
            && first.contains("lstm.recurrent_kernel[1, 2]")
            && first.contains("NaN"),
        "names the file and the first non-finite weight: {first}"
    );
    for (args, line) in &lines {
        assert_eq!(line, first, "{args:?}: the same error on every backend");
    }
    assert_eq!(
        std::fs::read(&ckpt).expect("read"),
        before,
        "the file is kept"
    );

    // The library says the same, from the file or from weights in memory.
    let e = Model::load(std::path::Path::new(&ckpt)).expect_err("NaN weights");
    assert_eq!(format!("error: {e}"), *first);
    let mut params = Params::zeros(4, 8);
    params[Tensor::DenseBias][3] = f32::INFINITY;
    let e = Model::new(params, Vocab::from_text(CHARS), 5, true).expect_err("inf weight");
    assert!(
        matches!(&e, Error::NonFiniteWeights { tensor, value, .. } if tensor == "dense.bias" && value.is_infinite()),
        "{e}"
    );
}

/// Item 7: finite weights whose loss overflows (h x f32::MAX) make `eval`
/// fail, naming the batch, never print `{"loss":null}` with exit 0.
#[test]
fn eval_never_prints_a_non_finite_loss() {
    let dir = Dir::new();
    let vocab = Vocab::from_text(CHARS);
    let hidden = 8;
    let mut params = Params::zeros(vocab.len(), hidden);
    // The c gate's bias makes every h positive; the head then sums
    // h x f32::MAX over the units: +inf logits, inf - inf in the softmax.
    params[Tensor::Bias][2 * hidden..3 * hidden].fill(1.0);
    params[Tensor::DenseKernel].fill(f32::MAX);
    let model = Model::new(params, vocab, 5, true).expect("finite weights are a model");
    model.save(&dir.path("big.safetensors")).expect("save");
    let text = dir.write("t.txt", "ab c ab ca bc".repeat(40).as_bytes());
    let o = run(&[
        "eval",
        "--checkpoint",
        &dir.s("big.safetensors"),
        "--corpus",
        &text,
        "--device",
        "cpu",
    ]);
    assert!(!stdout(&o).contains("null"), "{}", stdout(&o));
    let line = the_error(&o, "eval");
    assert!(line.contains("loss") && line.contains("batch 1"), "{line}");
}

/// The library under the CLI's streaming and stopping: a generator reports
/// every character (the whole request once on a device), and one stopped
/// early returns the prefix the full run would have drawn.
#[test]
fn a_stopped_generation_returns_the_prefix_of_the_full_one() {
    use charlstm_cuda::Backend;
    use charlstm_cuda::device::generate_with;
    use charlstm_cuda::sample::{GenerateRequest, Strategy};
    use std::ops::ControlFlow;

    let vocab = Vocab::from_text(CHARS);
    let mut params = Params::zeros(vocab.len(), 8);
    // Not uniform, so the draws depend on the window.
    for (k, w) in params.flat_mut().iter_mut().enumerate() {
        *w = ((k * 37 % 17) as f32 - 8.0) * 0.05;
    }
    let strategies = [Strategy::Temperature(0.7), Strategy::Temperature(1.3)];
    let req = GenerateRequest {
        seed_indices: &[1, 2, 0],
        maxlen: 5,
        length: 40,
        strategies: &strategies,
        seed: 9,
        stream: 3,
        mode: charlstm_cuda::sample::GenMode::Window,
    };
    let full = charlstm_cuda::device::generate(Backend::Cpu, &params, &req).expect("full");
    let mut reports = Vec::new();
    let cut = generate_with(Backend::Cpu, &params, &req, &mut |seqs| {
        reports.push(seqs.iter().map(Vec::len).collect::<Vec<_>>());
        if seqs[0].len() == 17 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect("cut");
    assert_eq!(reports, (1..=17).map(|n| vec![n, n]).collect::<Vec<_>>());
    for (c, f) in cut.iter().zip(&full) {
        assert_eq!(c[..], f[..17], "the same draws, stopped after 17");
    }

    // A device reports once, after its launch, with every character.
    let mut reports = 0;
    let sim = generate_with(Backend::Sim, &params, &req, &mut |seqs| {
        reports += 1;
        assert!(seqs.iter().all(|s| s.len() == 40));
        ControlFlow::Continue(())
    })
    .expect("sim");
    assert_eq!(reports, 1);
    assert_eq!(sim.len(), 2);
}

/// A run directory where a checkpoint is asked for (`generate
/// --checkpoint runs/x`, as `report --out` and `train --resume` take the
/// directory) stands for its last.safetensors, said on stderr with
/// best.safetensors named where there is one; a directory that holds no
/// run is refused with what to pass instead.
#[test]
fn a_run_directory_stands_for_its_last_checkpoint() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("run")).expect("mkdir");
    let file = uniform_model(&dir, "run/last.safetensors", 8, 5);
    let run_dir = dir.s("run");
    let sample = |ckpt: &str| {
        ok(&[
            "generate",
            "--checkpoint",
            ckpt,
            "--seed-text",
            "ab",
            "--device",
            "cpu",
            "--length",
            "20",
            "--temperature",
            "0.5",
            "--raw",
        ])
    };
    let (from_dir, from_file) = (sample(&run_dir), sample(&file));
    assert_eq!(stdout(&from_dir), stdout(&from_file), "the same model");
    let said = stderr(&from_dir);
    assert!(said.contains(&file) && !said.contains("best"), "{said}");
    assert!(
        !stderr(&from_file).contains("using"),
        "{}",
        stderr(&from_file)
    );

    uniform_model(&dir, "run/best.safetensors", 8, 5);
    let said = stderr(&sample(&run_dir));
    assert!(said.contains(&dir.s("run/best.safetensors")), "{said}");

    // inspect, eval and export read the same file.
    let shown = stdout(&ok(&["inspect", &run_dir]));
    assert!(shown.contains(&file), "{shown}");
    let text = dir.write("t.txt", "ab c ab ca bc".repeat(40).as_bytes());
    let eval = |ckpt: &str| {
        stdout(&ok(&[
            "eval",
            "--checkpoint",
            ckpt,
            "--corpus",
            &text,
            "--device",
            "cpu",
        ]))
    };
    assert_eq!(eval(&run_dir), eval(&file));
    let out = dir.s("w.npz");
    ok(&["export", "--checkpoint", &run_dir, "-o", &out]);
    assert!(dir.path("w.npz").is_file());

    std::fs::create_dir(dir.path("empty")).expect("mkdir");
    let o = run(&["generate", "--checkpoint", &dir.s("empty"), "--length", "5"]);
    let line = the_error(&o, "a directory with no run");
    assert!(line.contains("no last.safetensors"), "{line}");
    assert!(
        stderr(&o).contains("hint: pass a checkpoint file"),
        "{}",
        stderr(&o)
    );
}
