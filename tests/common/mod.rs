//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use charlstm_cuda::model::Params;
use charlstm_cuda::sample::{Purpose, RngStream};

/// The shared Nietzsche corpus, wherever this checkout sits relative to it;
/// `None` (after saying SKIPPED) when it is absent.
pub fn nietzsche_file() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/corpus/nietzsche.txt"),
        root.join("../../shared/corpus/nietzsche.txt"),
        root.join("shared/corpus/nietzsche.txt"),
        PathBuf::from("/work/shared/corpus/nietzsche.txt"),
    ];
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: shared/corpus/nietzsche.txt not found next to the repository");
    }
    found
}

/// Parameters uniform in [-scale, scale): large enough that every gate and
/// the softmax are far from trivial, small enough that nothing saturates.
pub fn random_params(v: usize, h: usize, scale: f64, seed: u64) -> Params<f64> {
    let mut rng = RngStream::new(seed, Purpose::Sample, 0);
    let mut p = Params::<f64>::zeros(v, h);
    for t in p.tensors_mut() {
        t.iter_mut()
            .for_each(|x| *x = scale * (2.0 * rng.next_f64() - 1.0));
    }
    p
}

/// Random class indices: x [B, T] and targets y [B].
pub fn random_batch(v: usize, b: usize, t: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = RngStream::new(seed, Purpose::Sample, 1);
    let x = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
    let y = (0..b).map(|_| rng.below(v as u64) as u32).collect();
    (x, y)
}
