//! Issue 18's headline comparison on the CPU: the validation loss against
//! training seconds for window mode (the notebook: windows of 60, step 3,
//! one target each) and stream mode (truncated BPTT, a target at every
//! step), same model (H = 128, batch 128), same text, same held-out tenth,
//! same wall-clock budget each, from the same initial weights.
//!
//! ```text
//! cargo run --release --example stream_vs_window -- [--corpus FILE] [--seconds N]
//!     [--seq-len L] [--hidden H] [--batch B] [--out DIR]
//! ```
//!
//! Defaults: `../shared/corpus/nietzsche.txt`, 300 s a mode, L = 60, H = 128,
//! B = 128, files in `stream_vs_window/`. Epochs are cut short
//! (`steps_per_epoch`, from a timing of a few batches) so that a validation
//! point falls every budget/20 seconds of training (10-20 s at 300 s).
//! The clock counts training only: the validation pass after each epoch
//! (the same held-out window loss in both modes, so the numbers compare
//! directly) is not on it, nor is the calibration. Each mode stops at the
//! first epoch end past the budget.
//!
//! Prints a table, the time at which stream mode first reached window
//! mode's final validation loss and its ratio to window mode's time (the
//! issue's goal: at most 1/5), and writes `points.json` and `chart.svg`
//! (the project's own SVG code: two lines, validation loss vs seconds).

use std::path::{Path, PathBuf};
use std::time::Instant;

use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::model::{TrainMode, init_params};
use charlstm_cuda::rundir::{TimedSeries, seconds_chart};
use charlstm_cuda::train::{Control, Observer};
use charlstm_cuda::{
    Backend, Engine, EpochRow, Error, Hyper, OneHotCorpus, Params, Result, StreamBatch, Streams,
    TrainConfig, Trainer, Windows,
};

/// Settings from the command line.
struct Args {
    corpus: PathBuf,
    seconds: f64,
    seq_len: usize,
    hidden: usize,
    batch: usize,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        corpus: PathBuf::from("../shared/corpus/nietzsche.txt"),
        seconds: 300.0,
        seq_len: 60,
        hidden: 128,
        batch: 128,
        out: PathBuf::from("stream_vs_window"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next().ok_or_else(|| Error::InvalidArgument {
                name: "stream_vs_window",
                what: format!("{flag} needs a value"),
            })
        };
        let bad = |what: &str| Error::InvalidArgument {
            name: "stream_vs_window",
            what: what.to_string(),
        };
        match flag.as_str() {
            "--corpus" => a.corpus = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--seconds" => {
                a.seconds = value()?
                    .parse()
                    .map_err(|_| bad("--seconds takes seconds"))?;
                if !(a.seconds.is_finite() && a.seconds > 0.0) {
                    return Err(bad("--seconds must be above 0"));
                }
            }
            "--seq-len" => a.seq_len = value()?.parse().map_err(|_| bad("--seq-len takes L"))?,
            "--hidden" => a.hidden = value()?.parse().map_err(|_| bad("--hidden takes H"))?,
            "--batch" => a.batch = value()?.parse().map_err(|_| bad("--batch takes B"))?,
            other => {
                return Err(bad(&format!(
                    "unknown flag {other}: use --corpus, --seconds, --seq-len, --hidden, \
                     --batch or --out"
                )));
            }
        }
    }
    Ok(a)
}

/// One validation point: training seconds so far, the loss, the epoch.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Point {
    seconds: f64,
    val_loss: f64,
    epoch: usize,
}

/// Records a point per epoch and stops at the first epoch end past the budget.
struct Clock {
    budget: f64,
    trained: f64,
    points: Vec<Point>,
}

impl Observer for Clock {
    fn on_epoch(&mut self, e: &EpochRow) -> Control {
        // `seconds` is the epoch's training only: the validation pass
        // after it runs once the epoch's clock has stopped.
        self.trained += e.seconds;
        if let Some(v) = e.val_loss {
            self.points.push(Point {
                seconds: self.trained,
                val_loss: v,
                epoch: e.epoch,
            });
        }
        match self.trained >= self.budget {
            true => Control::Stop,
            false => Control::Continue,
        }
    }
}

