//! The kernels of stacked layers (issue 17) on the simulator against the
//! CPU (`gpu::selftest::{check_gemm, check_dropout, check_stack}`): the
//! dense GEMMs whole and split over k, dropout forward and backward (equal
//! to the bit to `ops::dropout`'s mask), and the device stack of N layers
//! (one-hot layer 0, dense layers through the `_dense_` forward kernels,
//! dropout between them) against `ops::Lstm::<f64>` in training mode,
//! forward and backward, in the window and the sequence form, on the
//! per-step and the persistent kernels. Fresh random inputs every run (seed
//! printed; CHARLSTM_TEST_SEED replays), every output NaN-poisoned first.
//!
//! Shapes stay small for the simulator: H in {8, 12 (per-step only), 32,
//! 128 (the compiled-in persistent build), 160 (per-step only: above the
//! persistent kernels' limit)}, B in {1, 2, 3, 4}, T in {1, 2, 3, 5};
//! GEMM shapes cross the 64 x 64 tile and the 16-deep k chunk, with k long
//! enough to split.

mod common;
use common::{assert_all_pass, seed};

use charlstm_cuda::gpu::lstm::stack::{
    LayerPtrs, StackDims, StackIo, StackLauncher, StackWorkspace,
};
use charlstm_cuda::gpu::lstm::{LstmLauncher, LstmPath};
use charlstm_cuda::gpu::selftest::{Shape, StackCase, check_dropout, check_gemm, check_stack};
use charlstm_cuda::gpu::{CudaDevice, GpuDevice, SimDevice};
use charlstm_cuda::ops::Mode;
use charlstm_cuda::sample::{Purpose, RngStream};

fn sim() -> Option<SimDevice> {
    if !common::kernels() {
        return None;
    }
    Some(SimDevice::new(seed()))
}

fn rng(stream: u32) -> RngStream {
    RngStream::new(seed(), Purpose::Sample, stream)
}

fn gemms_on<D: GpuDevice>(dev: &mut D, shapes: &[(usize, usize, usize)], stream: u32) {
    let mut rng = rng(stream);
    let mut rows = Vec::new();
    for &s in shapes {
        rows.extend(check_gemm(dev, s, &mut rng).unwrap());
    }
    assert!(rows.iter().any(|r| r.kernel.contains("gemm_reduce_f32")));
    assert_all_pass(rows);
}

fn dropouts_on<D: GpuDevice>(dev: &mut D, cases: &[(usize, usize, f64)], stream: u32) {
    let mut rng = rng(stream);
    let mut rows = Vec::new();
    for &(r, h, p) in cases {
        rows.extend(check_dropout(dev, (r, h), p, &mut rng).unwrap());
    }
    assert_all_pass(rows);
}

fn shape(vocab: usize, hidden: usize, batch: usize, seq_len: usize) -> Shape {
    Shape {
        vocab,
        hidden,
        batch,
        seq_len,
    }
}

/// Each case on the per-step kernels, and on the persistent ones where H
/// is a multiple of 8 up to 128.
fn stacks_on<D: GpuDevice>(dev: &mut D, cases: &[(Shape, usize, f64, bool)], stream: u32) {
    let mut rng = rng(stream);
    let mut rows = Vec::new();
    for &(shape, layers, p, window) in cases {
        let mut paths = vec![LstmPath::PerStep];
        if shape.hidden % 8 == 0 && shape.hidden <= 128 {
            paths.push(LstmPath::Persistent);
        }
        for path in paths {
            let case = StackCase {
                shape,
                layers,
                p,
                window,
                path,
            };
            rows.extend(check_stack(dev, case, &mut rng).unwrap());
        }
    }
    assert_all_pass(rows);
}

#[test]
fn gemm_matches_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    gemms_on(
        &mut dev,
        &[(5, 7, 3), (20, 64, 150), (70, 33, 130), (1, 1, 0)],
        1,
    );
}

#[test]
fn dropout_matches_cpu_exactly_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    dropouts_on(
        &mut dev,
        &[(20, 16, 0.25), (15, 7, 0.5), (3, 1, 0.0), (12, 33, 0.9)],
        2,
    );
}

