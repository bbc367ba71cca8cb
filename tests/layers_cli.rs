//! `--layers` and `--dropout` on the command line (issue 17): a stacked run
//! trains, resumes and generates on the CPU; bad values, a change on
//! resume and a device engine are refused with the flag and the fix named;
//! dropout with one layer is allowed and said to do nothing.

mod common;

use charlstm_cuda::model::Checkpoint;
use common::cli::{Dir, ok, run, small_text, stderr};

fn refused(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    stderr(&o)
}

#[test]
fn a_stacked_run_trains_resumes_and_generates_on_the_cpu() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let out = d.s("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--corpus",
            &text,
            "--out",
            &out,
            "--hidden",
            "8",
            "--maxlen",
            "10",
            "--batch-size",
            "32",
            "--steps-per-epoch",
            "3",
            "--gen-length",
            "5",
            "--device",
            "cpu",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
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
fn bad_values_and_device_engines_are_refused_and_one_layer_dropout_is_explained() {
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
    let err = refuse(&["--out", &out, "--layers", "2", "--dropout", "1"]);
    assert!(err.contains("--dropout") && err.contains("[0, 1)"), "{err}");
    let err = refuse(&["--out", &out, "--hidden", "2048"]);
    assert!(
        err.contains("1..=1024") && err.contains("--hidden"),
        "{err}"
    );
    // (A stack trains on the device engines too: tests/gpu_layers.rs.)

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
