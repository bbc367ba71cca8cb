//! `cargo bench --bench compare`: a training step (and its µs per
//! recurrent step, train step / 2T, against the 1 µs budget), an epoch slice
//! and generation on the CPU reference and the CUDA backend, in one run (the
//! CUDA row says why it is missing on a machine without a GPU). The same
//! numbers as JSON, with PyTorch's next to them and whole epochs:
//! `charlstm-cuda bench --pytorch FILE --full-epoch`.
//!
//! Corpus: the shared Nietzsche text when present next to the checkout,
//! else a synthetic text of the same length and alphabet size (timings
//! depend on the shapes, not on the text; the loss then means nothing).

use std::path::Path;

use charlstm_cuda::Backend;
use charlstm_cuda::bench::{self, BenchConfig};
use charlstm_cuda::corpus::OneHotCorpus;
use charlstm_cuda::model::Hyper;

fn corpus() -> OneHotCorpus {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/corpus/nietzsche.txt");
    if shared.is_file() {
        println!("corpus: {}", shared.display());
        return OneHotCorpus::load(&shared, true).expect("the shared corpus loads");
    }
    println!("corpus: synthetic (../shared/corpus/nietzsche.txt not found)");
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"()-\n=[]_&*+"
        .chars()
        .collect();
    let mut x = 12345u64;
    let text: String = (0..600_901)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect();
    OneHotCorpus::from_text(&text, true).expect("synthetic corpus")
}

fn main() {
    // Only `cargo bench` passes --bench; `cargo test --benches` (no
    // argument, or --test) only checks that this runs: stay quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let config = if quick {
        BenchConfig {
            steps: 1,
            slice_batches: 1,
            gen_length: 2,
            ..BenchConfig::default()
        }
    } else {
        BenchConfig::default()
    };
    let report = bench::run(
        &corpus(),
        &Hyper::default(),
        &config,
        &[Backend::Cpu, Backend::Cuda],
    )
    .expect("benchmark");
    print!("{report}");
}
