//! Stream training (`--mode stream`, issue 18) through the trainer and the
//! command line: the batches the trainer hands the engine (inside the
//! training text, the state carried within an epoch and reset at its
//! start, a new offset each epoch), a run stopped inside an epoch and
//! resumed equal to one never stopped, bit for bit, and a clear error for
//! every bad setting.

mod common;
use common::cli::{Dir, ok, run, stderr, tensors};

use std::path::Path;
use std::sync::{Arc, Mutex};

use charlstm_cuda::engine::{Batch, StreamBatch};
use charlstm_cuda::model::{Checkpoint, Hyper, TrainMode};
use charlstm_cuda::rundir::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use charlstm_cuda::train::{BatchEvent, Control, Observer};
use charlstm_cuda::{Backend, Engine, OneHotCorpus, Result, Silent, Streams, TrainConfig, Trainer};

/// About 9,000 characters of words.
fn text() -> String {
    let words = [
        "the ", "will ", "to ", "power ", "is ", "not ", "what ", "we, ", "free ", "spirit ",
    ];
    (0..1800)
        .map(|i| words[(i * 7 + i / 5 + i / 13) % words.len()])
        .collect()
}

const SEQ_LEN: usize = 12;

fn hyper(epochs: usize) -> Hyper {
    Hyper {
        hidden: 24,
        batch: 8,
        epochs,
        ..Hyper::default()
    }
}

fn config(out: Option<&Path>) -> TrainConfig {
    TrainConfig {
        gen_length: 0,
        out: out.map(Path::to_path_buf),
        val_fraction: 0.2,
        mode: TrainMode::Stream { seq_len: SEQ_LEN },
        ..TrainConfig::default()
    }
}

/// Every stream batch's starts, L and carry, in order.
type Seen = Arc<Mutex<Vec<(Vec<u32>, usize, bool)>>>;

/// An engine that records every stream batch it is given.
struct Recorder<'c> {
    inner: Box<dyn Engine + 'c>,
    seen: Seen,
}

impl Engine for Recorder<'_> {
    pass_on_to_inner!();
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.inner.begin_epoch(order, position)
    }
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        panic!("a window batch in stream mode: {batch:?}")
    }
    fn queue_train_stream(&mut self, batch: StreamBatch<'_>) -> Result<Option<f32>> {
        let entry = (batch.starts.to_vec(), batch.seq_len, batch.carry);
        self.seen.lock().expect("not poisoned").push(entry);
        self.inner.queue_train_stream(batch)
    }
    fn stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.inner.stream_state()
    }
    fn set_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        self.inner.set_stream_state(h, c)
    }
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.inner.eval_batch(starts)
    }
}

#[test]
fn the_trainer_feeds_contiguous_streams_of_the_training_text() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let h = hyper(3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let params = charlstm_cuda::model::init_params(corpus.vocab().len(), h.hidden, h.seed);
    let zeros = charlstm_cuda::Params::zeros(params.vocab, params.hidden);
    let inner =
        Box::new(charlstm_cuda::cpu::CpuEngine::new(&corpus, &h, params, zeros).expect("engine"));
    let engine = Recorder {
        inner,
        seen: seen.clone(),
    };
    let mut trainer = Trainer::builder(&corpus)
        .hyper(h.clone())
        .config(config(None))
        .engine(Box::new(engine), Default::default())
        .build()
        .expect("trainer");
    let streams = trainer.streams().expect("stream mode");
    let train_rows = trainer.split().train_rows;
    assert_eq!(streams.length, train_rows / h.batch);
    assert_eq!(streams.batches, (streams.length - SEQ_LEN) / SEQ_LEN);
    assert_eq!(trainer.batches_per_epoch(), streams.batches);
    let summary = trainer.run(&mut Silent).expect("run");
    assert_eq!(summary.state.val_losses.len(), 3);
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), 3 * streams.batches);
    let mut offsets = Vec::new();
    for (epoch, batches) in seen.chunks(streams.batches).enumerate() {
        let offset = batches[0].0[0] as usize;
        offsets.push(offset);
        assert_eq!(offset, streams.offset(h.seed, epoch));
        for (k, (starts, l, carry)) in batches.iter().enumerate() {
            assert_eq!((*l, *carry), (SEQ_LEN, k > 0), "epoch {epoch} batch {k}");
            for (b, &s) in starts.iter().enumerate() {
                let s = s as usize;
                assert_eq!(s, b * streams.length + offset + k * SEQ_LEN);
                // Inputs and targets inside stream b, on the training side.
                assert!(s + SEQ_LEN < (b + 1) * streams.length);
                assert!(s + SEQ_LEN < train_rows);
            }
        }
    }
    assert!(offsets.windows(2).any(|w| w[0] != w[1]), "{offsets:?}");
}

