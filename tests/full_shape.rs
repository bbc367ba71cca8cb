//! The selftest's training and generation checks at the Keras job's shape
//! (V 57, H 128, B 128, T 60) on the simulator (issue 16): one step of the
//! GPU engine as `train --device sim` runs it (launched, then the captured
//! graph's replay, each from the CPU engine's weights, RMSprop state and
//! batch: loss, gradients, weights, RMSprop state), and 20 characters per
//! notebook temperature against the CPU generator
//! (`gpu::selftest::run_full_shape`; `charlstm-cuda selftest --device sim
//! --full-shape` runs the same). The bounds are the selftest's, those of
//! the small-shape simulator tests (tests/gpu_engine.rs,
//! tests/generate_kernel.rs).
//!
//! The shapes the other simulator tests run are small; this one reaches
//! what only the real size has (the persistent kernels' four rows of 512
//! threads per block, 60 steps, 32 blocks, weight-gradient splits of more
//! than 64 rows; docs/measured.md has a planted kernel bug it caught that
//! they did not). About 75 s in a release build on this project's 2-core
//! machine (docs/measured.md); `.ci/run` runs the same through the binary,
//! `charlstm-cuda selftest --device sim --full-shape`. A debug build says
//! SKIPPED (it would take far longer). It prints what each
//! phase cost, per kernel, in simulated thread-instructions.

mod common;
use common::{assert_all_pass, seed};

use charlstm_cuda::gpu::lstm::{LstmLauncher, LstmPath};
use charlstm_cuda::gpu::selftest::{FullShape, Shape, check_sequence, run_full_shape};
use charlstm_cuda::gpu::{GpuDevice, SimDevice, ptx};
use charlstm_cuda::sample::{Purpose, RngStream};

#[test]
fn a_training_step_and_generation_match_the_cpu_at_the_keras_shape_on_the_simulator() {
    if !common::kernels() {
        return;
    }
    if cfg!(debug_assertions) {
        println!(
            "SKIPPED: a debug build simulates too slowly for the Keras shape; \
             run `cargo test --release --test full_shape`"
        );
        return;
    }
    let seed = seed();
    let full = FullShape::keras();
    println!("{full}");
    let out = run_full_shape(&mut SimDevice::new(seed), full, seed).unwrap();
    for phase in &out.phases {
        print!("{phase}");
    }
    assert_all_pass(out.report.rows);
}

/// The sequence form (stream training: an initial state, the head over all
/// B*L = 7,680 rows, a gradient at every step) at the Keras shape through
/// the persistent kernels (`gpu::selftest::check_sequence`, as
/// tests/lstm_sequence.rs runs at small shapes), without the reference
/// weight-gradient kernel (one thread per output summing 7,680 rows: the
/// simulator would take minutes; the small shapes check it). Prints each
/// kernel's simulated thread-instructions: a stream step's cost by kernel.
#[test]
fn the_sequence_form_matches_the_cpu_at_the_keras_shape_on_the_simulator() {
    if !ptx::BUILT_WITH_KERNELS || cfg!(debug_assertions) {
        println!("SKIPPED: needs the kernels and a release build");
        return;
    }
    let seed = seed();
    let mut rng = RngStream::new(seed, Purpose::Sample, 3);
    let persistent = LstmLauncher {
        path: LstmPath::Persistent,
        ..LstmLauncher::default()
    };
    let mut dev = SimDevice::new(seed);
    let start = std::time::Instant::now();
    let rows = check_sequence(&mut dev, Shape::KERAS, persistent, false, &mut rng).unwrap();
    println!(
        "{:.1} s; simulated cost per kernel:",
        start.elapsed().as_secs_f64()
    );
    for k in dev.take_kernel_counts() {
        println!(
            "  {:<34} {:>3} launches {:>14} thread-instructions",
            k.kernel, k.launches, k.instructions
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.kernel == "lstm_persistent_h128_seq_bwd_f32")
    );
    assert_all_pass(rows);
}
