//! What the command line says when a value or a file is wrong (issue 15,
//! item 8): each refusal names the flag as the command spells it and a
//! hint with the fix itself (a range and an example, the command to run),
//! never "see help"; an input that would be ignored or dropped is refused
//! by name rather than accepted in silence.

mod common;
use common::cli::{Dir, ok, run, small_text, snapshot, stderr};

use std::io::{Read, Write};
use std::process::Output;

/// The `error:` and `hint:` lines of a refused command, which must have
/// failed with exactly one of each.
fn refused(o: &Output) -> (String, String) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a refusal:\n{err}");
    let line = |prefix: &str| {
        let lines: Vec<&str> = err
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix(prefix))
            .collect();
        assert_eq!(lines.len(), 1, "one {prefix:?} line expected:\n{err}");
        lines[0].to_string()
    };
    (line("error:"), line("hint:"))
}

const SMALL: &[&str] = &[
    "--maxlen",
    "10",
    "--hidden",
    "8",
    "--batch-size",
    "32",
    "--steps-per-epoch",
    "2",
    "--gen-length",
    "0",
    "--device",
    "cpu",
    "-q",
];

/// A one-epoch run in `d/run` on `d/t.txt`; returns (text, out).
fn trained(d: &Dir) -> (String, String) {
    let text = d.write("t.txt", small_text().as_bytes());
    let out = d.s("run");
    let mut args = vec!["train", "--corpus", &text, "--out", &out, "--epochs", "1"];
    args.extend(SMALL);
    ok(&args);
    (text, out)
}

#[test]
fn a_range_error_hints_an_example_value_not_help() {
    for (flag, value, example) in [
        ("--lr", "-1", "--lr 0.01"),
        ("--hidden", "0", "--hidden 128"),
        ("--epochs", "0", "--epochs 60"),
        ("--steps-per-epoch", "0", "--steps-per-epoch 100"),
    ] {
        let d = Dir::new();
        let text = d.write("t.txt", small_text().as_bytes());
        let out = d.s("run");
        let o = run(&["train", "--corpus", &text, "--out", &out, flag, value]);
        let (error, hint) = refused(&o);
        assert!(
            error.contains(&format!("invalid value for {flag}: {value}")),
            "{error}"
        );
        assert!(hint.contains(example), "{flag}: {hint}");
        assert!(!hint.contains("help"), "{flag}: {hint}");
    }
}

#[test]
fn eval_and_generate_hints_name_no_flag_they_lack() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let ckpt = format!("{out}/last.safetensors");
    let short = d.write("short.txt", b"the will");
    for command in ["eval", "generate"] {
        let o = run(&[
            command,
            "--checkpoint",
            &ckpt,
            "--corpus",
            &short,
            "--device",
            "cpu",
        ]);
        let (error, hint) = refused(&o);
        assert!(error.contains("fewer than one window"), "{error}");
        assert!(!hint.contains("--maxlen"), "{command}: {hint}");
        assert!(
            hint.contains("longer text") && hint.contains("10 characters"),
            "{hint}"
        );
    }
}

#[test]
fn temperature_errors_name_the_flag_that_was_typed() {
    let d = Dir::new();
    let (text, out) = trained(&d);
    let new = d.s("new");
    let o = run(&[
        "train",
        "--corpus",
        &text,
        "--out",
        &new,
        "--temperatures",
        "0.5,-1",
    ]);
    let (error, hint) = refused(&o);
    assert!(
        error.contains("invalid value for --temperatures: -1"),
        "{error}"
    );
    assert!(hint.contains("--temperatures 0.2,0.5,1.0,1.2"), "{hint}");
    assert!(!d.path("new").exists());

    let ckpt = format!("{out}/last.safetensors");
    let o = run(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--temperature",
        "-1",
        "--device",
        "cpu",
    ]);
    let (error, hint) = refused(&o);
    assert!(
        error.contains("invalid value for --temperature: -1"),
        "{error}"
    );
    assert!(hint.contains("--temperature 0.5"), "{hint}");
}

#[test]
fn an_out_that_is_a_file_is_named_as_one() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let file = d.write("afile", b"keep me");
    for out in [file.clone(), format!("{file}/run")] {
        let mut args = vec!["train", "--corpus", &text, "--out", &out, "--epochs", "1"];
        args.extend(SMALL);
        let (error, hint) = refused(&run(&args));
        assert!(
            error.contains("afile is a file, not a directory"),
            "{error}"
        );
        assert!(!error.contains("os error"), "{error}");
        assert!(
            hint.contains("pass a directory") && hint.contains("--out"),
            "{hint}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }
}

#[test]
fn a_duplicate_config_key_is_reported_on_its_own_line() {
    let d = Dir::new();
    let config = d.write(
        "run.toml",
        b"epochs = 1\nbatch_size = 8\n\nmaxlen = 10\nbatch-size = 9\n",
    );
    let (error, hint) = refused(&run(&["train", "--config", &config]));
    assert!(
        error.contains("line 5 (first set on line 2)") && error.contains("batch_size"),
        "{error}"
    );
    assert!(hint.contains("batch_size = 64"), "{hint}");
}

/// One `.npy` (format 1.0) of f32 zeros.
fn npy(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + 4 * shape_len(&dims), 0);
    out
}

fn shape_len(dims: &[String]) -> usize {
    dims.iter().map(|d| d.parse::<usize>().unwrap()).product()
}

