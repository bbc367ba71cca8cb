//! The validation split of issue 18: the last `--val-fraction` of the text
//! held out (no window crosses the cut), its loss after every epoch in
//! `metrics.jsonl`, the console, the chart and the report,
//! `best.safetensors`, `--patience`, a resume that stops where an
//! uninterrupted run stops, the simulator's validation loss against the
//! CPU's, and a clear error for every bad setting. Small texts of its own.

mod common;
use common::cli::{Dir, ok, run, small_text, stderr, stdout, tensors};

use std::path::Path;
use std::sync::{Arc, Mutex};

use charlstm_cuda::corpus::{Split, epoch_order};
use charlstm_cuda::engine::Batch;
use charlstm_cuda::model::{Checkpoint, Hyper, Params, TrainState, init_params};
use charlstm_cuda::rundir::{BEST_CHECKPOINT, LAST_CHECKPOINT, epoch_checkpoint_name};
use charlstm_cuda::train::{Control, DivergenceGuard, Observer, OnDivergence, RollbackEvent};
use charlstm_cuda::{
    Backend, Device, Engine, EpochRow, Error, OneHotCorpus, Result, Silent, TrainConfig, Trainer,
    Windows,
};

/// Words, then a held-out part of the same words with a `z` after half of
/// them; the training part has one `z`, at its very end, so `z` is in the
/// vocabulary and a model learns it (nearly) never comes. The validation
/// loss falls while the words are learnt, then rises as `z` becomes
/// ever less likely: a model that overfits, on purpose. 22% held out puts
/// the cut just before that `z`.
fn turning_text() -> String {
    let words = [
        "the", "will", "to", "power", "is", "truth", "and", "of", "a", "spirit", "free", "good",
        "evil",
    ];
    let mut x: u32 = 7;
    let mut next = |n: usize| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 16) as usize % n
    };
    let mut text = String::new();
    for _ in 0..1300 {
        text.push_str(words[next(words.len())]);
        text.push(' ');
    }
    text.push('z');
    for i in 0..300 {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(words[next(words.len())]);
        if next(2) == 0 {
            text.push('z');
        }
    }
    text
}

/// A small, fast model that overfits `turning_text` within a few epochs.
const SHAPE: &[&str] = &[
    "--maxlen",
    "10",
    "--step",
    "1",
    "--hidden",
    "32",
    "--batch-size",
    "32",
    "--steps-per-epoch",
    "40",
    "--gen-length",
    "0",
    "--device",
    "cpu",
    "--quiet",
];

fn hyper(epochs: usize) -> Hyper {
    Hyper {
        maxlen: 10,
        step: 1,
        hidden: 32,
        batch: 32,
        epochs,
        ..Hyper::default()
    }
}

fn config(out: Option<&Path>) -> TrainConfig {
    TrainConfig {
        steps_per_epoch: Some(40),
        gen_length: 0,
        out: out.map(Path::to_path_buf),
        val_fraction: 0.22,
        patience: Some(3),
        ..TrainConfig::default()
    }
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn windows_never_cross_the_split() {
    for rows in [200usize, 1000, 7207] {
        for fraction in [0.0, 0.05, 0.1, 0.22, 0.5, 0.9] {
            for (maxlen, step) in [(10, 1), (10, 3), (60, 3), (7, 5)] {
                let at = format!("rows {rows}, fraction {fraction}, maxlen {maxlen}, step {step}");
                let split = Split::new(rows, fraction).expect("a fraction in [0, 1)");
                // Keras' cut: split_at = int(n * (1 - f)).
                assert_eq!(
                    split.train_rows,
                    (rows as f64 * (1.0 - fraction)) as usize,
                    "{at}"
                );
                assert_eq!(split.train_rows + split.held_out(), rows, "{at}");
                if let Ok(w) = split.train_windows(maxlen, step) {
                    // Every target inside; the next window would cross.
                    assert!(w.target(w.count - 1) < split.train_rows, "{at}");
                    assert!(w.target(w.count) >= split.train_rows, "{at}");
                    let order = epoch_order(&w, 42, 0);
                    assert!(
                        order
                            .iter()
                            .all(|&s| s as usize + maxlen < split.train_rows),
                        "{at}"
                    );
                }
                if fraction == 0.0 {
                    assert_eq!(split.train_rows, rows, "{at}");
                    assert_eq!(
                        split.train_windows(maxlen, step).ok(),
                        Windows::new(rows, maxlen, step).ok(),
                        "{at}"
                    );
                }
                if split.held_out() <= maxlen {
                    continue;
                }
                let val = split.validation_starts(maxlen, step).expect("starts");
                let (first, last) = (val[0] as usize, *val.last().expect("one") as usize);
                // From the first held-out row, `step` apart, every target
                // inside, and the last window the last that fits.
                assert_eq!(first, split.train_rows, "{at}");
                assert!(val.windows(2).all(|p| p[1] - p[0] == step as u32), "{at}");
                assert!(last + maxlen < rows, "{at}");
                assert!(last + step + maxlen >= rows, "{at}");
            }
        }
    }
    assert!(
        Split::new(100, 0.0)
            .expect("0")
            .validation_starts(10, 1)
            .expect("none")
            .is_empty()
    );
}

/// What an engine was given: starts to train on, starts to evaluate.
#[derive(Default)]
struct Seen {
    trained: Vec<u32>,
    evaluated: Vec<u32>,
}

/// An engine that tells `seen` every start it is given.
struct Recorder<'c> {
    inner: Box<dyn Engine + 'c>,
    seen: Arc<Mutex<Seen>>,
}

