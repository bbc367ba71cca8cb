//! `--recurrence` (`LstmPath`, `Engine::set_lstm_path`): which device
//! kernels run the LSTM recurrence is a choice of speed, never of results.
//! On the simulator every path (auto, per-step, persistent, cluster) trains
//! one layer and a stack with dropout, in window and stream mode, to the
//! same losses and weights, bit for bit; a path changed between steps is
//! captured anew. A path that cannot run the shape, or any path but auto on
//! the CPU, is refused when the run is built, naming why and the fix; the
//! CLI and a config file take the flag, and `bench` applies it to its
//! device rows only. `CHARLSTM_NO_CLUSTERS` turns the cluster kernels off
//! (the selftest's rows, the path) with a note naming it.

mod common;
use common::cli::{Dir, ok, run, small_text, stderr, stdout};

use std::sync::{Arc, Mutex};

use charlstm_cuda::engine::Batch;
use charlstm_cuda::gpu::{CudaDevice, GpuDevice, GpuEngine, SimDevice};
use charlstm_cuda::model::{Hyper, Params, TrainMode, init_stacked};
use charlstm_cuda::train::{BatchEvent, Control, Observer};
use charlstm_cuda::{Backend, Engine, LstmPath, OneHotCorpus, TrainConfig, Trainer};

/// About 3,000 characters of words.
fn text() -> String {
    let words = [
        "the ", "will ", "to ", "power ", "is ", "not ", "what ", "we, ",
    ];
    (0..600)
        .map(|i| words[(i * 7 + i / 5 + i / 13) % words.len()])
        .collect()
}

/// H = 64: the smallest the cluster kernels take, and one the persistent
/// kernels fit, so that all four paths run the same job.
fn hyper(layers: usize, dropout: f32) -> Hyper {
    Hyper {
        hidden: 64,
        batch: 4,
        maxlen: 6,
        layers,
        dropout,
        epochs: 1,
        ..Hyper::default()
    }
}

struct Losses(Arc<Mutex<Vec<f32>>>);

impl Observer for Losses {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.0.lock().expect("not poisoned").push(e.loss);
        Control::Continue
    }
}

fn bits(p: &Params<f32>) -> Vec<u32> {
    p.flat().iter().map(|x| x.to_bits()).collect()
}

/// Three batches of `hyper` on `backend` on `path`: the batch losses and
/// the weights, as bits.
fn train(
    backend: Backend,
    corpus: &OneHotCorpus,
    hyper: &Hyper,
    mode: TrainMode,
    path: LstmPath,
) -> Vec<Vec<u32>> {
    let losses: Arc<Mutex<Vec<f32>>> = Arc::default();
    let mut t = Trainer::builder(corpus)
        .hyper(hyper.clone())
        .config(TrainConfig {
            gen_length: 0,
            steps_per_epoch: Some(3),
            mode,
            ..TrainConfig::default()
        })
        .backend(backend)
        .lstm_path(path)
        .build()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    t.run(&mut Losses(losses.clone())).expect("run");
    let params = t.engine_mut().params().expect("params");
    let losses = losses.lock().expect("not poisoned");
    assert_eq!(losses.len(), 3, "{path}: three batches");
    vec![losses.iter().map(|x| x.to_bits()).collect(), bits(&params)]
}

/// `paths` against `Auto` on `backend`: one layer and a stack of two with
/// dropout, window and stream mode, the same bits.
fn every_path_trains_to_the_same_bits(backend: Backend, hidden: usize, paths: &[LstmPath]) {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    for (layers, dropout) in [(1, 0.0), (2, 0.25)] {
        for mode in [TrainMode::Window, TrainMode::Stream { seq_len: 5 }] {
            let hy = Hyper {
                hidden,
                ..hyper(layers, dropout)
            };
            let auto = train(backend, &corpus, &hy, mode, LstmPath::Auto);
            for &path in paths {
                let other = train(backend, &corpus, &hy, mode, path);
                let what = format!(
                    "{backend} H = {hidden}, {layers} layer(s), dropout {dropout}, {mode:?}: {path}"
                );
                assert_eq!(auto[0], other[0], "{what}: batch losses");
                assert_eq!(auto[1], other[1], "{what}: weights");
            }
        }
    }
}

