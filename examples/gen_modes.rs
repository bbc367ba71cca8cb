//! Window vs stateful generation on the CPU, side by side in one process
//! (issue 18's "stateful >= 20x faster" check): the notebook's four
//! temperatures x `LENGTH` characters from a checkpoint, each mode timed
//! `REPEATS` times (best and median), the checkpoint loaded once.
//!
//! ```text
//! cargo run --example gen_modes -- CHECKPOINT [LENGTH]
//! ```

use std::time::Instant;

use charlstm_cuda::device::generate_mode_with;
use charlstm_cuda::model::Checkpoint;
use charlstm_cuda::sample::{GenMode, GenerateRequest, Strategy, no_progress};
use charlstm_cuda::{Backend, Result};

const REPEATS: usize = 5;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: gen_modes CHECKPOINT [LENGTH]");
    let length: usize = args.next().map_or(400, |s| s.parse().expect("LENGTH"));
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
    };
    println!("V = {v}, H = {h}, maxlen = {maxlen}: 4 sequences x {length} characters");
    let mut medians = Vec::new();
    for mode in [GenMode::Window, GenMode::Stateful] {
        let mut secs: Vec<f64> = (0..REPEATS)
            .map(|_| {
                let t = Instant::now();
                generate_mode_with(Backend::Cpu, &ckpt.params, &req, mode, &mut no_progress)
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        secs.sort_by(f64::total_cmp);
        let median = secs[REPEATS / 2];
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
