//! The backend comparison behind `charlstm-cuda bench` and `cargo bench
//! --bench compare`: a training step, an epoch slice and generation (and,
//! asked for, one whole epoch through the trainer), timed the same way on
//! every backend asked for, in one run; optionally next to PyTorch's numbers
//! for the same job from `scripts/bench_pytorch.py` ([`pytorch`]).
//!
//! Per-recurrent-step latency: a training step of windows of T characters
//! runs T dependent forward steps and T dependent backward steps, so
//! `train_step_s / (2 T)` is the time one recurrent step costs, against the
//! project's budget of [`STEP_BUDGET_US`] (DESIGN: the recurrence is the
//! part no batch size hides). A stacked model (`Hyper::layers` > 1) is
//! timed the same way, so its figure is all N layers' cost of one time
//! step, as `scripts/bench_pytorch.py --layers N` reports it too.
//!
//! Timing is host wall-clock around calls that end synchronised (every
//! `train_batch` returns its loss, which a device engine must download;
//! `generate` returns the characters), so it includes launch overhead, as a
//! user of the trainer sees it. Generation is `Engine::generate` in both
//! modes, from the same `maxlen`-character seed: window (the notebook,
//! `maxlen` recurrent steps a character) and stateful (the seed once, then
//! one step a character; issue 18 claims it is at least 20x faster for
//! 4 x 400 characters on the CPU); the device's one-launch kernel of the
//! mode on a GPU, the CPU's generator of the mode on the CPU. Medians of
//! repeated steps; a warm-up step first (module load, first allocations).

use std::time::Instant;

use serde::Serialize;

use crate::corpus::{OneHotCorpus, Windows, epoch_order};
use crate::device::Device;
use crate::engine::{Backend, Engine, LstmPath};
use crate::error::{Error, Result};
use crate::model::{Hyper, init_stacked};
use crate::rundir::EpochRow;
use crate::sample::{GenMode, GenerateRequest, Strategy};
use crate::train::{Control, Observer, TrainConfig, Trainer};

pub mod pytorch;
mod table;

pub use pytorch::{Comparison, PytorchVariant};

/// The latency budget of one recurrent step (forward or backward), in µs.
pub const STEP_BUDGET_US: f64 = 1.0;

/// What to measure.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    /// Timed training steps (after one warm-up step); the median is reported.
    pub steps: usize,
    /// Consecutive batches of an epoch order timed as one slice.
    pub slice_batches: usize,
    /// Characters generated per strategy.
    pub gen_length: usize,
    /// Temperatures generated at once (the notebook's four by default).
    pub temperatures: Vec<f64>,
    /// Also train one whole shuffled epoch (a fresh model, the trainer's
    /// loop as `train --epochs 1` runs it, no checkpoints or samples) and
    /// report its time and mean loss.
    #[serde(default)]
    pub full_epoch: bool,
    /// Which kernels run the recurrence on the device rows (`--recurrence`;
    /// the cpu row has one recurrence).
    #[serde(default)]
    pub recurrence: LstmPath,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            steps: 10,
            slice_batches: 20,
            gen_length: 400,
            temperatures: vec![0.2, 0.5, 1.0, 1.2],
            full_epoch: false,
            recurrence: LstmPath::Auto,
        }
    }
}

/// One backend's numbers, or why it has none (the default: none, no name).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchRow {
    /// `cpu`, `cuda` or `sim`.
    pub backend: String,
    /// False when the backend is not usable here; `note` says why.
    pub available: bool,
    /// Why not available, or what `auto` chose.
    pub note: Option<String>,
    /// Median seconds of one training step (B windows, forward, backward, RMSprop).
    pub train_step_s: Option<f64>,
    /// Seconds for `slice_batches` consecutive batches of an epoch.
    pub epoch_slice_s: Option<f64>,
    /// `epoch_slice_s` scaled to all batches of an epoch.
    pub epoch_estimate_s: Option<f64>,
    /// Seconds to generate `gen_length` characters for every temperature
    /// in window mode (the notebook).
    pub generate_s: Option<f64>,
    /// The same in stateful mode (the seed once, then one step a character).
    pub generate_stateful_s: Option<f64>,
    /// `generate_s / generate_stateful_s`: how many times faster stateful
    /// generation is than window generation on this backend.
    pub stateful_speedup: Option<f64>,
    /// Mean loss of the slice's last batch (a sanity check, not a benchmark).
    pub last_loss: Option<f32>,
    /// `train_step_s / (2 T)` in µs: one dependent recurrent step (forward
    /// or backward), against [`STEP_BUDGET_US`].
    pub step_latency_us: Option<f64>,
    /// Seconds of one whole epoch (`full_epoch`).
    pub epoch_s: Option<f64>,
    /// Mean loss over that epoch, Keras' running mean (`full_epoch`).
    pub epoch_loss: Option<f64>,
}

