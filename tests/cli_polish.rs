//! The command line's conveniences: shell completions, examples in every
//! `--help`, `train --json`, `train --config FILE.toml` (flags win) and
//! `--quiet` on every command that runs a model.

mod common;
use common::cli::{ok, run, stdout};

use std::path::Path;
use std::process::Command;

/// A few thousand characters of pseudo-English.
fn write_text(path: &Path) {
    let words = [
        "the", "will", "to", "power", "is", "truth", "and", "of", "spirit",
    ];
    let mut s = String::new();
    let mut x: u32 = 99;
    for i in 0..600 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(words[(x >> 16) as usize % words.len()]);
        s.push(if i % 13 == 12 { '\n' } else { ' ' });
    }
    std::fs::write(path, s).expect("write text");
}

const SMALL: &[&str] = &[
    "--maxlen",
    "10",
    "--hidden",
    "8",
    "--batch-size",
    "32",
    "--steps-per-epoch",
    "4",
    "--gen-length",
    "10",
    "--device",
    "cpu",
];

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn completions_print_a_script_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = stdout(&ok(&["completions", shell]));
        assert!(out.len() > 200, "{shell}: {out}");
        assert!(
            out.contains("train") && out.contains("report"),
            "{shell}:\n{out}"
        );
        assert!(
            out.contains("batch-size"),
            "{shell}: no train flags:\n{out}"
        );
    }
    let o = run(&["completions", "tcsh"]);
    assert!(!o.status.success());
}

/// Completing `--device` offers the backends, not file names (issue 15,
/// item 9); a typo lists them.
#[test]
fn device_completion_offers_the_backends() {
    let bash = stdout(&ok(&["completions", "bash"]));
    assert!(
        bash.contains(r#"compgen -W "auto cpu cuda sim""#),
        "train/generate/eval --device:\n{bash}"
    );
    assert!(
        bash.contains(r#"compgen -W "cpu cuda sim""#),
        "bench --device:\n{bash}"
    );
    let fish = stdout(&ok(&["completions", "fish"]));
    assert!(
        fish.lines()
            .any(|l| l.contains("-l device") && l.contains("auto") && l.contains("sim")),
        "{fish}"
    );
    let o = run(&["generate", "--checkpoint", "x", "--device", "tpu"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--device") && err.contains("auto, cpu, cuda, sim"),
        "{err}"
    );
}

/// `inspect` shows what a checkpoint holds, as a table and as JSON: model,
/// vocabulary, hyper-parameters, progress and the run's settings (issue 15,
/// item 9); a file that is not a checkpoint is the usual clear error.
#[test]
fn inspect_shows_what_a_checkpoint_holds() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    write_text(&text);
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--corpus",
        s(&text),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--quiet",
    ];
    args.extend_from_slice(SMALL);
    ok(&args);
    let ckpt = out.join("last.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let table = stdout(&ok(&["inspect", s(&ckpt)]));
    for want in [
        "LSTM(8) + Dense(",
        "symbols: \"",
        "maxlen 10, step 3, lower-cased",
        "lr 0.01 rho 0.9 eps 1e-7, batch 32",
        "2 epochs done",
        "8 steps in all; --resume continues it",
        "4 batches per epoch",
        "lstm.recurrent_kernel [8, 32]",
    ] {
        assert!(table.contains(want), "no {want:?} in:\n{table}");
    }
    assert!(table.contains(s(&text)), "the corpus path:\n{table}");

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ok(&["inspect", s(&ckpt), "--json"]))).unwrap();
    let c = charlstm_cuda::Checkpoint::load(&ckpt).unwrap();
    let vocab: Vec<String> = c.vocab.iter().map(char::to_string).collect();
    assert_eq!(json["vocab"], serde_json::json!(vocab));
    assert_eq!(json["hyper"]["hidden"], 8);
    assert_eq!(json["hyper"]["lr"], serde_json::json!(0.01));
    assert_eq!(json["state"]["step"], 8);
    assert_eq!(json["resumable"], true);
    assert_eq!(json["run"]["steps_per_epoch"], 4);
    assert_eq!(json["parameters"], c.params.len());
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "inspect only reads");

    let o = run(&["inspect", s(&text)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a valid checkpoint") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn every_subcommand_help_has_examples() {
    for cmd in [
        "prepare",
        "train",
        "generate",
        "eval",
        "bench",
        "selftest",
        "report",
        "completions",
    ] {
        let out = stdout(&ok(&[cmd, "--help"]));
        assert!(
            out.contains("Examples:") && out.contains(&format!("charlstm-cuda {cmd} ")),
            "{cmd} --help has no example:\n{out}"
        );
    }
}

/// `--json`: stdout is exactly the metrics.jsonl lines, nothing else.
#[test]
fn train_json_prints_the_metrics_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("t.txt");
    write_text(&text);
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--corpus",
        s(&text),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--json",
    ];
    args.extend_from_slice(SMALL);
    let o = ok(&args);
    let printed = stdout(&o);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(v["epoch"], i + 1);
        assert!(v["loss"].as_f64().is_some_and(|l| l > 0.0), "{line}");
        assert!(
            v["samples_per_s"].is_number() && v["step"].is_number(),
            "{line}"
        );
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(printed, metrics, "--json and metrics.jsonl differ");
}