impl Recorder<'_> {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("not poisoned")
    }
}

impl Engine for Recorder<'_> {
    pass_on_to_inner!();
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.seen().trained.extend_from_slice(order);
        self.inner.begin_epoch(order, position)
    }
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        if let Batch::Starts(s) = batch {
            self.seen().trained.extend_from_slice(s);
        }
        self.inner.queue_train(batch)
    }
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.seen().evaluated.extend_from_slice(starts);
        self.inner.eval_batch(starts)
    }
}

#[derive(Default)]
struct Rows(Vec<EpochRow>);
impl Observer for Rows {
    fn on_epoch(&mut self, e: &EpochRow) -> Control {
        self.0.push(e.clone());
        Control::Continue
    }
}

/// What the trainer hands its engine: training windows from the training
/// text only, and after each epoch every validation window (nothing else)
/// to evaluate, in text order; the after-epoch samples' seed comes from
/// the training text.
#[test]
fn training_sees_only_training_windows_and_validation_every_held_out_one() {
    let text = turning_text();
    let corpus = OneHotCorpus::from_text(&text, true).expect("corpus");
    let h = hyper(2);
    let params = init_params(corpus.vocab().len(), h.hidden, h.seed);
    let zeros = Params::zeros(params.vocab, params.hidden);
    let (inner, _) = Device::Exact(Backend::Cpu)
        .open_engine(&corpus, &h, params, zeros)
        .expect("engine");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = Recorder {
        inner,
        seen: Arc::clone(&seen),
    };
    let mut t = Trainer::builder(&corpus)
        .hyper(h.clone())
        .config(TrainConfig {
            gen_length: 5,
            ..config(None)
        })
        .engine(Box::new(recorder), TrainState::default())
        .build()
        .expect("trainer");
    let split = t.split();
    assert!(split.held_out() > 0 && split.train_rows < text.len());
    let mut rows = Rows::default();
    t.run(&mut rows).expect("two epochs");
    let val = split.validation_starts(h.maxlen, h.step).expect("starts");
    assert_eq!(t.validation_windows(), val.len());
    let seen = seen.lock().expect("not poisoned");
    assert!(!seen.trained.is_empty());
    assert!(
        seen.trained
            .iter()
            .all(|&s| s as usize + h.maxlen < split.train_rows),
        "a training window crosses into the held-out text"
    );
    // Both epochs, all of them, in text order, nothing else.
    assert_eq!(seen.evaluated, [val.clone(), val].concat());
    for r in &rows.0 {
        let seed = &r.samples[0].seed;
        assert!(text[..split.train_rows].contains(seed.as_str()), "{seed:?}");
        assert!(r.val_loss.is_some_and(f64::is_finite), "{r:?}");
    }
}