impl BenchRow {
    fn unavailable(backend: Backend, why: String) -> Self {
        BenchRow {
            backend: backend.name().into(),
            available: false,
            note: Some(why),
            ..BenchRow::default()
        }
    }
}

/// µs per dependent recurrent step of a training step over windows of `maxlen`.
pub fn step_latency_us(train_step_s: f64, maxlen: usize) -> f64 {
    train_step_s * 1e6 / (2 * maxlen.max(1)) as f64
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H of each layer.
    pub hidden: usize,
    /// Stacked LSTM layers N (1: the notebook).
    pub layers: usize,
    /// Dropout between stacked layers in the training steps (0: none).
    pub dropout: f32,
    /// Windows per batch B.
    pub batch: usize,
    /// Window length T.
    pub maxlen: usize,
    /// Windows of one epoch.
    pub windows: usize,
    /// Batches of one epoch.
    pub batches_per_epoch: usize,
    /// What was measured.
    pub config: BenchConfig,
    /// One row per backend, in the order asked for; then `pytorch` when
    /// its numbers were given.
    pub rows: Vec<BenchRow>,
    /// Dependent recurrent steps per training step: T forward + T backward.
    pub recurrent_steps_per_batch: usize,
    /// [`STEP_BUDGET_US`].
    pub step_budget_us: f64,
    /// The file PyTorch's numbers came from (`--pytorch`).
    pub pytorch_file: Option<String>,
    /// PyTorch against each of our backends (empty without `--pytorch`).
    pub comparisons: Vec<Comparison>,
    /// Every variant PyTorch ran (strict fp32 and TF32, eager and CUDA-graph
    /// loops), each against our rows; empty without `--pytorch` or for a
    /// file from before variants.
    pub pytorch_variants: Vec<PytorchVariant>,
}

impl BenchReport {
    /// Ratio `a / b` of a metric between two backends' rows, when both have it.
    pub fn ratio(&self, metric: fn(&BenchRow) -> Option<f64>, a: &str, b: &str) -> Option<f64> {
        Some(self.metric(a, metric)? / self.metric(b, metric)?)
    }

    /// A metric of `backend`'s row, when there is one and it has the metric.
    fn metric(&self, backend: &str, metric: fn(&BenchRow) -> Option<f64>) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.backend == backend)
            .and_then(metric)
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs the comparison on `corpus` for each backend in `backends`.
pub fn run(
    corpus: &OneHotCorpus,
    hyper: &Hyper,
    config: &BenchConfig,
    backends: &[Backend],
) -> Result<BenchReport> {
    hyper.validate()?;
    let windows = Windows::new(corpus.rows(), hyper.maxlen, hyper.step)?;
    let batches_per_epoch = windows.count.div_ceil(hyper.batch);
    let strategies = config
        .temperatures
        .iter()
        .map(|&t| Strategy::temperature(t))
        .collect::<Result<Vec<_>>>()?;
    let v = corpus.vocab().len();
    let mut rows = Vec::new();
    for &backend in backends {
        let params = init_stacked(v, hyper.hidden, hyper.layers, hyper.seed);
        let ms = params.zeros_like();
        let path = recurrence_on(backend, config.recurrence);
        let made = Device::Exact(backend)
            .open_engine(corpus, hyper, params, ms)
            .and_then(|(mut engine, note)| {
                if path != LstmPath::Auto {
                    engine.set_lstm_path(path)?;
                }
                Ok((engine, note))
            });
        let (mut engine, note) = match made {
            Ok(e) => e,
            Err(e) => {
                rows.push(BenchRow::unavailable(backend, e.to_string()));
                continue;
            }
        };
        let mut row = measure(
            engine.as_mut(),
            corpus,
            &windows,
            hyper,
            config,
            &strategies,
        )?;
        drop(engine);
        row.note = note;
        // The slice may be the whole (short) epoch: scale by what it ran.
        let slice = config.slice_batches.min(batches_per_epoch).max(1);
        row.epoch_estimate_s = row
            .epoch_slice_s
            .map(|s| s / slice as f64 * batches_per_epoch as f64);
        row.step_latency_us = row.train_step_s.map(|s| step_latency_us(s, hyper.maxlen));
        row.stateful_speedup = row
            .generate_s
            .zip(row.generate_stateful_s)
            .map(|(window, stateful)| window / stateful);
        if config.full_epoch {
            let (seconds, loss) = whole_epoch(corpus, hyper, backend, path)?;
            row.epoch_s = Some(seconds);
            row.epoch_loss = Some(loss);
        }
        rows.push(row);
    }
    Ok(BenchReport {
        vocab: v,
        hidden: hyper.hidden,
        layers: hyper.layers,
        dropout: hyper.dropout,
        batch: hyper.batch,
        maxlen: hyper.maxlen,
        windows: windows.count,
        batches_per_epoch,
        config: config.clone(),
        rows,
        recurrent_steps_per_batch: 2 * hyper.maxlen,
        step_budget_us: STEP_BUDGET_US,
        pytorch_file: None,
        comparisons: Vec::new(),
        pytorch_variants: Vec::new(),
    })
}

