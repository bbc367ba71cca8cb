//! Times training steps of a stacked model on the CPU engine, the job
//! `scripts/bench_layers_pytorch.py` runs in PyTorch (`nn.LSTM(num_layers=N)`):
//! the built-in Nietzsche text lower-cased, windows of 60 characters, batch
//! 128, RMSprop lr 0.01, one loss read back per step. Prints one JSON line.
//!
//! ```sh
//! cargo run --release --example stacked_step -- [layers 2] [hidden 256] [steps 10] [dropout 0]
//! ```
//!
//! With `CHARLSTM_LOCKSTEP=1` each step (the untimed first one too) waits
//! for a line on stdin and prints `step <seconds>` when done:
//! `scripts/lockstep.py` alternates it step by step with another program,
//! so that both see the same moments of a noisy host.

#[path = "shared/lockstep.rs"]
mod lockstep;

use std::time::Instant;

use charlstm_cuda::corpus::embedded::nietzsche;
use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::model::{Hyper, init_stacked};
use charlstm_cuda::rng::{Purpose, RngStream};
use charlstm_cuda::{Engine, OneHotCorpus};
use lockstep::Lockstep;

const USAGE: &str = "usage: stacked_step [layers 2] [hidden 256] [steps >= 1, 10] [dropout 0]";

/// Argument `i`, or `default` where it is absent; an unreadable one is an
/// error naming it (a silent default would time another model).
fn arg<T: std::str::FromStr>(i: usize, name: &'static str, default: T) -> charlstm_cuda::Result<T> {
    match std::env::args().nth(i) {
        None => Ok(default),
        Some(a) => a
            .parse()
            .map_err(|_| charlstm_cuda::Error::InvalidArgument {
                name,
                what: format!("{a:?} is not a number; {USAGE}"),
            }),
    }
}

fn main() -> charlstm_cuda::Result<()> {
    let layers = arg(1, "layers", 2)?;
    let hidden = arg(2, "hidden", 256)?;
    let steps = arg(3, "steps", 10usize)?;
    let dropout = arg(4, "dropout", 0.0f32)?;
    if steps == 0 {
        return Err(charlstm_cuda::Error::InvalidArgument {
            name: "steps",
            what: format!("0 steps leave nothing to time; {USAGE}"),
        });
    }
    let corpus = OneHotCorpus::from_text(&nietzsche(), true)?;
    let hyper = Hyper {
        hidden,
        layers,
        dropout,
        ..Hyper::default()
    };
    hyper.validate()?;
    let v = corpus.vocab().len();
    let params = init_stacked(v, hidden, layers, hyper.seed);
    let rmsprop = params.zeros_like();
    let mut engine = CpuEngine::new(&corpus, &hyper, params, rmsprop)?;
    let mut rng = RngStream::new(1, Purpose::Sample, 0);
    let last_start = (corpus.rows() - hyper.maxlen - 1) as u64;
    let mut times = Vec::with_capacity(steps);
    let mut loss = 0.0;
    let mut lockstep = Lockstep::from_env();
    // One untimed step: the buffers are sized on the first.
    for step in 0..=steps {
        let starts: Vec<u32> = (0..hyper.batch)
            .map(|_| rng.below(last_start) as u32)
            .collect();
        if !lockstep.wait() {
            break;
        }
        let t = Instant::now();
        loss = engine.train_batch(&starts)?;
        let s = t.elapsed().as_secs_f64();
        lockstep.done(s);
        if step > 0 {
            times.push(s);
        }
    }
    if times.is_empty() {
        return Err(charlstm_cuda::Error::InvalidArgument {
            name: "CHARLSTM_LOCKSTEP",
            what: "stdin closed before a timed step; scripts/lockstep.py drives this mode".into(),
        });
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\": \"charlstm-cuda cpu\", \"layers\": {layers}, \"hidden\": {hidden}, \
         \"vocab\": {v}, \"batch\": {}, \"maxlen\": {}, \"dropout\": {dropout}, \"steps\": {}, \
         \"train_step_s_median\": {:.4}, \"train_step_s_min\": {:.4}, \"last_loss\": {loss:.4}, \
         \"threads\": {}}}",
        hyper.batch,
        hyper.maxlen,
        times.len(),
        times[times.len() / 2],
        times[0],
        std::thread::available_parallelism().map_or(1, |t| t.get())
    );
    Ok(())
}