/// Seconds per training step of `mode`, the median of a few after a warm-up.
fn seconds_per_batch(corpus: &OneHotCorpus, hyper: &Hyper, mode: TrainMode) -> Result<f64> {
    let params = init_params(corpus.vocab().len(), hyper.hidden, hyper.seed);
    let zeros = Params::zeros(params.vocab, params.hidden);
    let mut engine = CpuEngine::new(corpus, hyper, params, zeros)?;
    let mut times = Vec::new();
    for k in 0..5 {
        let started = Instant::now();
        match mode {
            TrainMode::Window => {
                let windows = Windows::new(corpus.rows(), hyper.maxlen, hyper.step)?;
                let starts: Vec<u32> = (0..hyper.batch)
                    .map(|i| windows.start((i * 997 + k) % windows.count) as u32)
                    .collect();
                engine.train_batch(&starts)?;
            }
            TrainMode::Stream { seq_len } => {
                let streams = Streams::new(corpus.rows(), hyper.batch, seq_len)?;
                let starts = streams.starts(0, k % streams.batches);
                engine.queue_train_stream(StreamBatch {
                    starts: &starts,
                    seq_len,
                    carry: k % streams.batches > 0,
                })?;
            }
        }
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

/// Trains `mode` for `budget` training seconds from the seed's initial
/// weights; the points start with the initial validation loss at 0 s.
fn race(
    corpus: &OneHotCorpus,
    hyper: &Hyper,
    mode: TrainMode,
    budget: f64,
) -> Result<(usize, Vec<Point>)> {
    let per_batch = seconds_per_batch(corpus, hyper, mode)?;
    let interval = (budget / 20.0).min(15.0);
    let steps = ((interval / per_batch) as usize).max(1);
    let config = TrainConfig {
        steps_per_epoch: Some(steps),
        gen_length: 0,
        divergence: None,
        val_fraction: 0.1,
        mode,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::builder(corpus)
        .hyper(hyper.clone())
        .config(config)
        .backend(Backend::Cpu)
        .build()?;
    let start = trainer.validation_loss()?.unwrap_or(f64::NAN);
    let mut clock = Clock {
        budget,
        trained: 0.0,
        points: vec![Point {
            seconds: 0.0,
            val_loss: start,
            epoch: 0,
        }],
    };
    trainer.run(&mut clock)?;
    Ok((steps, clock.points))
}

/// The first training time at which `points` reach `target` or below.
fn reached(points: &[Point], target: f64) -> Option<f64> {
    points
        .iter()
        .find(|p| p.val_loss <= target)
        .map(|p| p.seconds)
}

fn main() -> Result<()> {
    let a = args()?;
    let corpus = OneHotCorpus::load(&a.corpus, true)?;
    let hyper = Hyper {
        hidden: a.hidden,
        batch: a.batch,
        epochs: 1_000_000,
        ..Hyper::default()
    };
    println!(
        "{}: {} characters, V = {}; H = {}, batch {}, --val-fraction 0.1, {} s of training a \
         mode (validation passes not counted)",
        a.corpus.display(),
        corpus.rows(),
        corpus.vocab().len(),
        a.hidden,
        a.batch,
        a.seconds
    );
    let modes = [
        ("window", TrainMode::Window),
        ("stream", TrainMode::Stream { seq_len: a.seq_len }),
    ];
    let mut runs = Vec::new();
    for (name, mode) in modes {
        let wall = Instant::now();
        let (steps, points) = race(&corpus, &hyper, mode, a.seconds)?;
        println!(
            "{name}: {steps} batches an epoch, {} epochs, {:.1} s of training ({:.1} s wall)",
            points.len() - 1,
            points.last().map_or(0.0, |p| p.seconds),
            wall.elapsed().as_secs_f64()
        );
        runs.push((name, mode, steps, points));
    }
    println!("\n{:>6} {:>10} {:>9}", "mode", "seconds", "val_loss");
    for (name, _, _, points) in &runs {
        for p in points {
            println!("{name:>6} {:>10.1} {:>9.4}", p.seconds, p.val_loss);
        }
    }
    let window = &runs[0].3;
    let stream = &runs[1].3;
    let last = window.last().expect("a point");
    let (target, window_seconds) = (last.val_loss, last.seconds);
    let at = reached(stream, target);
    let ratio = at.map(|s| s / window_seconds);
    match at {
        Some(s) => println!(
            "\nstream mode reached window mode's final validation loss {target:.4} (at \
             {window_seconds:.1} s) after {s:.1} s: {:.3} of the time (goal: at most 0.2)",
            s / window_seconds
        ),
        None => println!(
            "\nstream mode did not reach window mode's final validation loss {target:.4} in \
             {:.1} s",
            stream.last().map_or(0.0, |p| p.seconds)
        ),
    }
    write_files(&a, &runs, target, at, ratio)
}

type Run = (&'static str, TrainMode, usize, Vec<Point>);

/// `points.json` and `chart.svg` in `a.out`.
fn write_files(
    a: &Args,
    runs: &[Run],
    target: f64,
    at: Option<f64>,
    ratio: Option<f64>,
) -> Result<()> {
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(a.out.clone(), e))?;
    let modes: serde_json::Map<String, serde_json::Value> = runs
        .iter()
        .map(|(name, mode, steps, points)| {
            let v = serde_json::json!({
                "mode": mode,
                "steps_per_epoch": steps,
                "points": points,
            });
            (name.to_string(), v)
        })
        .collect();
    let json = serde_json::json!({
        "corpus": a.corpus.display().to_string(),
        "hidden": a.hidden,
        "batch": a.batch,
        "val_fraction": 0.1,
        "seconds_per_mode": a.seconds,
        "clock": "training seconds; the validation pass after each epoch is not counted",
        "modes": modes,
        "window_final_val_loss": target,
        "stream_reached_it_at_seconds": at,
        "ratio": ratio,
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::InvalidArgument {
        name: "points.json",
        what: e.to_string(),
    })?;
    write(&a.out.join("points.json"), text.as_bytes())?;
    let series: Vec<TimedSeries> = runs
        .iter()
        .map(|(name, mode, _, points)| TimedSeries {
            name: match mode {
                TrainMode::Window => format!("{name} (maxlen 60, step 3)"),
                TrainMode::Stream { seq_len } => format!("{name} (L = {seq_len})"),
            },
            points: points.iter().map(|p| (p.seconds, p.val_loss)).collect(),
        })
        .collect();
    let svg = seconds_chart(
        "Validation loss vs training time (CPU)",
        "validation loss",
        &series,
    )?;
    write(&a.out.join("chart.svg"), svg.as_bytes())?;
    println!(
        "wrote {} and {}",
        a.out.join("points.json").display(),
        a.out.join("chart.svg").display()
    );
    Ok(())
}

/// Temp file, fsync, rename: a reader sees the old file or the new one.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    charlstm_cuda::io::write_atomically(path, |w| w.write_all(bytes))
}