#[test]
fn config_file_values_are_used_and_flags_override_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_text(&dir.path().join("t.txt"));
    let config = dir.path().join("run.toml");
    // Relative paths are relative to the file; dashed keys work too.
    std::fs::write(
        &config,
        "corpus = \"t.txt\"\nout = \"from-file\"\nepochs = 3\nmaxlen = 12\nhidden = 8\n\
         batch_size = 32\nsteps-per-epoch = 2\ngen_length = 0\nseed = 7\nlr = 0.02\n\
         temperatures = [0.5]\ndevice = \"cpu\"\nquiet = true\nkeep_checkpoints = 1\n",
    )
    .expect("write config");
    let cwd = tempfile::tempdir().expect("another cwd");
    let o = Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"))
        .current_dir(cwd.path())
        .args([
            "train",
            "--config",
            s(&config),
            "--epochs",
            "2",
            "--seed",
            "9",
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("from-file");
    let ckpt = charlstm_cuda::Checkpoint::load(&out.join("last.safetensors")).expect("ckpt");
    let h = &ckpt.hyper;
    assert_eq!(
        (h.maxlen, h.hidden, h.batch, h.lr),
        (12, 8, 32, 0.02),
        "from the file"
    );
    assert_eq!((h.epochs, h.seed), (2, 9), "the flags win");
    assert_eq!(ckpt.state.epochs_done, 2);
    assert!(
        !out.join("epoch-001.safetensors").exists(),
        "keep_checkpoints = 1"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert!(
        metrics.lines().all(|l| l.contains("\"batches\":2")),
        "{metrics}"
    );

    // `resume = true` is the bare --resume: the run in the file's `out`.
    let again = dir.path().join("again.toml");
    std::fs::write(
        &again,
        "out = \"from-file\"\nresume = true\nepochs = 3\nquiet = true\n",
    )
    .expect("write config");
    let o = Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"))
        .current_dir(cwd.path())
        .args(["train", "--config", s(&again)])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ckpt = charlstm_cuda::Checkpoint::load(&out.join("last.safetensors")).expect("ckpt");
    assert_eq!(ckpt.state.epochs_done, 3, "resumed to the file's epochs");
}

#[test]
fn config_file_unknown_key_or_bad_value_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (body, needles) in [
        (
            "epochs = 2\nbatch_sise = 64\n",
            &["batch_sise", "line 2", "--config"][..],
        ),
        ("epochs = \"two\"\n", &["line 1", "--config"][..]),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, body).expect("write config");
        let o = run(&["train", "--config", s(&config), "--device", "cpu"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "lacks {needle:?}:\n{err}");
        }
        assert!(err.contains("hint: "), "{err}");
    }
    let o = run(&["train", "--config", s(&dir.path().join("missing.toml"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
}

/// `--quiet` is accepted by train, generate and eval alike and keeps
/// their results on stdout.
#[test]
fn quiet_is_accepted_by_every_model_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("t.txt");
    write_text(&text);
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--corpus",
        s(&text),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "-q",
    ];
    args.extend_from_slice(SMALL);
    ok(&args);
    let ckpt = out.join("last.safetensors");
    let g = ok(&[
        "generate",
        "--checkpoint",
        s(&ckpt),
        "--length",
        "5",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(stdout(&g).contains("--- Generating with seed"));
    let e = ok(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--corpus",
        s(&text),
        "--device",
        "cpu",
        "-q",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&e).trim()).expect("JSON");
    assert!(v["loss"].as_f64().is_some_and(|l| l > 0.0));
}

/// A negative value reaches the flag's own check (`invalid value for --lr`)
/// instead of clap's "unexpected argument '-1'" (issue 15, item 8).
#[test]
fn a_negative_value_is_checked_as_a_value() {
    for args in [["train", "--lr", "-1"], ["train", "--clip-norm", "-1"]] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(
            err.contains(&format!("invalid value for {}", args[1])),
            "{args:?}: {err}"
        );
    }
}

/// What `train` prints is read by people: "1 epoch", not "1 epochs"; it
/// ends by saying where its files are; the chart's epoch labels are round
/// numbers, one per epoch at most (issue 15, item 9).
#[test]
fn train_output_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    write_text(&text);
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--corpus",
        s(&text),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(SMALL);
    let err = String::from_utf8_lossy(&ok(&args).stderr).into_owned();
    assert!(
        err.contains("; 1 epoch\n") || err.contains("; 1 epoch;"),
        "{err}"
    );
    assert!(!err.contains(" 1 epochs"), "{err}");
    assert!(
        err.contains(&format!("run files in {}", out.display())),
        "{err}"
    );
    let mut args = vec![
        "train",
        "--corpus",
        s(&text),
        "--out",
        s(&out),
        "--epochs",
        "3",
        "--resume",
        "--quiet",
    ];
    args.extend_from_slice(SMALL);
    let err = String::from_utf8_lossy(&ok(&args).stderr).into_owned();
    assert!(err.contains(" 3 epochs"), "{err}");
    assert!(!err.contains("epoches"), "{err}");
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    let labels: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')
                .map(|(_, rest)| rest.split('<').next().unwrap_or("").trim())
        })
        .filter(|l| l.parse::<f64>().is_ok())
        .collect();
    assert!(
        labels.iter().all(|l| l.len() <= 4),
        "labels with float noise: {labels:?}"
    );
}