#[test]
fn two_layers_with_dropout_match_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    stacks_on(
        &mut dev,
        &[
            (shape(70, 32, 3, 5), 2, 0.25, false),
            (shape(9, 12, 4, 5), 2, 0.25, true),
            (shape(20, 8, 1, 2), 2, 0.5, true),
        ],
        3,
    );
}

#[test]
fn three_layers_match_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    stacks_on(
        &mut dev,
        &[
            (shape(20, 16, 4, 5), 3, 0.0, false),
            (shape(9, 8, 3, 1), 3, 0.3, true),
        ],
        4,
    );
}

#[test]
fn hidden_128_stack_matches_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    // B = 3 on the simulator's 2 SMs: 2 rows a block, the last block 1 (the
    // dense layer's h128 sequence kernel sums several rows and a partial
    // block); the selftest's H = 128 stack runs 1 row a block.
    stacks_on(&mut dev, &[(shape(57, 128, 3, 3), 2, 0.25, false)], 5);
}

/// Above H = 128 only the per-step kernels run the recurrence; the GEMMs'
/// 4H = 640 columns cross ten 64-wide tiles.
#[test]
fn hidden_160_stack_matches_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    stacks_on(&mut dev, &[(shape(9, 160, 2, 2), 2, 0.25, true)], 9);
}

/// Calls the stack cannot run are refused, naming what is wrong and the
/// fix, before anything is launched.
#[test]
fn bad_stack_calls_are_refused_with_clear_errors() {
    let Some(mut dev) = sim() else { return };
    let dims = StackDims {
        layers: 2,
        batch: 2,
        seq_len: 3,
        hidden: 8,
        vocab: 5,
    };
    let io = StackIo {
        layers: vec![LayerPtrs::default(); 2],
        ..StackIo::default()
    };
    let mut ws = StackWorkspace::default();
    let e = ws.buffers(dims, &io).unwrap_err().to_string();
    assert!(e.contains("StackWorkspace::ensure"), "{e}");
    ws.ensure(&mut dev, dims, false).unwrap();
    let three = StackIo {
        layers: vec![LayerPtrs::default(); 3],
        ..StackIo::default()
    };
    let e = ws.buffers(dims, &three).unwrap_err().to_string();
    assert!(e.contains("3 layers of weights"), "{e}");
    let bigger = StackDims { batch: 3, ..dims };
    assert!(ws.buffers(bigger, &io).is_err());
    let bufs = ws.buffers(dims, &io).unwrap();
    let train = Mode::Train { seed: 1, step: 0 };
    let with = |p| StackLauncher {
        p,
        ..StackLauncher::default()
    };
    let e = with(0.5)
        .forward(&mut dev, dims, &bufs, train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dropped-output buffer"), "{e}");
    let e = with(1.0)
        .forward(&mut dev, dims, &bufs, Mode::Eval)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[0, 1)"), "{e}");
    // A dense layer's buffers with layer 0's one-hot sizes.
    let e = LstmLauncher::default()
        .forward(&mut dev, dims.layer(0), &bufs.layers[1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("LstmDims::dense"), "{e}");
    ws.free(&mut dev).unwrap();
}

/// The same checks on a GPU (the GPU bundle runs every `*cuda*` test), up
/// to the Keras shape with two layers.
#[test]
fn stack_kernels_match_cpu_on_cuda() {
    let mut dev = match CudaDevice::new(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("SKIPPED: no GPU ({e})");
            return;
        }
    };
    gemms_on(
        &mut dev,
        &[(5, 7, 3), (70, 33, 130), (7680, 512, 128), (128, 512, 7680)],
        6,
    );
    dropouts_on(&mut dev, &[(20, 16, 0.25), (7680, 128, 0.5)], 7);
    stacks_on(
        &mut dev,
        &[
            (shape(70, 32, 3, 5), 2, 0.25, false),
            (shape(9, 12, 4, 5), 3, 0.25, true),
            (shape(57, 128, 128, 60), 2, 0.25, true),
            (shape(57, 128, 64, 20), 3, 0.1, false),
            (shape(57, 256, 16, 10), 2, 0.25, false),
        ],
        8,
    );
}