/// Stops after batch `at` of epoch `epoch`.
struct StopAt {
    epoch: usize,
    at: usize,
}

impl Observer for StopAt {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        match (e.epoch, e.batch) == (self.epoch, self.at) {
            true => Control::Stop,
            false => Control::Continue,
        }
    }
}

#[test]
fn a_stream_run_stopped_inside_an_epoch_resumes_bit_for_bit() {
    stopped_and_resumed_equals_never_stopped(hyper(3));
}

/// The same with two stacked layers and dropout between them: the carried
/// state is [2, B, H] and the masks are keyed by the run's step, so the
/// resumed run still draws what the one never stopped drew.
#[test]
fn a_stacked_stream_run_with_dropout_resumes_bit_for_bit() {
    stopped_and_resumed_equals_never_stopped(Hyper {
        layers: 2,
        dropout: 0.25,
        ..hyper(3)
    });
}

fn stopped_and_resumed_equals_never_stopped(hyper: Hyper) {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let d = Dir::new();
    let (full, cut) = (d.path("full"), d.path("cut"));
    let train = |out: &Path, resume: Option<Checkpoint>, observer: &mut dyn Observer| {
        let b = Trainer::builder(&corpus)
            .hyper(hyper.clone())
            .config(config(Some(out)))
            .backend(Backend::Cpu);
        let b = match resume {
            Some(c) => b.resume(c),
            None => b,
        };
        b.build().expect("trainer").run(observer).expect("run")
    };
    let whole = train(&full, None, &mut Silent);
    assert!(!whole.stopped);

    let part = train(&cut, None, &mut StopAt { epoch: 2, at: 5 });
    assert!(part.stopped);
    let saved = Checkpoint::load(&cut.join(LAST_CHECKPOINT)).expect("last");
    assert_eq!((saved.state.epochs_done, saved.state.batch), (1, 5));
    let carried = saved
        .state
        .stream
        .clone()
        .expect("the carried state is saved");
    assert_eq!(carried.h.len(), hyper.layers * 8 * 24, "[N, B, H]");
    assert!(carried.h.iter().any(|&v| v != 0.0) && carried.c.iter().any(|&v| v != 0.0));

    // A second stop, in the resumed run, after an epoch boundary.
    let again = train(&cut, Some(saved), &mut StopAt { epoch: 3, at: 2 });
    assert!(again.stopped);
    let saved = Checkpoint::load(&cut.join(LAST_CHECKPOINT)).expect("last");
    let resumed = train(&cut, Some(saved), &mut Silent);
    assert_eq!(resumed.state, whole.state);
    for f in [LAST_CHECKPOINT, BEST_CHECKPOINT] {
        assert_eq!(tensors(&full.join(f)), tensors(&cut.join(f)), "{f}");
    }
    let batches = |d: &Path| std::fs::read_to_string(d.join("batches.jsonl")).expect("batches");
    assert_eq!(batches(&full), batches(&cut));

    // Without the carried state the resumed epoch would start from zeros:
    // the weights would differ, so the check above can fail.
    let mut saved = Checkpoint::load(&full.join("epoch-001.safetensors")).expect("epoch 1");
    saved.state.batch = 5;
    let e = Trainer::builder(&corpus)
        .hyper(hyper.clone())
        .config(config(None))
        .backend(Backend::Cpu)
        .resume(saved)
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("holds none of the"), "{e}");
}

/// The kernels' stream mode (`--device sim`: the real PTX on the
/// simulator) trains as the CPU does: the same batch losses, validation
/// loss and weights to float rounding over two epochs of carried batches
/// (the second from a new offset and a zero state).
#[test]
fn stream_mode_on_the_simulator_trains_as_the_cpu_does() {
    trains_as_the_cpu_does(Backend::Sim);
}

