//! `charlstm-cuda bench` end to end on a small generated text: the JSON rows
//! per backend with the per-recurrent-step latency, `--full-epoch`, PyTorch's
//! numbers from `--pytorch FILE` (a fake file here: the ratios must be the
//! ones its numbers and ours give), in the older format and with the
//! variants (strict fp32 / TF32, eager / CUDA-graph loop, one that failed),
//! and a clear error for a bad file.

mod common;
use common::cli::{run, small_text, stderr, stdout};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Runs `bench` at tiny shapes (H=8, T=10, B=4) plus `extra`; the JSON
/// report and the table on stderr.
fn bench(text: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec![
        "bench",
        "--corpus",
        text.to_str().expect("utf-8 path"),
        "--steps",
        "2",
        "--slice-batches",
        "2",
        "--gen-length",
        "3",
        "--hidden",
        "8",
        "--maxlen",
        "10",
        "--batch-size",
        "4",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let report = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    (report, stderr(&o))
}

/// Fails with a one-line error plus hint, and stderr mentions every needle.
fn fails(args: &[&str], needles: &[&str]) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail:\n{}", stdout(&o));
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    assert!(
        err.contains("error: ") && err.contains("hint: "),
        "{args:?}: no error/hint lines:\n{err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{err}"
        );
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `small.txt` in `dir`, and its vocabulary size (lower-cased, as `bench`
/// reads it).
fn small_corpus(dir: &Path) -> (PathBuf, usize) {
    let text = dir.join("small.txt");
    std::fs::write(&text, small_text()).expect("write");
    let vocab = small_text()
        .to_lowercase()
        .chars()
        .collect::<BTreeSet<_>>()
        .len();
    (text, vocab)
}

/// `bench` prints JSON with a measured CPU row (its per-recurrent-step
/// latency is train step / 2T) and, without a GPU, a cuda row that says
/// why it is missing; the table on stderr has the latency line.
#[test]
fn bench_prints_json_rows_per_backend() {
    let d = tempfile::tempdir().expect("temp dir");
    let (text, _) = small_corpus(d.path());
    let (report, table) = bench(&text, &["--device", "cpu,cuda"]);
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{report}");
    let cpu = &rows[0];
    assert_eq!(cpu["backend"], "cpu");
    assert_eq!(cpu["available"], true);
    for key in [
        "train_step_s",
        "epoch_slice_s",
        "epoch_estimate_s",
        "generate_s",
        "generate_stateful_s",
        "step_latency_us",
    ] {
        assert!(cpu[key].as_f64().is_some_and(|s| s > 0.0), "{key}: {cpu}");
    }
    // Both generation modes, and the ratio between them.
    let speedup = f(&cpu["generate_s"]) / f(&cpu["generate_stateful_s"]);
    assert_eq!(f(&cpu["stateful_speedup"]), speedup, "{cpu}");
    assert!(
        table.contains(&format!(
            "cpu: stateful generation {speedup:.1}x faster than window generation"
        )),
        "{table}"
    );
    assert!(
        cpu["last_loss"].as_f64().is_some_and(f64::is_finite),
        "{cpu}"
    );
    let latency = f(&cpu["train_step_s"]) * 1e6 / 20.0;
    assert!(
        (f(&cpu["step_latency_us"]) - latency).abs() <= 1e-9 * latency,
        "{cpu}"
    );
    assert_eq!(report["recurrent_steps_per_batch"], 20);
    assert_eq!(report["step_budget_us"], 1.0);
    assert_eq!(cpu["epoch_s"], Value::Null, "no --full-epoch: {cpu}");
    assert_eq!(report["comparisons"], json!([]));
    assert_eq!(report["pytorch_file"], Value::Null);
    assert_eq!(rows[1]["backend"], "cuda");
    if rows[1]["available"] == false {
        assert!(
            rows[1]["note"].as_str().is_some_and(|n| !n.is_empty()),
            "{report}"
        );
        assert!(table.contains("no GPU / unavailable: "), "{table}");
    }
    assert!(
        table.contains("µs/rec.step")
            && table.contains("per recurrent step = train step / 20 (10 forward + 10 backward")
            && table.contains(&format!("cpu {latency:.3} µs = {:.2}x the budget", latency)),
        "{table}"
    );
    fails(
        &[
            "bench",
            "--corpus",
            text.to_str().unwrap(),
            "--device",
            "auto",
        ],
        &["bench compares named backends"],
    );
}

/// PyTorch's numbers of the same job, as bench_pytorch.py writes them (made up).
fn fake_pytorch(vocab: usize) -> Value {
    json!({
        "backend": "pytorch", "device": "NVIDIA Fake", "torch": "2.15.0", "cudnn": 91002,
        "vocab": vocab, "hidden": 8, "batch": 4, "maxlen": 10, "step": 3,
        "gen_length": 3, "temperatures": [0.2, 0.5, 1.0, 1.2],
        "train_step_s": 0.5, "step_latency_us": 25000.0, "epoch_slice_s": 1.0,
        "slice_batches": 2, "epoch_estimate_s": 40.0, "generate_s": 2.0,
        "last_loss": 2.9, "epoch_s": 30.0, "epoch_loss": 2.5
    })
}

/// `--pytorch FILE --full-epoch`: a pytorch row, and PyTorch / ours for the
/// epoch (whole epochs), the step, generation and the loss after one epoch,
/// computed from the file's numbers and the ones measured in this run, in
/// the JSON and in the table.
#[test]
fn bench_pytorch_file_gives_the_ratios() {
    let d = tempfile::tempdir().expect("temp dir");
    let (text, vocab) = small_corpus(d.path());
    let pt = d.path().join("pt.json");
    std::fs::write(&pt, fake_pytorch(vocab).to_string()).expect("write");
    let pt_arg = pt.to_str().unwrap();
    let (report, table) = bench(
        &text,
        &["--device", "cpu", "--pytorch", pt_arg, "--full-epoch"],
    );
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{report}");
    let (cpu, torch) = (&rows[0], &rows[1]);
    assert_eq!(torch["backend"], "pytorch");
    assert_eq!(f(&torch["step_latency_us"]), 25000.0);
    assert_eq!(report["pytorch_file"], pt_arg);
    let epoch_s = f(&cpu["epoch_s"]);
    let loss = f(&cpu["epoch_loss"]);
    assert!(epoch_s > 0.0 && loss.is_finite() && loss > 0.0, "{cpu}");
    let c = &report["comparisons"][0];
    assert_eq!(c["backend"], "cpu");
    assert_eq!(
        c["reference"], "pytorch (cuDNN)",
        "a file without precision/loop"
    );
    assert_eq!(report["pytorch_variants"], json!([]), "{report}");
    assert!(!table.contains("PyTorch variants"), "{table}");
    assert_eq!(c["epoch_basis"], "whole epoch");
    let epoch = 30.0 / epoch_s;
    let step = 0.5 / f(&cpu["train_step_s"]);
    let generate = 2.0 / f(&cpu["generate_s"]);
    let diff = loss / 2.5 - 1.0;
    assert_eq!(f(&c["epoch_ratio"]), epoch, "{c}");
    assert_eq!(f(&c["step_ratio"]), step, "{c}");
    assert_eq!(f(&c["generate_ratio"]), generate, "{c}");
    assert_eq!(f(&c["loss_rel_diff"]), diff, "{c}");
    assert_eq!(c["epoch_goal_met"], epoch >= 5.0);
    assert_eq!(c["loss_within_tolerance"], diff.abs() <= 0.1);
    for line in [
        "pytorch (cuDNN) / cpu, measured in this run".to_string(),
        format!("(a) epoch {epoch:.2}x (whole epoch; goal >= 5x: "),
        format!("(b) step {step:.2}x: "),
        "25000.000 µs per recurrent step (budget 1 µs)".into(),
        format!("(c) generation of 4 x 3 chars {generate:.2}x"),
        format!(
            "(d) loss after one epoch: cpu {loss:.4}, pytorch 2.5000 ({:+.1}%",
            diff * 100.0
        ),
        "only a loose check".into(),
    ] {
        assert!(table.contains(&line), "table lacks {line:?}:\n{table}");
    }

    // Without --full-epoch: the epoch ratio is the estimates', (d) says
    // what is missing; an unavailable backend gets no ratios.
    let (report, table) = bench(&text, &["--device", "cpu,cuda", "--pytorch", pt_arg]);
    let c = &report["comparisons"][0];
    assert_eq!(c["epoch_basis"], "estimate");
    let cpu = &report["rows"][0];
    assert_eq!(
        f(&c["epoch_ratio"]),
        40.0 / f(&cpu["epoch_estimate_s"]),
        "{c}"
    );
    assert_eq!(c["loss_rel_diff"], Value::Null);
    assert!(
        table.contains("(d) loss after one epoch: not measured: no whole epoch from this bench (add --full-epoch)"),
        "{table}"
    );
    let cuda = &report["comparisons"][1];
    assert_eq!(cuda["backend"], "cuda");
    if report["rows"][1]["available"] == false {
        assert_eq!(cuda["epoch_ratio"], Value::Null, "{cuda}");
        assert!(
            table.contains("pytorch (cuDNN) / cuda: no ratios, cuda unavailable: "),
            "{table}"
        );
    }
}

/// A bench_pytorch.py file with variants (made up): the headline (the
/// top-level numbers) is strict fp32 with the graph loop; TF32 eager ran,
/// TF32 graph failed to capture.
fn fake_pytorch_variants(vocab: usize) -> Value {
    let mut v = fake_pytorch(vocab);
    let head = json!({
        "precision": "fp32", "loop": "graph", "allow_tf32": false,
        "loop_chosen_by": "epoch_s",
        "train_step_s": 0.4, "step_latency_us": 20000.0, "epoch_slice_s": 0.8,
        "epoch_estimate_s": 32.0, "last_loss": 2.9, "epoch_s": 24.0, "epoch_loss": 2.5,
        "variants": [
            {"precision": "fp32", "loop": "eager", "allow_tf32": false,
             "flags": {"cudnn.allow_tf32": false},
             "train_step_s": 0.5, "step_latency_us": 25000.0, "epoch_slice_s": 1.0,
             "slice_batches": 2, "epoch_estimate_s": 40.0, "last_loss": 2.9,
             "epoch_s": 30.0, "epoch_loss": 2.5},
            {"precision": "fp32", "loop": "graph", "allow_tf32": false,
             "train_step_s": 0.4, "step_latency_us": 20000.0, "epoch_slice_s": 0.8,
             "slice_batches": 2, "epoch_estimate_s": 32.0, "last_loss": 2.9,
             "epoch_s": 24.0, "epoch_loss": 2.5},
            {"precision": "tf32", "loop": "eager", "allow_tf32": true,
             "train_step_s": 0.3, "step_latency_us": 15000.0, "epoch_slice_s": 0.6,
             "slice_batches": 2, "epoch_estimate_s": 24.0, "last_loss": 2.9,
             "epoch_s": 18.0, "epoch_loss": 2.6},
            {"precision": "tf32", "loop": "graph", "allow_tf32": true,
             "error": "RuntimeError: CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors might be asynchronously reported"}
        ]
    });
    for (k, x) in head.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// A file with variants: the comparison is against the headline (strict
/// fp32, the faster loop) and its label says so; the report carries every
/// variant with its ratios to our rows; the table prints one line per
/// variant after the ratios, TF32 beside strict fp32, the failed one as an
/// error.
#[test]
fn bench_pytorch_variants_are_read_and_printed() {
    let d = tempfile::tempdir().expect("temp dir");
    let (text, vocab) = small_corpus(d.path());
    let pt = d.path().join("pt.json");
    std::fs::write(&pt, fake_pytorch_variants(vocab).to_string()).expect("write");
    let pt_arg = pt.to_str().unwrap();
    let (report, table) = bench(
        &text,
        &["--device", "cpu", "--pytorch", pt_arg, "--full-epoch"],
    );
    let cpu = &report["rows"][0];
    let c = &report["comparisons"][0];
    assert_eq!(c["reference"], "pytorch (cuDNN, fp32, graph)", "{c}");
    let epoch_s = f(&cpu["epoch_s"]);
    let step_s = f(&cpu["train_step_s"]);
    assert_eq!(f(&c["epoch_ratio"]), 24.0 / epoch_s, "{c}");
    assert_eq!(f(&c["step_ratio"]), 0.4 / step_s, "{c}");
    assert!(
        report["rows"][1]["note"]
            .as_str()
            .is_some_and(|n| n.contains("allow_tf32 false")),
        "{report}"
    );

    let vs = report["pytorch_variants"].as_array().expect("variants");
    assert_eq!(vs.len(), 4, "{report}");
    let names: Vec<(String, String, bool)> = vs
        .iter()
        .map(|v| {
            (
                v["precision"].as_str().unwrap().to_string(),
                v["loop"].as_str().unwrap().to_string(),
                v["headline"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("fp32".into(), "eager".into(), false),
            ("fp32".into(), "graph".into(), true),
            ("tf32".into(), "eager".into(), false),
            ("tf32".into(), "graph".into(), false),
        ]
    );
    for (v, (epoch, step)) in vs.iter().zip([(30.0, 0.5), (24.0, 0.4), (18.0, 0.3)]) {
        let r = &v["ratios"][0];
        assert_eq!(r["backend"], "cpu");
        assert_eq!(r["epoch_basis"], "whole epoch");
        assert_eq!(f(&r["epoch_ratio"]), epoch / epoch_s, "{v}");
        assert_eq!(f(&r["step_ratio"]), step / step_s, "{v}");
        assert_eq!(f(&v["step_latency_us"]), step * 1e6 / 20.0, "{v}");
    }
    assert!(
        vs[3]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("RuntimeError: CUDA error")),
        "{}",
        vs[3]
    );
    assert_eq!(vs[3]["ratios"][0]["epoch_ratio"], Value::Null);

    let ratios = table
        .find("pytorch (cuDNN, fp32, graph) / cpu, measured in this run")
        .unwrap_or_else(|| panic!("no comparison with the headline:\n{table}"));
    let section = table
        .find("PyTorch variants, PyTorch epoch / ours")
        .unwrap_or_else(|| panic!("no variants section:\n{table}"));
    assert!(
        ratios < section,
        "the variants come after the ratios:\n{table}"
    );
    let lines: Vec<&str> = table[section..].lines().collect();
    assert!(
        lines[1].contains("precision") && lines[1].contains("µs/rec.step"),
        "{table}"
    );
    assert!(lines[1].ends_with("vs cpu"), "{table}");
    for (line, prefix, numbers) in [
        (
            2,
            "  fp32      eager",
            ["500000.000", "25000.000", "30.000", "2.5000"],
        ),
        (
            3,
            "* fp32      graph",
            ["400000.000", "20000.000", "24.000", "2.5000"],
        ),
        (
            4,
            "  tf32      eager",
            ["300000.000", "15000.000", "18.000", "2.6000"],
        ),
    ] {
        let epoch = [30.0, 24.0, 18.0][line - 2];
        assert!(lines[line].starts_with(prefix), "{prefix:?}:\n{table}");
        for n in numbers {
            assert!(
                lines[line].contains(n),
                "{n} in {:?}:\n{table}",
                lines[line]
            );
        }
        let ratio = format!("{:.2}x", epoch / epoch_s);
        assert!(lines[line].ends_with(&ratio), "{ratio}:\n{table}");
    }
    assert_eq!(
        lines[5],
        "  tf32      graph  error: RuntimeError: CUDA error: operation not permitted when \
         stream is capturing ...",
        "{table}"
    );

    // Without --full-epoch the ratios are the estimates', marked so; a
    // backend with no numbers gets none; a variant not applicable says why.
    let mut v = fake_pytorch_variants(vocab);
    v["variants"][3] = json!({"precision": "tf32", "loop": "graph", "allow_tf32": true,
        "not_applicable": "CUDA graphs need a CUDA device, this is cpu"});
    std::fs::write(&pt, v.to_string()).expect("write");
    let (report, table) = bench(&text, &["--device", "cpu,cuda", "--pytorch", pt_arg]);
    let cpu = &report["rows"][0];
    let vs = &report["pytorch_variants"];
    let r = &vs[0]["ratios"][0];
    assert_eq!(r["epoch_basis"], "estimate");
    assert_eq!(f(&r["epoch_ratio"]), 40.0 / f(&cpu["epoch_estimate_s"]));
    assert!(
        table.contains(&format!("{:.2}x est", 40.0 / f(&cpu["epoch_estimate_s"]))),
        "{table}"
    );
    assert!(table.contains("vs cpu      vs cuda"), "{table}");
    if report["rows"][1]["available"] == false {
        assert_eq!(vs[0]["ratios"][1]["epoch_ratio"], Value::Null);
    }
    assert!(
        table.contains(
            "  tf32      graph  not applicable: CUDA graphs need a CUDA device, this is cpu"
        ),
        "{table}"
    );
}

/// A missing, malformed or foreign PyTorch file is a one-line error naming
/// the file, with a hint saying how to make a good one.
#[test]
fn bench_rejects_a_bad_pytorch_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let (text, vocab) = small_corpus(d.path());
    let text = text.to_str().unwrap();
    let pt = d.path().join("pt.json");
    let pt_arg = pt.to_str().unwrap();
    let args = [
        "bench",
        "--corpus",
        text,
        "--device",
        "cpu",
        "--steps",
        "1",
        "--slice-batches",
        "1",
        "--gen-length",
        "3",
        "--hidden",
        "8",
        "--maxlen",
        "10",
        "--batch-size",
        "4",
        "--pytorch",
        pt_arg,
    ];
    let hint = "scripts/bench_pytorch.py";
    fails(&args, &[pt_arg, "cannot read it", hint]);
    let mut cases = vec![
        (
            json!({"train_step_s": "fast"}),
            "not the JSON object bench_pytorch.py prints",
        ),
        (json!({"hidden": 128}), "not the same job: PyTorch ran V="),
        (json!({"train_step_s": -1.0}), "train_step_s is -1"),
        (json!({"gen_length": 400}), "not the same generation"),
    ];
    cases.push((json!({"batches_per_epoch": 1}), "not the same corpus"));
    // A file of a stacked job is not the one-layer job's (and an old file,
    // without the keys, is one layer with no dropout: the fake's).
    cases.push((json!({"layers": 2}), "PyTorch ran V="));
    cases.push((
        json!({"layers": 2}),
        " H=8 N=2 dropout=0 B=4 T=10, this bench ",
    ));
    cases.push((json!({"dropout": 0.2}), " N=1 dropout=0.2 B=4"));
    cases.push((
        json!({"variants": [{"precision": "fp32", "loop": "eager", "epoch_s": -1.0}]}),
        "variants[0].epoch_s is -1",
    ));
    cases.push((
        json!({"variants": [{"precision": "fp32", "train_step_s": "fast"}]}),
        "not the JSON object bench_pytorch.py prints",
    ));
    for (patch, needle) in cases {
        let mut v = fake_pytorch(vocab);
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        std::fs::write(&pt, v.to_string()).expect("write");
        fails(
            &args,
            &[pt_arg, "not a usable PyTorch bench result", needle, hint],
        );
    }
    std::fs::write(&pt, "{ not json").expect("write");
    fails(&args, &[pt_arg, "not the JSON object", hint]);
}

/// `--layers N --dropout P` times the stacked model (issue 17) on every
/// backend asked for: the report names the job, the CPU and the simulator
/// train the same model to the same loss, a PyTorch file of the same
/// stacked job gives ratios, and a bad N or P is an error naming the flag.
#[test]
fn bench_times_a_stacked_model() {
    let d = tempfile::tempdir().expect("temp dir");
    let (text, vocab) = small_corpus(d.path());
    let stacked = ["--layers", "2", "--dropout", "0.25"];
    let mut extra = vec!["--device", "cpu,sim"];
    extra.extend_from_slice(&stacked);
    let (report, table) = bench(&text, &extra);
    assert_eq!(report["layers"], 2, "{report}");
    assert_eq!(report["dropout"], 0.25, "{report}");
    assert!(table.contains("H=8 N=2 dropout=0.25 B=4 T=10;"), "{table}");
    let rows = report["rows"].as_array().expect("rows");
    let loss = |i: usize| f(&rows[i]["last_loss"]);
    assert_eq!(
        (&rows[0]["backend"], &rows[1]["backend"]),
        (&json!("cpu"), &json!("sim"))
    );
    assert!(
        (loss(0) - loss(1)).abs() <= 1e-4 * loss(0).abs(),
        "the CPU and the simulator trained different models: {report}"
    );
    let (one, _) = bench(&text, &["--device", "cpu"]);
    assert_eq!((&one["layers"], &one["dropout"]), (&json!(1), &json!(0.0)));
    let (_, note) = bench(&text, &["--device", "cpu", "--dropout", "0.3"]);
    assert!(
        note.contains("note: --dropout 0.3 does nothing with one LSTM layer"),
        "{note}"
    );
    assert_ne!(
        f(&one["rows"][0]["last_loss"]),
        loss(0),
        "--layers 2 trained the one-layer model"
    );

    let pt = d.path().join("pt.json");
    let mut v = fake_pytorch(vocab);
    v["layers"] = json!(2);
    v["dropout"] = json!(0.25);
    std::fs::write(&pt, v.to_string()).expect("write");
    let mut extra = vec!["--device", "cpu", "--pytorch", pt.to_str().unwrap()];
    extra.extend_from_slice(&stacked);
    let (report, _) = bench(&text, &extra);
    let step = f(&report["rows"][0]["train_step_s"]);
    let c = &report["comparisons"][0];
    assert!(
        (f(&c["step_ratio"]) - 0.5 / step).abs() <= 1e-9 * (0.5 / step),
        "{report}"
    );

    let t = text.to_str().unwrap();
    for (flag, value, needle) in [
        ("--layers", "0", "use 1 to 16 stacked LSTM layers"),
        ("--layers", "17", "use 1 to 16 stacked LSTM layers"),
        ("--dropout", "1", "use a probability in [0, 1)"),
        ("--dropout", "NaN", "use a probability in [0, 1)"),
    ] {
        let args = ["bench", "--corpus", t, "--device", "cpu", flag, value];
        fails(&args, &[&format!("invalid value for {flag}: "), needle]);
    }
}