/// The recurrence `asked` on `backend`: the CPU has one (`Auto`).
fn recurrence_on(backend: Backend, asked: LstmPath) -> LstmPath {
    match backend {
        Backend::Cpu => LstmPath::Auto,
        Backend::Cuda | Backend::Sim => asked,
    }
}

/// One epoch of a fresh model through [`Trainer::run`], the loop `train`
/// runs (so whatever it does to keep the device busy counts here too),
/// without an output directory or after-epoch samples: (seconds, mean loss)
/// as its epoch event reports them.
fn whole_epoch(
    corpus: &OneHotCorpus,
    hyper: &Hyper,
    backend: Backend,
    path: LstmPath,
) -> Result<(f64, f64)> {
    struct LastEpoch(Option<(f64, f64)>);
    impl Observer for LastEpoch {
        fn on_epoch(&mut self, e: &EpochRow) -> Control {
            self.0 = Some((e.seconds, e.loss));
            Control::Continue
        }
    }
    let mut trainer = Trainer::builder(corpus)
        .hyper(Hyper {
            epochs: 1,
            ..hyper.clone()
        })
        .config(TrainConfig {
            gen_length: 0,
            ..TrainConfig::default()
        })
        .backend(backend)
        .lstm_path(path)
        .build()?;
    let mut last = LastEpoch(None);
    trainer.run(&mut last)?;
    last.0.ok_or_else(|| Error::InvalidArgument {
        name: "full_epoch",
        what: format!(
            "the {} run ended without finishing its epoch",
            backend.name()
        ),
    })
}

fn measure(
    engine: &mut dyn Engine,
    corpus: &OneHotCorpus,
    windows: &Windows,
    hyper: &Hyper,
    config: &BenchConfig,
    strategies: &[Strategy],
) -> Result<BenchRow> {
    let order = epoch_order(windows, hyper.seed, 0);
    let b = hyper.batch;
    let batch = |i: usize| {
        let start = (i * b) % order.len();
        &order[start..(start + b).min(order.len())]
    };
    // Warm-up, then single steps.
    engine.train_batch(batch(0))?;
    let mut steps = Vec::with_capacity(config.steps);
    for i in 0..config.steps {
        let t = Instant::now();
        engine.train_batch(batch(i + 1))?;
        steps.push(t.elapsed().as_secs_f64());
    }
    // An epoch slice as the trainer runs it: the order uploaded once, then
    // consecutive batches.
    let slice = config.slice_batches.min(order.len().div_ceil(b));
    let t = Instant::now();
    engine.begin_epoch(&order, 0)?;
    let mut last_loss = None;
    for i in 0..slice {
        last_loss = Some(engine.train_batch(batch(i))?);
    }
    let epoch_slice_s = t.elapsed().as_secs_f64();
    // Generation: every temperature as one batch, in each mode from the
    // same seed, window (the notebook) first.
    let seed: Vec<u32> = (0..hyper.maxlen).map(|i| corpus.class_at(i)).collect();
    let mut generate = |mode| -> Result<f64> {
        let t = Instant::now();
        engine.generate(&GenerateRequest {
            seed_indices: &seed,
            maxlen: hyper.maxlen,
            length: config.gen_length,
            strategies,
            seed: hyper.seed,
            stream: 0,
            mode,
        })?;
        Ok(t.elapsed().as_secs_f64())
    };
    let generate_s = generate(GenMode::Window)?;
    let generate_stateful_s = generate(GenMode::Stateful)?;
    let backend = engine.backend();
    Ok(BenchRow {
        backend: backend.name().into(),
        available: true,
        train_step_s: (!steps.is_empty()).then(|| median(steps)),
        epoch_slice_s: Some(epoch_slice_s),
        generate_s: Some(generate_s),
        generate_stateful_s: Some(generate_stateful_s),
        last_loss,
        ..BenchRow::default()
    })
}
