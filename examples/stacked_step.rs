//! Times training steps of a stacked model on the CPU engine, the job
//! `scripts/bench_layers_pytorch.py` runs in PyTorch (`nn.LSTM(num_layers=N)`):
//! the built-in Nietzsche text lower-cased, windows of 60 characters, batch
//! 128, RMSprop lr 0.01, one loss read back per step. Prints one JSON line.
//!
//! ```sh
//! cargo run --release --example stacked_step -- [layers 2] [hidden 256] [steps 10] [dropout 0]
//! ```

use std::time::Instant;

use charlstm_cuda::corpus::embedded::nietzsche;
use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::model::{Hyper, init_stacked};
use charlstm_cuda::rng::{Purpose, RngStream};
use charlstm_cuda::{Engine, OneHotCorpus};

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> charlstm_cuda::Result<()> {
    let (layers, hidden, steps, dropout) = (arg(1, 2), arg(2, 256), arg(3, 10), arg(4, 0.0f32));
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
    // One untimed step: the buffers are sized on the first.
    for step in 0..=steps {
        let starts: Vec<u32> = (0..hyper.batch)
            .map(|_| rng.below(last_start) as u32)
            .collect();
        let t = Instant::now();
        loss = engine.train_batch(&starts)?;
        if step > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\": \"charlstm-cuda cpu\", \"layers\": {layers}, \"hidden\": {hidden}, \
         \"vocab\": {v}, \"batch\": {}, \"maxlen\": {}, \"dropout\": {dropout}, \"steps\": {steps}, \
         \"train_step_s_median\": {:.4}, \"train_step_s_min\": {:.4}, \"last_loss\": {loss:.4}, \
         \"threads\": {}}}",
        hyper.batch,
        hyper.maxlen,
        times[times.len() / 2],
        times[0],
        std::thread::available_parallelism().map_or(1, |t| t.get())
    );
    Ok(())
}