#[test]
fn every_recurrence_trains_to_the_same_bits_on_the_simulator() {
    if common::kernels() {
        let paths = [LstmPath::PerStep, LstmPath::Persistent, LstmPath::Cluster];
        every_path_trains_to_the_same_bits(Backend::Sim, 64, &paths);
    }
}

/// On a GPU at H = 256, where `Auto` runs the per-step kernels and the
/// cluster kernels are the alternative (the GPU bundle runs it).
#[test]
fn every_recurrence_trains_to_the_same_bits_on_cuda() {
    match CudaDevice::new(0) {
        Ok(dev) => {
            drop(dev);
            let paths = [LstmPath::PerStep, LstmPath::Cluster];
            every_path_trains_to_the_same_bits(Backend::Cuda, 256, &paths);
        }
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

/// The path is part of the captured step's key: steps on the persistent
/// kernels, then on the cluster kernels after a change between steps, give
/// the bits of steps that never changed, and the change captured a new graph.
#[test]
fn a_path_changed_between_steps_is_captured_anew() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let hy = hyper(2, 0.25);
    let run = |switch: Option<LstmPath>| {
        let params = init_stacked(corpus.vocab().len(), hy.hidden, hy.layers, 3);
        let ms = params.zeros_like();
        let mut e = GpuEngine::new(SimDevice::new(4), Backend::Sim, &corpus, &hy, params, ms)
            .expect("engine");
        let order: Vec<u32> = (0..7 * hy.batch as u32).map(|i| i * 5 % 400).collect();
        e.begin_epoch(&order, 0).expect("epoch");
        for step in 0..6 {
            if step == 3
                && let Some(path) = switch
            {
                e.set_lstm_path(path).expect("path");
            }
            e.queue_train(Batch::Next(hy.batch)).expect("step");
        }
        let losses = e.collect_losses().expect("losses");
        let _ = e.device().take_kernel_counts(); // the first six steps
        e.queue_train(Batch::Next(hy.batch)).expect("step");
        let counts = e.device().take_kernel_counts();
        let launched = |prefix: &str| -> u64 {
            let named = counts.iter().filter(|k| k.kernel.starts_with(prefix));
            named.map(|k| k.launches).sum()
        };
        let (persistent, cluster) = (launched("lstm_persistent"), launched("lstm_cluster"));
        let more = e.collect_losses().expect("losses");
        let stats = e.graph_stats();
        (
            [losses, more].concat(),
            bits(&e.params().expect("params")),
            stats,
            (persistent, cluster),
        )
    };
    let (kept, switched) = (run(None), run(Some(LstmPath::Cluster)));
    assert_eq!(kept.0, switched.0, "losses");
    assert_eq!(kept.1, switched.1, "weights");
    assert_eq!(kept.2.captures, 1, "{:?}", kept.2);
    assert_eq!(switched.2.captures, 2, "{:?}", switched.2);
    // Which kernels ran the last step: H = 64 fits the
    // persistent kernels, which `Auto` chose; two layers, forward and
    // backward, are four launches a step.
    assert_eq!(kept.3, (4, 0), "persistent, cluster launches (auto)");
    assert_eq!(switched.3, (0, 4), "persistent, cluster launches (cluster)");
}

fn says(msg: &str, wants: &[&str]) {
    for want in wants {
        assert!(msg.contains(want), "{want:?} not in: {msg}");
    }
}

/// The refusals: named by the flag, saying why and what to do instead,
/// when the run is built (not at its first step).
#[test]
fn a_path_that_cannot_run_the_job_is_refused_when_the_run_is_built() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let build = |backend: Backend, hidden: usize, path: LstmPath| {
        let hy = Hyper {
            hidden,
            ..hyper(1, 0.0)
        };
        match Trainer::builder(&corpus)
            .hyper(hy)
            .backend(backend)
            .lstm_path(path)
            .build()
        {
            Ok(_) => panic!("{backend} H = {hidden} {path}: built"),
            Err(e) => e.to_string(),
        }
    };
    let cpu = build(Backend::Cpu, 64, LstmPath::Cluster);
    says(
        &cpu,
        &[
            "--recurrence",
            "cluster",
            "cpu",
            "auto",
            "--device cuda or sim",
        ],
    );
    if !common::kernels() {
        return;
    }
    let h32 = build(Backend::Sim, 32, LstmPath::Cluster);
    says(
        &h32,
        &[
            "--recurrence",
            "cluster cannot run",
            "H = 32",
            "multiple of 64",
            "auto runs",
        ],
    );
    let h512 = build(Backend::Sim, 512, LstmPath::Persistent);
    says(
        &h512,
        &["persistent cannot run", "lstm_persistent", "H = 512"],
    );
    // Auto and per-step run any shape the kernels take.
    for path in [LstmPath::Auto, LstmPath::PerStep] {
        let hy = Hyper {
            hidden: 32,
            ..hyper(1, 0.0)
        };
        Trainer::builder(&corpus)
            .hyper(hy)
            .backend(Backend::Sim)
            .lstm_path(path)
            .build()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn the_names_parse_and_print_back() {
    for path in LstmPath::ALL {
        assert_eq!(path.name().parse::<LstmPath>().expect("parses"), path);
    }
    let bad = "clusters".parse::<LstmPath>().expect_err("refused");
    let msg = bad.to_string();
    assert!(
        msg.contains("--recurrence") && msg.contains("per-step"),
        "{msg}"
    );
}

/// A tiny train command; `extra` adds flags, and `--gen-length` when it
/// has none (samples on the simulator cost seconds).
fn cli_train(d: &Dir, extra: &[&str]) -> Vec<String> {
    let text = d.write("t.txt", small_text().as_bytes());
    let mut args: Vec<String> = [
        "train",
        "--corpus",
        &text,
        "--out",
        &d.s("run"),
        "--hidden",
        "64",
        "--maxlen",
        "6",
        "--batch-size",
        "4",
        "--steps-per-epoch",
        "2",
        "--epochs",
        "1",
        "--quiet",
    ]
    .map(String::from)
    .into();
    args.extend(extra.iter().map(|s| s.to_string()));
    if !extra.contains(&"--gen-length") {
        args.extend(["--gen-length", "0"].map(String::from));
    }
    args
}

#[test]
fn train_takes_the_flag_and_the_config_key() {
    let d = Dir::new();
    let args = cli_train(&d, &["--device", "cpu", "--recurrence", "cluster"]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success(), "cluster on the cpu succeeded");
    let err = stderr(&o);
    assert!(
        err.contains("--recurrence") && err.contains("--device cuda or sim"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.path("run").exists(), "a refused run wrote its directory");

    let args = cli_train(&d, &["--device", "cpu", "--recurrence", "fast"]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("fast") && err.contains("per-step, persistent, cluster"),
        "{err}"
    );

    // From a config file: the same refusal, so the key was read.
    let config = d.write("run.toml", b"recurrence = \"persistent\"\n");
    let args = cli_train(&d, &["--device", "cpu", "--config", &config]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !o.status.success(),
        "persistent from the config file on the cpu succeeded"
    );
    assert!(
        stderr(&o).contains("persistent chooses device kernels"),
        "{}",
        stderr(&o)
    );

    // auto on the cpu is the default spelled out.
    let args = cli_train(&d, &["--device", "cpu", "--recurrence", "auto"]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    if !common::kernels() {
        return;
    }
    // A stack on the cluster kernels, its after-epoch samples (window
    // mode: the device's predict, on the same path) included.
    let d = Dir::new();
    let args = cli_train(
        &d,
        &[
            "--device",
            "sim",
            "--recurrence",
            "cluster",
            "--layers",
            "2",
            "--gen-length",
            "3",
            "--temperatures",
            "0.5",
        ],
    );
    let o = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&o);
    assert!(
        out.contains("epoch 1/1") && out.contains("temperature: 0.5"),
        "{out}"
    );
}

/// `bench --recurrence`: the cpu row runs its one recurrence, a device row
/// the path asked for, or says why it cannot (an unavailable row, not a
/// failed command); the JSON and the table name the path.
#[test]
fn bench_applies_the_path_to_its_device_rows() {
    let d = Dir::new();
    let text = d.write("t.txt", small_text().as_bytes());
    let mut args = vec![
        "bench",
        "--corpus",
        &text,
        "--hidden",
        "32",
        "--batch-size",
        "4",
        "--maxlen",
        "6",
        "--steps",
        "1",
        "--slice-batches",
        "1",
        "--gen-length",
        "2",
        "--temperatures",
        "1.0",
        "--recurrence",
        "cluster",
        "--device",
    ];
    args.push(if common::kernels() { "cpu,sim" } else { "cpu" });
    let o = ok(&args);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(json["config"]["recurrence"], "cluster");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["backend"], "cpu");
    assert_eq!(rows[0]["available"], true, "{}", rows[0]);
    if common::kernels() {
        // H = 32 is not a multiple of 64: the sim row says so.
        assert_eq!(rows[1]["available"], false, "{}", rows[1]);
        let note = rows[1]["note"].as_str().expect("note");
        assert!(
            note.contains("lstm_cluster") && note.contains("64"),
            "{note}"
        );
    }
    assert!(
        stderr(&o).contains("recurrence cluster on the devices"),
        "{}",
        stderr(&o)
    );
}

/// `CHARLSTM_NO_CLUSTERS` (what the GPU check sets when the cluster
/// kernels hang) on the simulator, as on a GPU: the device reports no
/// clusters, so the selftest leaves the cluster rows out and says so, and
/// `--recurrence cluster` is refused at once, naming the variable.
#[test]
fn no_clusters_turns_the_cluster_kernels_off_and_says_so() {
    if !common::kernels() {
        return;
    }
    let selftest = |off: bool| {
        let mut c = common::cli::bin();
        c.args(["selftest", "--device", "sim", "--seed", "3", "--json"]);
        if off {
            c.env("CHARLSTM_NO_CLUSTERS", "1");
        }
        let o = c.output().expect("the binary starts");
        assert!(o.status.success(), "{}", stderr(&o));
        let json: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
        let cluster_rows = json["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["kernel"].as_str().is_some_and(|k| k.contains("cluster")))
            .count();
        (json["clusters"].clone(), cluster_rows, stderr(&o))
    };
    let (on, off) = (selftest(false), selftest(true));
    assert_eq!(on.0, true);
    assert!(on.1 >= 6, "{} cluster rows with clusters on", on.1);
    assert!(!on.2.contains("runs no thread-block clusters"), "{}", on.2);
    assert_eq!(off.0, false);
    assert_eq!(off.1, 0, "cluster rows with CHARLSTM_NO_CLUSTERS set");
    says(
        &off.2,
        &[
            "runs no thread-block clusters",
            "CHARLSTM_NO_CLUSTERS",
            "left out",
        ],
    );

    let d = Dir::new();
    let args = cli_train(&d, &["--device", "sim", "--recurrence", "cluster"]);
    let o = common::cli::bin()
        .args(&args)
        .env("CHARLSTM_NO_CLUSTERS", "1")
        .output()
        .expect("the binary starts");
    assert!(
        !o.status.success(),
        "cluster with CHARLSTM_NO_CLUSTERS succeeded"
    );
    says(
        &stderr(&o),
        &["--recurrence", "CHARLSTM_NO_CLUSTERS", "auto runs"],
    );
}
