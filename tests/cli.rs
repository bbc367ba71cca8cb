//! The command line end to end on a small generated text: prepare, train,
//! resume, generate, eval, and a clear error for every bad input.

mod common;
use common::cli::{Dir, bin, ok, run, small_text, stderr, stdout};

use std::path::Path;

/// Fails with a one-line error plus hint, no panic, and stderr mentions `needle`.
fn fails(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail:\n{}", stdout(&o));
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    assert!(
        err.contains(needle),
        "{args:?}: stderr lacks {needle:?}:\n{err}"
    );
    if o.status.code() == Some(1) {
        assert!(
            err.contains("error: ") && err.contains("hint: "),
            "{args:?}: no error/hint lines:\n{err}"
        );
    }
}

const SMALL: &[&str] = &[
    "--maxlen",
    "10",
    "--step",
    "3",
    "--hidden",
    "16",
    "--batch-size",
    "32",
    "--gen-length",
    "20",
    "--device",
    "cpu",
    "--quiet",
];

fn train_args<'a>(corpus: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "train", "--corpus", corpus, "--out", out, "--epochs", epochs,
    ];
    v.extend_from_slice(SMALL);
    v
}

fn tensors(path: &Path) -> Vec<u8> {
    // The checkpoint minus its metadata header: weights and optimizer state.
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[8 + n..].to_vec()
}

