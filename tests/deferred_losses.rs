//! The trainer's deferred loss reporting (`Engine::queue_train` /
//! `collect_losses`, read back every `LOSS_READBACK_EVERY` batches), on the
//! CPU with an engine that defers its losses like a device engine: the same
//! batches.jsonl, weights, rollbacks and errors as reporting every batch at
//! once; a stop keeps the whole read-back window and resumes exactly.

mod common;
use common::NanAt;

use charlstm_cuda::Result;
use charlstm_cuda::corpus::{OneHotCorpus, Windows};
use charlstm_cuda::engine::Batch;
use charlstm_cuda::model::{Checkpoint, Hyper, Params, TrainState, init_params};
use charlstm_cuda::rundir::LAST_CHECKPOINT;
use charlstm_cuda::train::{
    Control, DivergenceGuard, LOSS_READBACK_EVERY, Observer, OnDivergence, RollbackEvent,
    TrainConfig, Trainer,
};
use charlstm_cuda::{Backend, Device, Engine};

fn bits(p: &Params<f32>) -> Vec<u32> {
    p.tensors().concat().iter().map(|x| x.to_bits()).collect()
}

/// An engine that computes at once but reports like a device engine: every
/// loss deferred to `collect_losses`, one of them replaced by NaN.
struct Deferring<'c> {
    inner: NanAt<'c>,
    held: Vec<f32>,
}

impl<'c> Deferring<'c> {
    fn new(inner: Box<dyn Engine + 'c>, nan_at: usize) -> Self {
        let inner = NanAt {
            inner,
            step: nan_at,
            calls: 0,
        };
        Deferring {
            inner,
            held: Vec::new(),
        }
    }
}

impl Engine for Deferring<'_> {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.inner.begin_epoch(order, position)
    }
    fn train(&mut self, batch: Batch<'_>) -> Result<f32> {
        self.inner.train(batch)
    }
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        let loss = self.inner.train(batch)?;
        self.held.push(loss);
        Ok(None)
    }
    fn collect_losses(&mut self) -> Result<Vec<f32>> {
        Ok(std::mem::take(&mut self.held))
    }
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.inner.eval_batch(starts)
    }
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        self.inner.predict(x, seq_len)
    }
    fn params(&mut self) -> Result<Params<f32>> {
        self.inner.params()
    }
    fn rmsprop_state(&mut self) -> Result<Params<f32>> {
        self.inner.rmsprop_state()
    }
    fn set_state(&mut self, params: &Params<f32>, rmsprop: &Params<f32>) -> Result<()> {
        self.inner.set_state(params, rmsprop)
    }
    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.inner.set_learning_rate(lr)
    }
}

fn text() -> String {
    let words = ["the ", "will ", "to ", "power ", "is ", "not "];
    (0..400)
        .map(|i| words[(i * 7 + i / 5) % words.len()])
        .collect()
}

fn train_hyper() -> Hyper {
    Hyper {
        maxlen: 6,
        step: 3,
        hidden: 8,
        batch: 4,
        epochs: 3,
        seed: 9,
        ..Hyper::default()
    }
}

#[derive(Default)]
struct Seen {
    rollbacks: Vec<RollbackEvent>,
    batches: usize,
    stop_after: Option<usize>,
}

impl Observer for Seen {
    fn on_batch(&mut self, _: &charlstm_cuda::train::BatchEvent) -> Control {
        self.batches += 1;
        match self.stop_after {
            Some(n) if self.batches >= n => Control::Stop,
            _ => Control::Continue,
        }
    }
    fn on_rollback(&mut self, e: &RollbackEvent) {
        self.rollbacks.push(e.clone());
    }
}

/// What a trainer run leaves: the result (or its error), the rollbacks, the
/// final weights and batches.jsonl.
type RunResult = (String, Vec<String>, Vec<u32>, String);