/// `from` (an exported .npz) with `replace`d arrays and `extra` ones added.
fn edited_npz(from: &str, to: &str, replace: &[(&str, &[usize])], extra: &[&str]) {
    let mut zin = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut zout = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut entry = zin.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some((_, shape)) = replace.iter().find(|(n, _)| format!("{n}.npy") == name) {
            bytes = npy(shape);
        }
        zout.start_file(name, options).unwrap();
        zout.write_all(&bytes).unwrap();
    }
    for name in extra {
        zout.start_file(format!("{name}.npy"), options).unwrap();
        zout.write_all(&npy(&[3])).unwrap();
    }
    zout.finish().unwrap();
}

#[test]
fn a_bad_npz_blames_the_array_that_is_wrong() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let npz = d.s("k.npz");
    ok(&[
        "export",
        "--checkpoint",
        &format!("{out}/last.safetensors"),
        "-o",
        &npz,
    ]);
    // H = 8: lstm.kernel is [V, 32]; one wrong column count must blame it,
    // not lstm.recurrent_kernel, which agrees with the other three.
    let v = small_text()
        .to_lowercase()
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let bad = d.s("bad.npz");
    edited_npz(&npz, &bad, &[("lstm.kernel", &[v, 36])], &[]);
    let (error, _) = refused(&run(&["import", &bad, "-o", &d.s("m.safetensors")]));
    assert!(
        error.contains(&format!(
            "`lstm.kernel` has shape [{v}, 36], expected [{v}, 32]"
        )),
        "{error}"
    );
    assert!(!error.contains("recurrent_kernel"), "{error}");
    assert!(!d.path("m.safetensors").exists());
}

#[test]
fn extra_npz_arrays_are_refused_by_name() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let npz = d.s("k.npz");
    ok(&[
        "export",
        "--checkpoint",
        &format!("{out}/last.safetensors"),
        "-o",
        &npz,
    ]);
    let extra = d.s("extra.npz");
    // `lstm_3.kernel` with no layers 1 and 2 below it belongs to no stack.
    edited_npz(&npz, &extra, &[], &["optimizer_state", "lstm_3.kernel"]);
    let (error, _) = refused(&run(&["import", &extra, "-o", &d.s("m.safetensors")]));
    assert!(
        error.contains("does not: optimizer_state, lstm_3.kernel"),
        "{error}"
    );
    // A second layer's kernel without the rest of the layer is named.
    let half = d.s("half.npz");
    edited_npz(&npz, &half, &[], &["lstm_1.kernel"]);
    let (error, _) = refused(&run(&["import", &half, "-o", &d.s("m.safetensors")]));
    assert!(
        error.contains("`lstm_1.kernel` is there but `lstm_1.recurrent_kernel` is missing"),
        "{error}"
    );
    assert!(!d.path("m.safetensors").exists());
}

#[test]
fn an_npz_given_to_generate_is_named_and_import_suggested() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let npz = d.s("k.npz");
    ok(&[
        "export",
        "--checkpoint",
        &format!("{out}/last.safetensors"),
        "-o",
        &npz,
    ]);
    let o = run(&["generate", "--checkpoint", &npz, "--device", "cpu"]);
    let (error, hint) = refused(&o);
    assert!(error.contains("Keras .npz weight file"), "{error}");
    assert!(!error.contains("header too large"), "{error}");
    assert!(
        hint.contains(&format!("charlstm-cuda import {npz} -o")),
        "{hint}"
    );
}

#[test]
fn temperatures_that_greedy_would_ignore_are_refused() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let ckpt = format!("{out}/last.safetensors");
    let args = [
        "generate",
        "--checkpoint",
        &ckpt,
        "--device",
        "cpu",
        "--length",
        "5",
    ];
    let mut greedy = args.to_vec();
    greedy.extend(["--strategy", "greedy", "--temperature", "0.3,0.5"]);
    let (error, hint) = refused(&run(&greedy));
    assert!(error.contains("0.3,0.5 would be ignored"), "{error}");
    assert!(hint.contains("leave out --temperature"), "{hint}");
    // Greedy alone, and temperatures alone, still work.
    let mut plain = args.to_vec();
    plain.extend(["--strategy", "greedy"]);
    ok(&plain);
}

#[test]
fn resuming_a_finished_run_says_it_is_done_and_how_to_go_on() {
    let d = Dir::new();
    let (_, out) = trained(&d);
    let before = snapshot(d.path("run").as_path());
    for extra in [&["--epochs", "1"][..], &[]] {
        let mut args = vec!["train", "--resume", "--out", &out];
        args.extend(extra);
        let (error, hint) = refused(&run(&args));
        assert!(error.contains("already trained 1 epoch"), "{error}");
        assert!(hint.contains("--epochs 2"), "{hint}");
    }
    assert_eq!(snapshot(d.path("run").as_path()), before);
}

#[test]
fn a_length_over_the_limit_names_the_flag_of_the_command() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let out = d.s("run");
    // Small, so that a binary without the limit (which trains, then
    // samples) is done in seconds.
    let o = run(&[
        "train",
        "--corpus",
        &text,
        "--out",
        &out,
        "--epochs",
        "1",
        "--maxlen",
        "10",
        "--hidden",
        "8",
        "--batch-size",
        "32",
        "--steps-per-epoch",
        "1",
        "--temperatures",
        "0.5",
        "--device",
        "cpu",
        "-q",
        "--gen-length",
        "2000000",
    ]);
    let (error, hint) = refused(&o);
    assert!(
        error.contains("invalid value for --gen-length: 2000000"),
        "{error}"
    );
    // train has no --seed-text to continue from.
    assert!(
        !hint.contains("--seed-text") && hint.contains("--gen-length 400"),
        "{hint}"
    );
}