/// The same on a GPU (the GPU bundle runs every `*cuda*` test).
#[test]
fn stream_mode_on_cuda_trains_as_the_cpu_does() {
    match charlstm_cuda::gpu::CudaDevice::new(0) {
        Ok(dev) => {
            drop(dev);
            trains_as_the_cpu_does(Backend::Cuda);
        }
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

fn trains_as_the_cpu_does(device: Backend) {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let mut runs = Vec::new();
    for b in [Backend::Cpu, device] {
        let losses: Arc<Mutex<Vec<f32>>> = Arc::default();
        let mut watch = Losses(losses.clone());
        let mut t = Trainer::builder(&corpus)
            .hyper(hyper(2))
            .config(TrainConfig {
                steps_per_epoch: Some(3),
                ..config(None)
            })
            .backend(b)
            .build()
            .expect("trainer");
        assert_eq!(t.backend(), b);
        let summary = t.run(&mut watch).expect("run");
        let params = t.engine_mut().params().expect("params");
        let batch = losses.lock().expect("not poisoned").clone();
        runs.push((batch, summary.state.val_losses.clone(), params));
    }
    let (cpu, sim) = (&runs[0], &runs[1]);
    assert_eq!(cpu.0.len(), 6, "two epochs of three batches: {:?}", cpu.0);
    assert_eq!(cpu.0.len(), sim.0.len());
    for (i, (a, b)) in cpu.0.iter().zip(&sim.0).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "batch {i}: cpu {a}, {device} {b}"
        );
    }
    assert_eq!(cpu.1.len(), 2);
    for (a, b) in cpu.1.iter().zip(&sim.1) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "validation: cpu {a}, {device} {b}"
        );
    }
    let what = format!("stream mode, {device}");
    common::assert_weights_alike(&what, cpu.2.flat(), sim.2.flat(), hyper(2).lr);
}

/// Records the loss of every batch, in order.
struct Losses(Arc<Mutex<Vec<f32>>>);

impl Observer for Losses {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.0.lock().expect("not poisoned").push(e.loss);
        Control::Continue
    }
}

#[test]
fn stream_mode_is_refused_across_a_resume() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    // A window run resumed in stream mode (and back) is refused.
    let d = Dir::new();
    let out = d.path("w");
    let window = TrainConfig {
        mode: TrainMode::Window,
        ..config(Some(&out))
    };
    Trainer::builder(&corpus)
        .hyper(Hyper {
            maxlen: 10,
            ..hyper(1)
        })
        .config(TrainConfig {
            steps_per_epoch: Some(3),
            ..window
        })
        .backend(Backend::Cpu)
        .build()
        .expect("trainer")
        .run(&mut Silent)
        .expect("run");
    let saved = Checkpoint::load(&out.join(LAST_CHECKPOINT)).expect("last");
    let e = Trainer::builder(&corpus)
        .hyper(Hyper {
            maxlen: 10,
            ..hyper(2)
        })
        .config(TrainConfig {
            steps_per_epoch: Some(3),
            ..config(None)
        })
        .backend(Backend::Cpu)
        .resume(saved)
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("the run trains in window mode, and stream (--seq-len 12) mode is asked for"),
        "{e}"
    );
}

#[test]
fn streams_that_do_not_fit_are_refused_naming_the_stream() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let build = |seq_len: usize, val_fraction: f64| {
        Trainer::builder(&corpus)
            .hyper(hyper(1))
            .config(TrainConfig {
                val_fraction,
                mode: TrainMode::Stream { seq_len },
                ..config(None)
            })
            .backend(Backend::Cpu)
            .build()
            .err()
            .map(|e| e.to_string())
    };
    let rows = corpus.rows();
    let e = build(0, 0.2).expect("seq_len 0");
    assert!(e.contains("at least 1 step"), "{e}");
    let length = rows / 8;
    let e = build(length / 2 + 1, 0.0).expect("too long");
    assert!(
        e.contains(&format!("streams of {length} characters")) && e.contains("8 streams"),
        "{e}"
    );
    assert!(build(length / 2, 0.0).is_none());
    // Fits the whole text, not what a validation split leaves: the error
    // names the fraction.
    let e = build(length / 2, 0.2).expect("too little training text");
    assert!(e.contains("config.val_fraction: 0.2 leaves"), "{e}");
    assert!(e.contains("one batch of 8 streams"), "{e}");
    assert!(Streams::new(rows, 8, length / 2).is_ok());
}