/// Trains on the CPU from `state` (a fresh run when default), the engine
/// deferring its losses or not, with a NaN at global step `nan_at` (0:
/// none); `stop_after` stops the run after that many reported batches.
fn train(
    dir: &std::path::Path,
    deferred: bool,
    nan_at: usize,
    action: OnDivergence,
    stop_after: Option<usize>,
    from: Option<Checkpoint>,
) -> RunResult {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let hy = train_hyper();
    let v = corpus.vocab().len();
    let (params, ms, state) = match from {
        Some(c) => (c.params, c.rmsprop, c.state),
        None => (
            init_params(v, hy.hidden, hy.seed),
            Params::zeros(v, hy.hidden),
            TrainState::default(),
        ),
    };
    let cpu = Device::Exact(Backend::Cpu);
    let (engine, _) = cpu.open_engine(&corpus, &hy, params, ms).expect("engine");
    let engine: Box<dyn Engine> = match deferred {
        true => Box::new(Deferring::new(engine, nan_at)),
        false => Box::new(NanAt {
            inner: engine,
            step: nan_at,
            calls: 0,
        }),
    };
    let config = TrainConfig {
        gen_length: 0,
        out: Some(dir.into()),
        divergence: Some(DivergenceGuard {
            action,
            ..DivergenceGuard::default()
        }),
        ..TrainConfig::default()
    };
    let mut t = Trainer::builder(&corpus)
        .hyper(hy)
        .config(config)
        .engine(engine, state)
        .build()
        .expect("trainer");
    let mut seen = Seen {
        stop_after,
        ..Seen::default()
    };
    let result = match t.run(&mut seen) {
        Ok(s) => format!(
            "stopped {} at {}/{}",
            s.stopped, s.state.epochs_done, s.state.batch
        ),
        Err(e) => format!("error: {e}"),
    };
    let rollbacks = seen
        .rollbacks
        .iter()
        .map(|r| format!("{} -> {} at lr {}", r.cause, r.to_epoch, r.lr))
        .collect();
    // After an error the engine holds whatever ran (a deferred run trained
    // past the NaN): what the user keeps is the last checkpoint.
    let weights = match result.starts_with("error") {
        true => {
            Checkpoint::load(&dir.join(LAST_CHECKPOINT)).map_or(Vec::new(), |c| bits(&c.params))
        }
        false => bits(&t.engine_mut().params().expect("params")),
    };
    let log = std::fs::read_to_string(dir.join("batches.jsonl")).unwrap_or_default();
    (result, rollbacks, weights, log)
}

fn same_run(nan_at: usize, action: OnDivergence) -> RunResult {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let at_once = train(a.path(), false, nan_at, action, None, None);
    let deferred = train(b.path(), true, nan_at, action, None, None);
    println!("{} {:?}", at_once.0, at_once.1);
    assert_eq!(deferred.0, at_once.0, "outcome");
    assert_eq!(deferred.1, at_once.1, "rollbacks");
    assert_eq!(deferred.2, at_once.2, "weights");
    assert_eq!(deferred.3, at_once.3, "batches.jsonl");
    at_once
}

fn batches_per_epoch() -> usize {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let h = train_hyper();
    let windows = Windows::new(corpus.rows(), h.maxlen, h.step).expect("windows");
    windows.count.div_ceil(h.batch)
}

#[test]
fn deferred_losses_report_exactly_what_immediate_ones_do() {
    let batches = batches_per_epoch();
    println!("{batches} batches an epoch");
    // More than one read-back window per epoch, and a partial last one.
    assert!(batches > LOSS_READBACK_EVERY && !batches.is_multiple_of(LOSS_READBACK_EVERY));
    let run = same_run(0, OnDivergence::Stop);
    assert!(run.0.starts_with("stopped false at 3/0"), "{}", run.0);
    assert!(!run.3.is_empty());
}

#[test]
fn a_deferred_nan_rolls_back_like_an_immediate_one() {
    // In epoch 2, mid read-back window: noticed up to 32 batches late, but
    // rolled back to the same epoch with the same rate.
    let run = same_run(batches_per_epoch() + 40, OnDivergence::Rollback);
    assert_eq!(run.1.len(), 1, "{:?}", run.1);
    assert!(run.1[0].contains("epoch 2, batch 40 -> 1"), "{:?}", run.1);
}

#[test]
fn a_deferred_nan_stops_with_the_same_error() {
    // Epoch 1's checkpoint is what both runs leave behind.
    let run = same_run(batches_per_epoch() + 5, OnDivergence::Stop);
    assert!(run.0.contains("epoch 2, batch 5"), "{}", run.0);
    assert!(!run.2.is_empty(), "no checkpoint compared");
}

/// A stop request is answered at the end of the read-back window: every
/// batch trained is in the checkpoint and the log, and resuming ends where
/// an uninterrupted run does, bit for bit.
#[test]
fn a_deferred_stop_keeps_every_trained_batch_and_resumes_exactly() {
    let (full, cut) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = train(full.path(), true, 0, OnDivergence::Stop, None, None);
    let stopped = train(cut.path(), true, 0, OnDivergence::Stop, Some(5), None);
    assert_eq!(
        stopped.0,
        format!("stopped true at 0/{LOSS_READBACK_EVERY}"),
        "the whole window is kept"
    );
    let ckpt = Checkpoint::load(&cut.path().join(LAST_CHECKPOINT)).expect("checkpoint");
    assert_eq!(ckpt.state.batch, LOSS_READBACK_EVERY);
    let resumed = train(cut.path(), true, 0, OnDivergence::Stop, None, Some(ckpt));
    assert_eq!(resumed.2, whole.2, "weights after the resume");
    assert_eq!(resumed.3, whole.3, "batches.jsonl");
}