#[test]
fn prepare_train_resume_generate_eval() {
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let prepared = d.s("small.ohc");
    let o = ok(&["prepare", &text, "-o", &prepared]);
    assert!(stdout(&o).contains("symbols"), "{}", stdout(&o));

    // Two epochs, then resume to three.
    let out = d.s("run");
    let o = ok(&train_args(&prepared, &out, "2"));
    let s = stdout(&o);
    assert!(
        s.contains("epoch 1/2: loss") && s.contains("epoch 2/2: loss"),
        "{s}"
    );
    assert!(
        s.contains("--- Generating with seed: ") && s.contains("------ temperature: 1.2"),
        "{s}"
    );
    assert!(
        d.path("run/epoch-001.safetensors").exists()
            && d.path("run/epoch-002.safetensors").exists()
    );
    let metrics = std::fs::read_to_string(d.path("run/metrics.jsonl")).expect("metrics");
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["epoch"], i + 1);
        assert!(
            l["loss"].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
            "{l}"
        );
        assert!(
            l["seconds"].as_f64().is_some() && l["samples_per_s"].as_f64().is_some(),
            "{l}"
        );
        assert_eq!(l["samples"].as_array().map(Vec::len), Some(4), "{l}");
    }
    // Training reduces the loss on this very regular text.
    assert!(
        lines[1]["loss"].as_f64() < lines[0]["loss"].as_f64(),
        "{metrics}"
    );

    fails(&train_args(&prepared, &out, "3"), "--resume");
    let mut resume = train_args(&prepared, &out, "3");
    resume.push("--resume");
    let o = ok(&resume);
    assert!(stdout(&o).contains("epoch 3/3: loss"), "{}", stdout(&o));

    // An uninterrupted three-epoch run (from the text, not the prepared file) ends identical.
    let straight = d.s("straight");
    ok(&train_args(&text, &straight, "3"));
    assert_eq!(
        tensors(&d.path("run/epoch-003.safetensors")),
        tensors(&d.path("straight/epoch-003.safetensors")),
        "resumed and uninterrupted runs differ"
    );

    let ckpt = d.s("run/last.safetensors");
    let o = ok(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--seed-text",
        "The will to",
        "--length",
        "50",
        "--device",
        "cpu",
    ]);
    let s = stdout(&o);
    assert!(
        s.contains("--- Generating with seed: \"the will to\""),
        "{s}"
    );
    assert_eq!(s.matches("------ temperature:").count(), 4, "{s}");
    // The same samples from the generation kernel on the simulator (one
    // launch); only a draw landing within rounding of a cumulative boundary
    // could differ, which tests/generate_kernel.rs handles and which is
    // vanishingly unlikely in 4 x 50 draws.
    if charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS {
        let sim = ok(&[
            "generate",
            "--checkpoint",
            &ckpt,
            "--seed-text",
            "The will to",
            "--length",
            "50",
            "--device",
            "sim",
        ]);
        assert_eq!(stdout(&sim), s, "generate --device sim differs from cpu");
    }
    let o = ok(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--strategy",
        "greedy",
        "--corpus",
        &text,
        "--length",
        "30",
    ]);
    assert!(stdout(&o).contains("------ greedy"), "{}", stdout(&o));

    let o = ok(&[
        "eval",
        "--checkpoint",
        &ckpt,
        "--corpus",
        &text,
        "--device",
        "cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("eval prints JSON");
    let loss = v["loss"].as_f64().expect("loss");
    assert!(loss.is_finite() && loss > 0.0 && loss < 4.0, "{v}");
    assert!(v["windows"].as_u64().is_some_and(|w| w > 100), "{v}");
    let o = ok(&[
        "eval",
        "--checkpoint",
        &ckpt,
        "--corpus",
        &prepared,
        "--device",
        "cpu",
    ]);
    let v2: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("eval prints JSON");
    assert_eq!(
        v["loss"], v2["loss"],
        "text and prepared corpus give different losses"
    );
}

/// Without `--corpus`, `train` uses the built-in Keras text, offline, and
/// trains exactly as `--corpus nietzsche.txt` does: the same loss and the
/// same weights, bit for bit, after a few steps.
#[test]
fn train_without_corpus_uses_the_built_in_text() {
    let d = Dir::new();
    let (a, b) = (d.s("built_in"), d.s("file"));
    let steps = [
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--gen-length",
        "0",
        "--device",
        "cpu",
        "--quiet",
        "--hidden",
        "16",
    ];
    let mut args = vec!["train", "--out", &a];
    args.extend_from_slice(&steps);
    let o = ok(&args);
    assert!(
        stderr(&o).contains("built in"),
        "no word of the built-in text:\n{}",
        stderr(&o)
    );
    let loss = |dir: &str| {
        let m = std::fs::read_to_string(Path::new(dir).join("metrics.jsonl")).expect("metrics");
        let row: serde_json::Value = serde_json::from_str(m.trim()).expect("one JSON line");
        row["loss"].as_f64().expect("a loss")
    };
    let weights = |dir: &str| tensors(&Path::new(dir).join("last.safetensors"));
    let Some(txt) = common::nietzsche_file() else {
        eprintln!(
            "SKIPPED (the comparison with --corpus): ../shared/corpus/nietzsche.txt not found"
        );
        return;
    };
    let txt = txt.to_string_lossy().into_owned();
    let mut args = vec!["train", "--corpus", &txt, "--out", &b];
    args.extend_from_slice(&steps);
    ok(&args);
    assert_eq!(loss(&a).to_bits(), loss(&b).to_bits());
    assert!(weights(&a) == weights(&b), "the weights differ");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let out = d.s("run");
    let missing = d.s("missing.txt");
    fails(&train_args(&missing, &out, "1"), "missing.txt");
    fails(&train_args(&d.write("empty.txt", b""), &out, "1"), "empty");
    fails(
        &train_args(&d.write("latin1.txt", b"caf\xe9 au lait"), &out, "1"),
        "UTF-8",
    );
    fails(
        &train_args(
            &d.write("binary.bin", &[0u8, 1, 2, 3, 0, 255, 0, 7]),
            &out,
            "1",
        ),
        "",
    );
    fails(
        &train_args(&d.write("short.txt", b"too short"), &out, "1"),
        "maxlen",
    );
    let bad_corpus = d.write("bad.ohc", b"CHLSTMOH\x01\x00\x00\x00garbage");
    fails(&train_args(&bad_corpus, &out, "1"), "bad.ohc");

    for (flag, value) in [
        ("--lr", "-1"),
        ("--lr", "nan"),
        ("--batch-size", "0"),
        ("--hidden", "0"),
        ("--maxlen", "0"),
        ("--step", "0"),
        ("--epochs", "0"),
        ("--steps-per-epoch", "0"),
        ("--temperatures", "0"),
        ("--temperatures", "-0.5"),
        ("--device", "tpu"),
    ] {
        let mut a = train_args(&text, &out, "1");
        let arg = format!("{flag}={value}");
        a.push(&arg);
        // Temperatures are validated by the sampler, which calls them --temperature.
        fails(&a, flag.trim_end_matches('s'));
    }
    fails(
        &["train", "--corpus", &text, "--epochs", "many"],
        "--epochs",
    );
    let mut a = train_args(&text, &out, "1");
    a.push("--resume");
    fails(&a, "nothing to resume");

    // Checkpoints: missing, truncated, garbage.
    fails(&["generate", "--checkpoint", &missing], "missing.txt");
    fails(
        &[
            "generate",
            "--checkpoint",
            &d.write("junk.safetensors", b"not a checkpoint"),
        ],
        "junk.safetensors",
    );
    ok(&train_args(&text, &out, "1"));
    let ckpt = std::fs::read(d.path("run/last.safetensors")).expect("checkpoint");
    for cut in [4, 9, 100, ckpt.len() / 2, ckpt.len() - 1] {
        let p = d.write("cut.safetensors", &ckpt[..cut]);
        fails(&["generate", "--checkpoint", &p], "cut.safetensors");
    }
    let mut flipped = ckpt.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x10;
    fails(
        &[
            "generate",
            "--checkpoint",
            &d.write("flip.safetensors", &flipped),
        ],
        "checksum",
    );
    let ck = d.s("run/last.safetensors");
    fails(
        &[
            "generate",
            "--checkpoint",
            &ck,
            "--seed-text",
            "qqq\u{1F600}",
        ],
        "vocabulary",
    );
    fails(
        &["generate", "--checkpoint", &ck, "--temperature", "0"],
        "--temperature",
    );
    fails(
        &[
            "eval",
            "--checkpoint",
            &ck,
            "--corpus",
            &d.write("other.txt", "xyzxyzxyzxyzxyzxyzxyz@@".as_bytes()),
        ],
        "vocabulary",
    );
    if charlstm_cuda::gpu::CudaDevice::probe().is_err() {
        fails(
            &["generate", "--checkpoint", &ck, "--device", "cuda"],
            "cuda",
        );
    }
}

/// Without a usable GPU, `--device cuda` is an error naming the cause plus a
/// hint (exit 1, no panic) and `--device auto` trains on the CPU saying why;
/// with one, both train on it.
#[test]
fn device_cuda_and_auto_follow_the_gpu() {
    let kernels = charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS;
    let probe = charlstm_cuda::gpu::CudaDevice::probe();
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let (auto_out, cuda_out) = (d.s("auto"), d.s("cuda"));
    let on = |out: &str, device: &str| -> Vec<String> {
        let mut a: Vec<String> = train_args(&text, out, "1")
            .into_iter()
            .map(String::from)
            .collect();
        a.extend(["--steps-per-epoch".into(), "3".into()]);
        let pos = a.iter().position(|x| x == "cpu").expect("--device cpu");
        a[pos] = device.into();
        a
    };
    let auto = on(&auto_out, "auto");
    let auto: Vec<&str> = auto.iter().map(String::as_str).collect();
    let cuda = on(&cuda_out, "cuda");
    let cuda: Vec<&str> = cuda.iter().map(String::as_str).collect();

    let err = stderr(&ok(&auto));
    assert!(!err.contains("panicked"), "{err}");
    let expected = match (&probe, kernels) {
        (_, false) => "device auto: using cpu (this build has no CUDA kernels)".to_string(),
        (Ok(_), true) => "device auto: using cuda (".to_string(),
        (Err(why), true) => format!("device auto: using cpu ({why})"),
    };
    assert!(err.contains(&expected), "lacks {expected:?}:\n{err}");

    match probe {
        Ok(gpu) if kernels => {
            println!("GPU present ({gpu}): --device cuda trains on it");
            let err = stderr(&ok(&cuda));
            assert!(err.contains("device cuda: "), "{err}");
        }
        probe => {
            println!("SKIPPED: no GPU ({probe:?}); checking the error instead");
            let o = run(&cuda);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            let needle = if kernels { "NVIDIA" } else { "no CUDA kernels" };
            fails(&cuda, needle);
            if kernels {
                assert!(stderr(&o).contains("hint: install or update the NVIDIA driver"));
            }
        }
    }
}

/// `--device sim` runs the kernels that exist (RMSprop) on the PTX simulator,
/// says what is not on the GPU path yet, and ends with the same weights as
/// the CPU (the kernel reproduces the CPU's f32 update bit for bit).
#[test]
fn device_sim_trains_and_matches_cpu() {
    if !common::kernels() {
        return;
    }
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let (cpu, sim) = (d.s("cpu"), d.s("sim"));
    let mut a = train_args(&text, &cpu, "1");
    a.extend_from_slice(&["--steps-per-epoch", "3"]);
    ok(&a);
    let mut b = train_args(&text, &sim, "1");
    b.extend_from_slice(&["--steps-per-epoch", "3"]);
    let pos = b
        .iter()
        .position(|x| *x == "cpu")
        .expect("--device cpu in the args");
    b[pos] = "sim";
    let o = ok(&b);
    let err = stderr(&o);
    assert!(
        err.contains("PTX simulator") && err.contains("the LSTM recurrence"),
        "{err}"
    );
    // Every kernel runs on the simulator now, so the weights agree to f32
    // rounding (different summation orders), not bit for bit.
    let floats = |p: &str| -> Vec<f32> {
        tensors(&d.path(p))
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    let (want, got) = (
        floats("cpu/epoch-001.safetensors"),
        floats("sim/epoch-001.safetensors"),
    );
    assert_eq!(want.len(), got.len());
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale + 1e-4 * w.abs(),
            "sim and cpu runs differ at float {i}: {g} vs {w}"
        );
    }
}