#[test]
fn the_command_line_trains_streams_and_refuses_bad_flags() {
    let d = Dir::new();
    let corpus = d.write("t.txt", text().as_bytes());
    let out = d.s("run");
    let base = [
        "train",
        "--corpus",
        &corpus,
        "--out",
        &out,
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--gen-length",
        "0",
        "--val-fraction",
        "0.2",
        "--quiet",
    ];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    let refused = |extra: &[&'static str], needle: &str, hint: &str| {
        let o = run(&with(extra));
        let err = stderr(&o);
        // 2: clap refused the flag's value; 1: the run did.
        assert!(matches!(o.status.code(), Some(1 | 2)), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains(needle), "{extra:?}: no {needle:?} in {err}");
        assert!(err.contains(hint), "{extra:?}: no {hint:?} in {err}");
        assert!(!Path::new(&out).join(LAST_CHECKPOINT).exists());
    };
    refused(&["--mode", "streams"], "streams", "window");
    let bad_file = d.write("bad.toml", b"mode = \"streams\"\n");
    let bad_file: &'static str = Box::leak(bad_file.into_boxed_str());
    refused(&["--config", bad_file], "--mode", "--mode stream");
    let good_file = d.write("good.toml", b"mode = \"stream\"\nseq_len = 0\n");
    let good_file: &'static str = Box::leak(good_file.into_boxed_str());
    refused(&["--config", good_file], "--seq-len", "at least 1 step");
    refused(&["--seq-len", "5"], "--seq-len 5", "--mode stream");
    refused(
        &["--mode", "stream", "--seq-len", "0"],
        "--seq-len",
        "at least 1 step",
    );
    refused(
        &["--mode", "stream", "--seq-len", "5000"],
        "streams of",
        "--seq-len",
    );
    let o = ok(&with(&["--mode", "stream", "--seq-len", "10"]));
    assert!(stderr(&o).contains("8 streams of"), "{}", stderr(&o));
    let saved = Checkpoint::load(&Path::new(&out).join(LAST_CHECKPOINT)).expect("last");
    assert_eq!(
        saved.run.expect("run record").mode,
        TrainMode::Stream { seq_len: 10 }
    );
    // The resume takes the run's mode; another one is refused.
    let o = run(&[
        "train", "--resume", "--out", &out, "--epochs", "3", "--mode", "window",
    ]);
    assert!(
        stderr(&o).contains("the run trains in stream (--seq-len 10) mode"),
        "{}",
        stderr(&o)
    );
    ok(&[
        "train", "--resume", "--out", &out, "--epochs", "3", "--quiet",
    ]);
    let saved = Checkpoint::load(&Path::new(&out).join(LAST_CHECKPOINT)).expect("last");
    assert_eq!(saved.state.epochs_done, 3);
}

/// Reports NaN for its `nan_at`-th stream batch (1-based), training it all the same.
struct NanAt<'c> {
    inner: Box<dyn Engine + 'c>,
    nan_at: usize,
    calls: usize,
}

impl Engine for NanAt<'_> {
    pass_on_to_inner!();
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.inner.begin_epoch(order, position)
    }
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        self.inner.queue_train(batch)
    }
    fn queue_train_stream(&mut self, batch: StreamBatch<'_>) -> Result<Option<f32>> {
        self.calls += 1;
        let loss = self.inner.queue_train_stream(batch)?;
        Ok(loss.map(|l| {
            if self.calls == self.nan_at {
                f32::NAN
            } else {
                l
            }
        }))
    }
    fn stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.inner.stream_state()
    }
    fn set_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        self.inner.set_stream_state(h, c)
    }
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.inner.eval_batch(starts)
    }
}

/// A rollback to a point inside a stream epoch (where a resumed run
/// started) restores the state its next batch carried in: the run goes on
/// as one resumed there with half the learning rate, bit for bit.
#[test]
fn a_rollback_inside_a_stream_epoch_restores_the_carried_state() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let d = Dir::new();
    let cut = d.path("cut");
    Trainer::builder(&corpus)
        .hyper(hyper(2))
        .config(config(Some(&cut)))
        .backend(Backend::Cpu)
        .build()
        .expect("trainer")
        .run(&mut StopAt { epoch: 1, at: 4 })
        .expect("run");
    let saved = Checkpoint::load(&cut.join(LAST_CHECKPOINT)).expect("last");
    assert!(saved.state.stream.is_some());
    let guard = charlstm_cuda::train::DivergenceGuard {
        action: charlstm_cuda::train::OnDivergence::Rollback,
        ..Default::default()
    };
    let rolled = {
        let h = hyper(2);
        let inner = Box::new(
            charlstm_cuda::cpu::CpuEngine::new(
                &corpus,
                &h,
                saved.params.clone(),
                saved.rmsprop.clone(),
            )
            .expect("engine"),
        );
        let engine = NanAt {
            inner,
            nan_at: 3,
            calls: 0,
        };
        let mut t = Trainer::builder(&corpus)
            .hyper(h)
            .config(TrainConfig {
                divergence: Some(guard),
                ..config(None)
            })
            .engine(Box::new(engine), saved.state.clone())
            .build()
            .expect("trainer");
        let s = t.run(&mut Silent).expect("rolled back, then finished");
        (s.state, t.engine_mut().params().expect("params"))
    };
    let halved = {
        let mut t = Trainer::builder(&corpus)
            .hyper(Hyper {
                lr: 0.005,
                ..hyper(2)
            })
            .config(config(None))
            .backend(Backend::Cpu)
            .resume(saved)
            .build()
            .expect("trainer");
        let s = t.run(&mut Silent).expect("run");
        (s.state, t.engine_mut().params().expect("params"))
    };
    assert_eq!(rolled.0.epochs_done, 2);
    assert_eq!(rolled.1, halved.1, "weights after the rollback");
    assert_eq!(rolled.0.val_losses, halved.0.val_losses);
}