/// `--patience 3` on a text whose validation loss falls, then rises: the
/// run stops 3 epochs after the lowest, says so, and `best.safetensors` is
/// that epoch's checkpoint; `metrics.jsonl`, the console, the chart and
/// the report carry the validation loss; a resume trains nothing more.
#[test]
fn patience_stops_where_the_validation_loss_turns_up_and_best_is_that_epoch() {
    let d = Dir::new();
    let text = d.write("t.txt", turning_text().as_bytes());
    let out = d.path("run");
    let out_s = d.s("run");
    let mut args = vec![
        "train", "--corpus", &text, "--out", &out_s, "--epochs", "15",
    ];
    args.extend_from_slice(SHAPE);
    args.extend_from_slice(&["--val-fraction", "0.22", "--patience", "3"]);
    let o = ok(&args);
    let (printed, said) = (stdout(&o), stderr(&o));
    println!("{printed}{said}");

    let rows = metrics(&out);
    let val: Vec<f64> = rows
        .iter()
        .map(|r| r["val_loss"].as_f64().expect("val_loss in every row"))
        .collect();
    // The earliest lowest, as patience counts it.
    let best = 1 + (0..val.len()).fold(0, |b, i| if val[i] < val[b] { i } else { b });
    assert!(best >= 2, "the loss fell before it rose: {val:?}");
    assert_eq!(
        rows.len(),
        best + 3,
        "stopped 3 epochs after the best: {val:?}"
    );
    assert!(rows.len() < 15);
    for (i, r) in rows.iter().enumerate() {
        let epoch = i + 1;
        let best_so_far = 1 + (0..=i).fold(0, |b, j| if val[j] < val[b] { j } else { b });
        assert_eq!(r["best_epoch"].as_u64(), Some(best_so_far as u64), "{r}");
        let last = epoch == rows.len();
        assert_eq!(r["early_stop"].as_bool(), last.then_some(true), "{r}");
        let line = format!(
            "epoch {epoch}/15: loss {:.4}, val_loss {:.4}",
            r["loss"].as_f64().unwrap(),
            val[i]
        );
        assert!(printed.contains(&line), "{line} not printed: {printed}");
    }
    assert!(printed.contains(&format!("val_loss {:.4} (best)", val[best - 1])));
    assert!(
        said.contains(&format!(
            "stopped early after epoch {}: no new best validation loss for 3 epochs (the best, {:.4}, was epoch {best}'s)",
            best + 3,
            val[best - 1]
        )) && said.contains("best.safetensors"),
        "{said}"
    );

    // best.safetensors is the best epoch's checkpoint, all of it; the
    // state carries every validation loss, which a resume goes on from.
    let best_ckpt = Checkpoint::load(&out.join(BEST_CHECKPOINT)).expect("best.safetensors");
    let epoch_ckpt = Checkpoint::load(&out.join(epoch_checkpoint_name(best))).expect("epoch");
    assert_eq!(best_ckpt, epoch_ckpt);
    assert_eq!(best_ckpt.state.epochs_done, best);
    let last = Checkpoint::load(&out.join(LAST_CHECKPOINT)).expect("last");
    assert_eq!(last.state.val_losses, val);
    assert_ne!(
        tensors(&out.join(BEST_CHECKPOINT)),
        tensors(&out.join(LAST_CHECKPOINT))
    );

    // `inspect` tells the split, the patience and every validation loss.
    let last_path = out.join(LAST_CHECKPOINT);
    let table = stdout(&ok(&["inspect", last_path.to_str().unwrap()]));
    let losses: Vec<String> = val.iter().map(|v| format!("{v:.4}")).collect();
    for want in [
        "the last 0.22 of the text held out; stops after 3 epochs without a new best".to_string(),
        format!("validation losses {}", losses.join(" ")),
        format!(
            "best validation loss {:.4} at epoch {best} (best.safetensors)",
            val[best - 1]
        ),
    ] {
        assert!(table.contains(&want), "no {want:?} in:\n{table}");
    }

    // The chart's second line and its points; the report's rows.
    let svg = std::fs::read_to_string(out.join("loss.svg")).expect("loss.svg");
    assert!(svg.contains("validation loss") && svg.contains("class=\"val-losses\""));
    for v in &val {
        assert!(svg.contains(&format!("data-val-loss=\"{v:.4}\"")), "{v}");
    }
    ok(&["report", "--out", &out_s]);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(html.contains("<th>val_loss</th>"), "{html}");
    assert!(html.contains(&format!(
        "{:.4} (epoch {best}, in best.safetensors)",
        val[best - 1]
    )));
    assert!(html.contains("stopped early") && html.contains(&format!("after epoch {}", best + 3)));

    // Patience has run out: a resume trains nothing and says so again.
    let o = ok(&["train", "--resume", "--out", &out_s, "--quiet"]);
    assert!(
        stderr(&o).contains("stopped early after epoch"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--patience 6"), "{}", stderr(&o));
    assert_eq!(metrics(&out).len(), rows.len());
}

/// A run cut after the best epoch, while patience counts, and resumed,
/// stops after the same epoch with the same best and last weights as one
/// never cut: the best loss and the epochs since it live in the checkpoint.
#[test]
fn a_resumed_run_stops_where_an_uninterrupted_one_does() {
    let corpus = OneHotCorpus::from_text(&turning_text(), true).expect("corpus");
    let d = Dir::new();
    let (full, cut) = (d.path("full"), d.path("cut"));
    let train = |out: &Path, epochs: usize, resume: Option<Checkpoint>| {
        let b = Trainer::builder(&corpus)
            .hyper(hyper(epochs))
            .config(config(Some(out)))
            .backend(Backend::Cpu);
        let b = match resume {
            Some(c) => b.resume(c),
            None => b,
        };
        b.build().expect("trainer").run(&mut Silent).expect("run")
    };
    let whole = train(&full, 15, None);
    let early = whole.early_stop.clone().expect("patience ends the run");
    println!("{early}");
    assert!(!whole.stopped);
    assert_eq!(early.epoch, early.best_epoch + 3);

    // Cut one epoch after the best: one epoch of patience spent.
    let part = train(&cut, early.best_epoch + 1, None);
    assert!(part.early_stop.is_none());
    let saved = Checkpoint::load(&cut.join(LAST_CHECKPOINT)).expect("last");
    assert_eq!(saved.state.epochs_since_best(), Some(1));
    let resumed = train(&cut, 15, Some(saved));
    assert_eq!(resumed.early_stop, whole.early_stop);
    assert_eq!(resumed.state, whole.state);
    for f in [LAST_CHECKPOINT, BEST_CHECKPOINT] {
        assert_eq!(tensors(&full.join(f)), tensors(&cut.join(f)), "{f}");
    }
}

/// The validation loss on `--device sim` (the kernels on the PTX
/// simulator) against the CPU's, at the start and after each of two short
/// epochs, within the bound the project uses for sim-vs-CPU losses
/// (tests/gpu_engine.rs: `1e-5 max|ref| + 1e-4 |ref|`).
#[test]
fn the_validation_loss_on_the_simulator_equals_the_cpus() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&small_text(), true).expect("corpus");
    let h = Hyper {
        maxlen: 8,
        step: 3,
        hidden: 16,
        batch: 16,
        epochs: 2,
        ..Hyper::default()
    };
    // About 40 validation windows: three batches, the last one partial.
    let fraction = 130.0 / corpus.rows() as f64;
    let losses = |backend: Backend| {
        let mut t = Trainer::builder(&corpus)
            .hyper(h.clone())
            .config(TrainConfig {
                steps_per_epoch: Some(2),
                gen_length: 0,
                val_fraction: fraction,
                ..TrainConfig::default()
            })
            .backend(backend)
            .build()
            .expect("trainer");
        assert_ne!(t.validation_windows() % h.batch, 0, "a partial last batch");
        let before = t.validation_loss().expect("loss").expect("a split");
        let mut rows = Rows::default();
        t.run(&mut rows).expect("two epochs");
        let mut all = vec![before];
        all.extend(rows.0.iter().map(|r| r.val_loss.expect("val_loss")));
        all
    };
    let (cpu, sim) = (losses(Backend::Cpu), losses(Backend::Sim));
    println!("cpu {cpu:?}\nsim {sim:?}");
    assert_eq!(cpu.len(), 3);
    for (s, c) in sim.iter().zip(&cpu) {
        assert!(
            (s - c).abs() <= 1e-5 * c.abs() + 1e-4 * c.abs(),
            "sim {s} vs cpu {c}"
        );
    }
}