/// `selftest --device sim`: exit 0, the seed and a table naming every
/// kernel; `--json` is one object; a device it cannot check is a clear error.
#[test]
fn selftest_runs_every_kernel_on_the_simulator() {
    fails(&["selftest", "--device", "cpu"], "--device");
    fails(&["selftest", "--device", "tpu"], "--device");
    // No GPU backend in this build (or no GPU here): an error, not a panic.
    fails(&["selftest", "--device", "cuda"], "cuda");
    if !charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS {
        fails(&["selftest", "--device", "sim"], "kernels");
        eprintln!("SKIPPED: built without kernels");
        return;
    }
    let out = stdout(&ok(&["selftest", "--device", "sim"]));
    assert!(
        out.contains("seed: ") && out.contains("PTX simulator"),
        "{out}"
    );
    let kernels = charlstm_cuda::gpu::selftest::KERNELS;
    for kernel in kernels.iter().chain(&["GpuEngine"]) {
        assert!(out.contains(kernel), "the table lacks {kernel}:\n{out}");
    }
    assert!(
        out.contains("checks passed") && !out.contains("FAIL"),
        "{out}"
    );

    let o = ok(&["selftest", "--seed", "7", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["seed"], 7);
    assert_eq!(v["passed"], true);
    assert_eq!(v["failed"], 0);
    let rows = v["rows"].as_array().expect("rows");
    assert!(rows.len() > 10, "{v}");
    assert!(
        rows.iter()
            .all(|r| r["pass"] == true && r["rel_err"].is_number())
    );
}

/// `charlstm-cuda train | head -1` ends quietly when the reader goes away.
#[test]
fn closed_stdout_does_not_panic() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let d = Dir::new();
    let text = d.write("small.txt", small_text().as_bytes());
    let out = d.s("run");
    // More output than a pipe buffers (64 KiB), so the writer must hit the closed pipe.
    let args = [
        "train",
        "--corpus",
        &text,
        "--out",
        &out,
        "--epochs",
        "3",
        "--steps-per-epoch",
        "2",
        "--maxlen",
        "10",
        "--hidden",
        "8",
        "--gen-length",
        "30000",
        "--device",
        "cpu",
        "--quiet",
    ];
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    // The reader is dropped here, as `head -1` exits.
    assert!(first.starts_with("epoch 1/3"), "{first}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    child.wait().expect("wait");
    assert!(!err.contains("panicked"), "{err}");
}
