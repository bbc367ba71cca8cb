//! Window vs stateful generation, side by side in one process (issue 18's
//! "stateful >= 20x faster" check): the notebook's four temperatures x
//! `LENGTH` characters from a checkpoint, each mode timed `REPEATS` times
//! (best and median; once on the simulator, which is slow), the checkpoint
//! loaded once. `DEVICE` is cpu (the default), sim or cuda; on the
//! simulator only the ratio means anything (it interprets the kernels on
//! the CPU).
//!
//! ```text
//! cargo run --release --example gen_modes -- CHECKPOINT [LENGTH] [DEVICE]
//! ```

use std::time::Instant;

use charlstm_cuda::device::{Device, generate_with};
use charlstm_cuda::model::Checkpoint;
use charlstm_cuda::sample::{GenMode, GenerateRequest, Strategy, no_progress};
use charlstm_cuda::{Backend, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: gen_modes CHECKPOINT [LENGTH] [DEVICE]";
    let path = args.next().expect(usage);
    let length: usize = args.next().map_or(400, |s| s.parse().expect(usage));
    let device: Device = args.next().as_deref().unwrap_or("cpu").parse()?;
    let (backend, _) = device.resolve()?;
    let repeats = if backend == Backend::Sim { 1 } else { 5 };
    let ckpt = Checkpoint::load(path.as_ref())?;
    let (v, h, maxlen) = (ckpt.params.vocab, ckpt.params.hidden, ckpt.hyper.maxlen);
    let seed: Vec<u32> = (0..maxlen).map(|i| (i % v) as u32).collect();
    let strategies = [0.2, 0.5, 1.0, 1.2].map(Strategy::Temperature);
    let req = GenerateRequest {
        seed_indices: &seed,
        maxlen,
        length,
        strategies: &strategies,
        seed: 0,
        stream: 0,
        mode: GenMode::Window,
    };
    println!(
        "V = {v}, H = {h}, maxlen = {maxlen}: 4 sequences x {length} characters on {}",
        backend.name()
    );
    let mut medians = Vec::new();
    for mode in [GenMode::Window, GenMode::Stateful] {
        let req = GenerateRequest { mode, ..req };
        let mut secs: Vec<f64> = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                generate_with(backend, &ckpt.params, &req, &mut no_progress)
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        secs.sort_by(f64::total_cmp);
        let median = secs[repeats / 2];
        println!(
            "{mode:>8}: best {:.2} ms, median {:.2} ms",
            secs[0] * 1e3,
            median * 1e3
        );
        medians.push(median);
    }
    println!(
        "stateful is {:.1}x faster (medians)",
        medians[0] / medians[1]
    );
    Ok(())
}