/// Fails with exit 1, one error line with `needle` and one hint line with
/// `hint`, and writes nothing.
fn refused(args: &[&str], out: &Path, needle: &str, hint: &str) {
    let before = out.exists().then(|| common::cli::snapshot(out));
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.matches("error: ").count(), 1, "{err}");
    assert!(err.contains(needle), "{args:?}: no {needle:?} in {err}");
    let hint_line = err
        .lines()
        .find(|l| l.contains("hint: "))
        .unwrap_or_default();
    assert!(hint_line.contains(hint), "{args:?}: no {hint:?} in {err}");
    assert_eq!(
        before,
        out.exists().then(|| common::cli::snapshot(out)),
        "a refused run writes nothing"
    );
}

#[test]
fn every_bad_setting_is_refused_with_its_fix() {
    let d = Dir::new();
    let text = d.write("t.txt", turning_text().as_bytes());
    let out = d.path("run");
    let out_s = d.s("run");
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--corpus", &text, "--out", &out_s, "--epochs", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(SHAPE.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let refuse = |extra: &[&str], needle: &str, hint: &str| {
        let a = with(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&a, &out, needle, hint);
    };
    let range = "--val-fraction 0.1";
    for (f, shown) in [("1", "1"), ("-0.5", "-0.5"), ("nan", "NaN"), ("inf", "inf")] {
        refuse(
            &["--val-fraction", f],
            &format!(
                "invalid value for --val-fraction: {shown} (the fraction of the text held out \
                 must be at least 0 and below 1)"
            ),
            range,
        );
    }
    // 7,311 characters; a batch of 32 windows of 10, step 1, needs 42.
    refuse(
        &["--val-fraction", "0.001"],
        "--val-fraction: 0.001 holds out 8 characters, fewer than one batch of 32 windows needs \
         (maxlen + (batch - 1) x step + 1 = 42); on this text of",
        range,
    );
    refuse(
        &["--val-fraction", "0.999"],
        "--val-fraction: 0.999 leaves 7 characters to train on, fewer than one batch",
        range,
    );
    let big = [
        "train",
        "--corpus",
        &text,
        "--out",
        &out_s,
        "--batch-size",
        "4000",
        "--val-fraction",
        "0.5",
    ];
    refused(
        &big,
        &out,
        "too short to split",
        "or use a smaller --batch-size",
    );
    refuse(
        &["--patience", "3"],
        "--patience 3 stops a run after 3 epochs without a new best validation loss, but this \
         run holds no text out for validation",
        "add --val-fraction, e.g. --val-fraction 0.1, or drop --patience",
    );
    refuse(
        &["--patience", "0", "--val-fraction", "0.2"],
        "invalid value for --patience: 0",
        "e.g. --patience 5",
    );
    // The same from a --config file, whose keys are the flags'.
    let toml = d.write("run.toml", b"val_fraction = 1.5\npatience = 2\n");
    refuse(
        &["--config", &toml],
        "invalid value for --val-fraction: 1.5",
        range,
    );
    // A run with a split keeps it; one without cannot watch a validation loss.
    let a = with(&["--val-fraction", "0.22"]);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // A resume of `out` with `extra` flags, to three epochs.
    let resume = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut a = vec!["train", "--resume", "--out", out, "--epochs", "3"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    let refuse_resume = |out: &str, extra: &[&str], needle: &str, hint: &str| {
        let a = resume(out, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&a, Path::new(out), needle, hint);
    };
    refuse_resume(
        &out_s,
        &["--val-fraction", "0.3"],
        "cannot resume: --val-fraction 0.3 differs from the run's 0.22",
        "drop --val-fraction",
    );
    let plain = d.s("plain");
    let mut a = vec!["train", "--corpus", &text, "--out", &plain, "--epochs", "1"];
    a.extend_from_slice(SHAPE);
    ok(&a);
    refuse_resume(
        &plain,
        &["--patience", "2"],
        "holds no text out for validation",
        "drop --patience: the run was started without --val-fraction",
    );
    refuse_resume(
        &plain,
        &["--val-fraction", "0.2"],
        "differs from the run's (none",
        "drop --val-fraction",
    );

    // The library names its fields.
    let corpus = OneHotCorpus::from_text(&turning_text(), true).expect("corpus");
    let build = |config: TrainConfig| {
        Trainer::builder(&corpus)
            .hyper(hyper(1))
            .config(config)
            .backend(Backend::Cpu)
            .build()
            .err()
            .expect("refused")
    };
    let e = build(TrainConfig {
        patience: Some(2),
        ..TrainConfig::default()
    });
    assert!(
        matches!(e, Error::InvalidArgument { name: "config.patience", ref what } if what.contains("config.val_fraction")),
        "{e}"
    );
    let e = build(TrainConfig {
        val_fraction: 1.0,
        ..TrainConfig::default()
    });
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                name: "config.val_fraction",
                ..
            }
        ),
        "{e}"
    );
    let saved = Checkpoint::load(&out.join(LAST_CHECKPOINT)).expect("the run's");
    let e = Trainer::builder(&corpus)
        .resume(saved)
        .config(TrainConfig {
            val_fraction: 0.3,
            ..config(None)
        })
        .backend(Backend::Cpu)
        .build()
        .err()
        .expect("refused");
    assert!(
        matches!(e, Error::Resume { ref fix, .. } if fix.contains("config.val_fraction = 0.22")),
        "{e}"
    );
}

