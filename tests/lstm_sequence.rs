//! The sequence form of the kernels (stream training's loss at every step,
//! issue 18; the stacked layers of issue 17 need the same): the recurrence
//! from a given initial state with a gradient at every step, and the head
//! over all B*L rows, on the simulator against the CPU reference
//! (`ops::Lstm` in f64 and the head's math in f64;
//! `gpu::selftest::check_sequence`): fresh random inputs, initial states and
//! final-state gradients every run (seed printed; CHARLSTM_TEST_SEED
//! replays), every output NaN-poisoned first, tolerance `abs + rel * |ref|`
//! (the selftest's rows print the worst error of each output).
//!
//! Shapes cross H in {8, 32, 128} (all weights in registers, and split with
//! shared memory at the compiled-in H = 128), B in {1, 3, 8} (a partial last
//! block of the persistent kernels), L in {1, 5, 17}, V above 64, and H = 12
//! where only the per-step kernels run; each on the per-step kernels and on
//! the persistent ones where they fit. The window form's bits are pinned
//! by tests/lstm_persistent.rs and tests/kernels_vs_cpu.rs.

mod common;
use common::{assert_all_pass, seed};

use charlstm_cuda::gpu::lstm::{LstmLauncher, LstmPath};
use charlstm_cuda::gpu::selftest::{Shape, check_sequence};
use charlstm_cuda::gpu::{CudaDevice, GpuDevice, SimDevice};
use charlstm_cuda::sample::{Purpose, RngStream};

fn launcher(path: LstmPath) -> LstmLauncher {
    LstmLauncher {
        path,
        ..LstmLauncher::default()
    }
}

fn run(shapes: &[(usize, usize, usize, usize)], stream: u32) {
    if !common::kernels() {
        return;
    }
    run_on(&mut SimDevice::new(seed()), shapes, stream);
}

fn run_on<D: GpuDevice>(dev: &mut D, shapes: &[(usize, usize, usize, usize)], stream: u32) {
    let seed = seed();
    let mut rng = RngStream::new(seed, Purpose::Sample, stream);
    let mut rows = Vec::new();
    for &(vocab, hidden, batch, seq_len) in shapes {
        let shape = Shape {
            vocab,
            hidden,
            batch,
            seq_len,
        };
        let mut paths = vec![LstmPath::PerStep];
        if hidden % 8 == 0 {
            paths.push(LstmPath::Persistent);
        }
        for path in paths {
            let out = check_sequence(dev, shape, launcher(path), true, &mut rng).unwrap();
            assert!(
                out.iter()
                    .any(|r| r.kernel.contains("seq_") || path == LstmPath::PerStep)
            );
            rows.extend(out);
        }
    }
    assert_all_pass(rows);
}

#[test]
fn small_shapes_match_cpu_on_the_simulator() {
    run(
        &[
            (5, 8, 1, 1),
            (70, 32, 3, 5),
            (9, 12, 3, 5),
            (20, 8, 8, 17),
            (33, 32, 1, 17),
            // H = 64 > 56: the generic build's weights split between
            // shared memory (8 rows) and registers (56).
            (5, 64, 1, 2),
            // V above the block: the head over rows loops over the classes.
            (300, 8, 1, 1),
        ],
        1,
    );
}

#[test]
fn hidden_128_matches_cpu_on_the_simulator() {
    run(&[(57, 128, 3, 5), (66, 128, 8, 17), (57, 128, 1, 1)], 2);
}

/// The same checks on a GPU (the GPU bundle runs every `*cuda*` test), the
/// Keras shape included.
#[test]
fn sequence_form_matches_cpu_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => run_on(
            &mut dev,
            &[
                (5, 8, 1, 1),
                (70, 32, 3, 5),
                (9, 12, 3, 5),
                (57, 128, 8, 17),
                (57, 128, 128, 60),
            ],
            3,
        ),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}
