//! `--layers` and `--dropout` on the command line (issue 17): a stacked run
//! trains, resumes and generates on the CPU, and trains on the simulator
//! (the real kernels) to the CPU's weights; sampling ignores dropout; bad
//! values and a change on resume are refused with the flag and the fix
//! named; dropout with one layer is allowed and said to do nothing.

mod common;

use charlstm_cuda::model::Checkpoint;
use common::cli::{Dir, ok, run, small_text, stderr};

fn refused(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    stderr(&o)
}

/// `train` of a small model (8 units, windows of 10, 3 steps an epoch) on
/// `text` into `out` on `device`, then `extra`.
fn small_run(text: &str, out: &str, device: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "train",
        "--corpus",
        text,
        "--out",
        out,
        "--hidden",
        "8",
        "--maxlen",
        "10",
        "--steps-per-epoch",
        "3",
        "--device",
        device,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_stacked_run_trains_resumes_and_generates_on_the_cpu() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let out = d.s("run");
    let train = |extra: &[&str]| {
        let mut args = small_run(
            &text,
            &out,
            "cpu",
            &["--batch-size", "32", "--gen-length", "5"],
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let args = train(&["--epochs", "1", "--layers", "2", "--dropout", "0.25"]);
    let o = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = stderr(&o);
    assert!(
        err.contains("2 LSTM layers of 8 units, dropout 0.25"),
        "{err}"
    );
    let last = d.path("run/last.safetensors");
    let c = Checkpoint::load(&last).expect("checkpoint");
    assert_eq!(
        (c.hyper.layers, c.hyper.dropout, c.params.layers),
        (2, 0.25, 2)
    );

    let table = common::cli::stdout(&ok(&["inspect", last.to_str().expect("utf-8")]));
    assert!(
        table.contains("2 x LSTM(8) + Dense(")
            && table.contains("dropout 0.25 between layers")
            && table.contains("lstm_1.recurrent_kernel [8, 32]"),
        "{table}"
    );

    // Resume: the stack is the run's own; another --layers is refused.
    let o = ok(&[
        "train", "--resume", "--out", &out, "--epochs", "2", "--quiet",
    ]);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    let err = refused(&[
        "train", "--resume", "--out", &out, "--epochs", "3", "--layers", "3",
    ]);
    assert!(
        err.contains("--layers") && err.contains("resumed run"),
        "{err}"
    );

    // eval: the loss over every window, evaluation mode (no dropout), as
    // the library computes it.
    let o = ok(&[
        "eval",
        "--checkpoint",
        last.to_str().expect("utf-8"),
        "--corpus",
        &text,
        "--device",
        "cpu",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(common::cli::stdout(&o).trim()).expect("eval prints JSON");
    let loss = v["loss"].as_f64().expect("loss");
    assert!(loss.is_finite() && loss > 0.0, "{v}");

    for mode in ["window", "stateful"] {
        let o = ok(&[
            "generate",
            "--checkpoint",
            last.to_str().expect("utf-8"),
            "--length",
            "20",
            "--gen-mode",
            mode,
            "--device",
            "cpu",
            "--raw",
        ]);
        assert!(!o.stdout.is_empty(), "{mode}");
    }
    // A device samples the stack in window mode (over its predict) and in
    // stateful mode (one step a character from the carried state), the
    // latter drawing the CPU's characters.
    let ckpt = last.to_str().expect("utf-8");
    let on = |device: &'static str, mode: &'static str| {
        [
            "generate",
            "--checkpoint",
            ckpt,
            "--length",
            "30",
            "--gen-mode",
            mode,
            "--device",
            device,
            "--raw",
        ]
    };
    if charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS {
        let o = ok(&on("sim", "window"));
        assert!(!o.stdout.is_empty());
        let (sim, cpu) = (ok(&on("sim", "stateful")), ok(&on("cpu", "stateful")));
        assert!(!sim.stdout.is_empty());
        assert_eq!(
            common::cli::stdout(&sim),
            common::cli::stdout(&cpu),
            "stateful samples of a stack: sim vs cpu"
        );
    }
}

#[test]
fn bad_values_are_refused_and_one_layer_dropout_is_explained() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let base = [
        "train",
        "--corpus",
        &text,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let refuse = |extra: &[&str]| {
        let a = with(extra);
        refused(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = d.s("x");
    let err = refuse(&["--out", &out, "--layers", "0"]);
    assert!(err.contains("--layers") && err.contains("1 to 16"), "{err}");
    for p in ["1", "-0.1", "nan"] {
        let err = refuse(&["--out", &out, "--layers", "2", &format!("--dropout={p}")]);
        assert!(
            err.contains("--dropout") && err.contains("[0, 1)"),
            "{p}: {err}"
        );
    }
    let err = refuse(&["--out", &out, "--hidden", "2048"]);
    assert!(
        err.contains("1..=1024") && err.contains("--hidden"),
        "{err}"
    );
    // (A stack trains on the device engines too: below, and tests/gpu_layers.rs.)

    let one = d.s("one");
    let a = with(&[
        "--out",
        &one,
        "--dropout",
        "0.5",
        "--hidden",
        "8",
        "--maxlen",
        "10",
        "--batch-size",
        "32",
        "--gen-length",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let o = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = stderr(&o);
    assert!(
        err.contains("--dropout 0.5 does nothing with one LSTM layer"),
        "{err}"
    );
}

#[test]
fn a_config_file_sets_layers_and_dropout() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let config = d.write(
        "run.toml",
        format!(
            "corpus = {text:?}\nout = \"run\"\nepochs = 1\nsteps_per_epoch = 1\nhidden = 8\n\
             maxlen = 10\nbatch_size = 16\ngen_length = 0\ndevice = \"cpu\"\nlayers = 3\n\
             dropout = 0.125\n"
        )
        .as_bytes(),
    );
    ok(&["train", "--config", &config, "--quiet"]);
    let c = Checkpoint::load(&d.path("run/last.safetensors")).expect("checkpoint");
    assert_eq!(
        (c.hyper.layers, c.hyper.dropout, c.params.layers),
        (3, 0.125, 3)
    );
}

/// `train --device sim --layers 2 --dropout 0.25` runs the stack's kernels
/// on the simulator to the CPU's weights (float rounding apart: the two sum
/// in different orders), with the same dropout masks; and sampling a model
/// trained with dropout gives the very characters of the same weights with
/// dropout 0 (it is off outside training).
#[test]
fn a_stack_trains_on_the_simulator_as_on_the_cpu_and_samples_without_dropout() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let train = |device: &str| {
        let out = d.s(device);
        let args = small_run(
            &text,
            &out,
            device,
            &[
                "--batch-size",
                "16",
                "--epochs",
                "1",
                "--gen-length",
                "0",
                "--layers",
                "2",
                "--dropout",
                "0.25",
                "--seed",
                "7",
            ],
        );
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let metrics =
            std::fs::read_to_string(d.path(&format!("{device}/metrics.jsonl"))).expect("metrics");
        let line: serde_json::Value =
            serde_json::from_str(metrics.lines().last().expect("a line")).expect("JSON");
        let c = Checkpoint::load(&d.path(&format!("{device}/last.safetensors"))).expect("ckpt");
        (line["loss"].as_f64().expect("loss"), c)
    };
    let (cpu_loss, cpu) = train("cpu");
    if charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS {
        let (sim_loss, sim) = train("sim");
        assert_eq!((sim.hyper.layers, sim.hyper.dropout), (2, 0.25));
        assert!(
            (sim_loss - cpu_loss).abs() <= 1e-5 * cpu_loss.abs(),
            "epoch loss: sim {sim_loss} vs cpu {cpu_loss}"
        );
        let lr = f64::from(cpu.hyper.lr);
        for (i, (&a, &b)) in sim.params.flat().iter().zip(cpu.params.flat()).enumerate() {
            let (a, b) = (f64::from(a), f64::from(b));
            assert!(
                (a - b).abs() <= 1e-3 * (lr + b.abs()),
                "weight {i}: sim {a} vs cpu {b}"
            );
        }
    } else {
        println!("SKIPPED (the simulator half): built without kernels");
    }

    // The same weights with dropout 0 sample the same characters.
    let with = d.path("cpu/last.safetensors");
    let without = d.path("no-dropout.safetensors");
    let mut c = cpu;
    c.hyper.dropout = 0.0;
    c.save(&without).expect("save");
    for mode in ["window", "stateful"] {
        let sample = |path: &std::path::Path| {
            let o = ok(&[
                "generate",
                "--checkpoint",
                path.to_str().expect("utf-8"),
                "--length",
                "40",
                "--temperature",
                "1.0",
                "--seed",
                "3",
                "--gen-mode",
                mode,
                "--device",
                "cpu",
                "--raw",
            ]);
            common::cli::stdout(&o)
        };
        let (a, b) = (sample(&with), sample(&without));
        assert!(!a.trim().is_empty(), "{mode}");
        assert_eq!(a, b, "{mode}: sampling depends on the training dropout");
    }
}