/// Without `--val-fraction` (or with 0) a run is what it always was: no
/// validation in the console, `metrics.jsonl` or the checkpoint's state, no
/// `best.safetensors`, and the same weights either way.
#[test]
fn without_a_split_nothing_changes() {
    let d = Dir::new();
    let text = d.write("t.txt", turning_text().as_bytes());
    let train = |name: &str, extra: &[&str]| {
        let out = d.s(name);
        let mut a = vec!["train", "--corpus", &text, "--out", &out, "--epochs", "2"];
        a.extend_from_slice(SHAPE);
        a.extend_from_slice(extra);
        ok(&a)
    };
    let o = train("plain", &[]);
    train("zero", &["--val-fraction", "0"]);
    let out = d.path("plain");
    assert!(!stdout(&o).contains("val_loss"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("best.safetensors") && !stderr(&o).contains("held out"));
    assert!(!out.join(BEST_CHECKPOINT).exists());
    let m = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert!(!m.contains("val_loss") && !m.contains("best_epoch") && !m.contains("early_stop"));
    let meta = charlstm_cuda::io::safetensors_metadata(&out.join(LAST_CHECKPOINT)).expect("meta");
    assert!(
        !meta["state"]
            .as_str()
            .expect("state")
            .contains("val_losses")
    );
    assert!(!meta["run"].as_str().expect("run").contains("val_fraction"));
    for f in [LAST_CHECKPOINT, "epoch-001.safetensors"] {
        assert_eq!(
            tensors(&out.join(f)),
            tensors(&d.path("zero").join(f)),
            "{f}"
        );
    }
}

#[derive(Default)]
struct Rollbacks(Vec<RollbackEvent>);
impl Observer for Rollbacks {
    fn on_rollback(&mut self, e: &RollbackEvent) {
        self.0.push(e.clone());
    }
}

/// With a split the divergence guard judges the validation loss: on the
/// text where it turns up while the training loss still falls, a factor of
/// 1.2 stops the run naming the validation loss and the best-validation
/// epoch, and `rollback` returns to that epoch.
#[test]
fn the_divergence_guard_watches_the_validation_loss() {
    let corpus = OneHotCorpus::from_text(&turning_text(), true).expect("corpus");
    let guarded = |action: OnDivergence| TrainConfig {
        patience: None,
        divergence: Some(DivergenceGuard {
            factor: 1.2,
            action,
            max_rollbacks: 1,
        }),
        ..config(None)
    };
    let trainer = |config: TrainConfig| {
        Trainer::builder(&corpus)
            .hyper(hyper(15))
            .config(config)
            .backend(Backend::Cpu)
            .build()
            .expect("trainer")
    };
    let mut rows = Rows::default();
    let e = trainer(guarded(OnDivergence::Stop))
        .run(&mut rows)
        .expect_err("the validation loss jumps");
    let val: Vec<f64> = rows
        .0
        .iter()
        .map(|r| r.val_loss.expect("val_loss"))
        .collect();
    let loss: Vec<f64> = rows.0.iter().map(|r| r.loss).collect();
    println!("{e}\nloss {loss:?}\nval_loss {val:?}");
    let best = 1 + (0..val.len()).fold(0, |b, i| if val[i] < val[b] { i } else { b });
    let epoch = val.len() + 1;
    assert!(
        matches!(&e, Error::Diverged { what } if what.starts_with(&format!(
            "epoch {epoch} validation loss "
        )) && what.contains(&format!("above epoch {best}'s {:.4}", val[best - 1]))),
        "{e}"
    );
    // Not the training loss: it was still falling.
    assert!(loss[best - 1] > *loss.last().expect("an epoch"), "{loss:?}");

    let mut rollbacks = Rollbacks::default();
    let _ = trainer(guarded(OnDivergence::Rollback)).run(&mut rollbacks);
    let first = rollbacks.0.first().expect("a rollback");
    assert_eq!(first.to_epoch, best, "{}", first.cause);
    assert!(first.cause.to_string().contains("validation loss"));
}
