//! The backend comparison behind `charlstm-cuda bench` and `cargo bench
//! --bench compare`: a training step, an epoch slice and generation, timed
//! the same way on every backend asked for, in one run.
//!
//! Timing is host wall-clock around calls that end synchronised (every
//! `train_batch` returns its loss, which a device engine must download;
//! `generate` returns the characters), so it includes launch overhead, as a
//! user of the trainer sees it. Generation is `Engine::generate`: the
//! device's one-launch kernel on a GPU, the predict loop on the CPU. Medians of
//! repeated steps; a warm-up step first (module load, first allocations).

use std::time::Instant;

use serde::Serialize;

use crate::corpus::{OneHotCorpus, Windows, epoch_order};
use crate::error::Result;
use crate::model::{Hyper, Params, init_params};
use crate::sample::Strategy;
use crate::train::{Backend, Device, Engine, create_engine};

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
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            steps: 10,
            slice_batches: 20,
            gen_length: 400,
            temperatures: vec![0.2, 0.5, 1.0, 1.2],
        }
    }
}

/// One backend's numbers, or why it has none.
#[derive(Clone, Debug, Serialize)]
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
    /// Seconds to generate `gen_length` characters for every temperature.
    pub generate_s: Option<f64>,
    /// Mean loss of the slice's last batch (a sanity check, not a benchmark).
    pub last_loss: Option<f32>,
}

impl BenchRow {
    fn unavailable(backend: Backend, why: String) -> Self {
        BenchRow {
            backend: backend.name().into(),
            available: false,
            note: Some(why),
            train_step_s: None,
            epoch_slice_s: None,
            epoch_estimate_s: None,
            generate_s: None,
            last_loss: None,
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
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
    /// One row per backend, in the order asked for.
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// Ratio `a / b` of a metric between two backends' rows, when both have it.
    pub fn ratio(&self, metric: fn(&BenchRow) -> Option<f64>, a: &str, b: &str) -> Option<f64> {
        let get = |name: &str| {
            self.rows
                .iter()
                .find(|r| r.backend == name)
                .and_then(metric)
        };
        Some(get(a)? / get(b)?)
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
        let params = init_params(v, hyper.hidden, hyper.seed);
        let ms = Params::zeros(v, hyper.hidden);
        let made = create_engine(Device::Exact(backend), corpus, hyper, params, ms);
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
        row.note = note;
        row.epoch_estimate_s = row
            .epoch_slice_s
            .map(|s| s / config.slice_batches.max(1) as f64 * batches_per_epoch as f64);
        rows.push(row);
    }
    Ok(BenchReport {
        vocab: v,
        hidden: hyper.hidden,
        batch: hyper.batch,
        maxlen: hyper.maxlen,
        windows: windows.count,
        batches_per_epoch,
        config: config.clone(),
        rows,
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
    // Generation: every temperature as one batch, window mode.
    let seed: Vec<u32> = (0..hyper.maxlen).map(|i| corpus.class_at(i)).collect();
    let t = Instant::now();
    engine.generate(
        &seed,
        hyper.maxlen,
        config.gen_length,
        strategies,
        hyper.seed,
        0,
    )?;
    let generate_s = t.elapsed().as_secs_f64();
    let backend = engine.backend();
    Ok(BenchRow {
        backend: backend.name().into(),
        available: true,
        note: None,
        train_step_s: (!steps.is_empty()).then(|| median(steps)),
        epoch_slice_s: Some(epoch_slice_s),
        epoch_estimate_s: None,
        generate_s: Some(generate_s),
        last_loss,
    })
}

impl std::fmt::Display for BenchReport {
    /// A table, one row per backend, then the ratios to the first available one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "V={} H={} B={} T={}; {} windows, {} batches/epoch; {} steps, slice of {} batches, {} x {} chars",
            self.vocab,
            self.hidden,
            self.batch,
            self.maxlen,
            self.windows,
            self.batches_per_epoch,
            self.config.steps,
            self.config.slice_batches,
            self.config.temperatures.len(),
            self.config.gen_length
        )?;
        writeln!(
            f,
            "{:<8} {:>14} {:>16} {:>14} {:>10}  note",
            "backend", "step (ms)", "epoch est (s)", "generate (s)", "loss"
        )?;
        let num =
            |x: Option<f64>, scale: f64| x.map_or("-".into(), |x| format!("{:.3}", x * scale));
        for r in &self.rows {
            let note = if r.available {
                r.note.clone().unwrap_or_default()
            } else {
                format!(
                    "no GPU / unavailable: {}",
                    r.note.clone().unwrap_or_default()
                )
            };
            writeln!(
                f,
                "{:<8} {:>14} {:>16} {:>14} {:>10}  {}",
                r.backend,
                num(r.train_step_s, 1e3),
                num(r.epoch_estimate_s, 1.0),
                num(r.generate_s, 1.0),
                r.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                note
            )?;
        }
        let base = self.rows.iter().find(|r| r.available);
        for r in self.rows.iter().filter(|r| r.available) {
            if let Some(b) = base.filter(|b| b.backend != r.backend) {
                let step = self.ratio(|x| x.train_step_s, &b.backend, &r.backend);
                let epoch = self.ratio(|x| x.epoch_estimate_s, &b.backend, &r.backend);
                let generate = self.ratio(|x| x.generate_s, &b.backend, &r.backend);
                writeln!(
                    f,
                    "{} vs {}: step {}x, epoch {}x, generate {}x faster",
                    r.backend,
                    b.backend,
                    num(step, 1.0),
                    num(epoch, 1.0),
                    num(generate, 1.0)
                )?;
            }
        }
        Ok(())
    }
}
