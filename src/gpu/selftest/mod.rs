//! `selftest`: every kernel against the CPU reference on a device, plus a
//! short training run of the GPU engine against the CPU engine (DESIGN §7).
//!
//! Written once, generic over [`GpuDevice`], so the simulator and a real GPU
//! run identical code. Inputs are random, drawn from a seed (fresh per run
//! in the CLI, printed, replayable). Every output buffer is filled with NaN
//! before the launches that should write it, so an element a kernel leaves
//! unwritten shows up as a non-finite value and fails its row (RMSprop and
//! gradient clipping update in place: their outputs start as their inputs,
//! which they must change).
//!
//! Each check gives one [`SelftestRow`] per output tensor. Error metric, per
//! tensor, with `want` from the CPU reference and `floor = 0.1 * max|want|`:
//!
//! ```text
//! max rel err = max_i |got_i - want_i| / (|want_i| + floor)      pass: <= bound
//! ```
//!
//! which is exactly `|got - want| <= abs + bound * |want|` with
//! `abs = bound * floor` (for the f32 kernels' bound 1e-4, `abs = 1e-5 *
//! max|want|`): elements far above the floor are held to the plain relative
//! error, and elements that cancel to nearly zero, whose relative error
//! means nothing, to a small absolute error. The weights after the training
//! steps are compared as whole tensors instead, `||got - want|| / ||want||`
//! ([`Metric::RelL2`]; `training.rs` says why).
//!
//! Files: `kernels.rs` the per-kernel checks (RMSprop, gradient clipping, head, LSTM forward
//! and backward), `sequence.rs` the same kernels' sequence form (initial state, a loss at
//! every step, the head over B*T rows), `batch.rs` the captured step's bookkeeping kernels, `training.rs` the engine-vs-engine steps, `report.rs` the
//! rows and the table, `stack.rs` the stacked layers' kernels (dense GEMMs, dropout, the
//! device stack), `full_shape.rs` the training and generation checks
//! at the Keras shape for the simulator ([`run_full_shape`]).

mod batch;
mod full_shape;
mod generate;
mod kernels;
mod report;
mod sequence;
mod stack;
mod training;

pub use batch::{check_batch_select, check_loss_log, check_op_classes};
pub use full_shape::{FullShape, FullShapeReport, Phase, run_full_shape};
pub use generate::{
    TIE_REL, check_generate, check_generate_with, check_targets, generate_kernel, strategies,
    tie_distance,
};
pub use kernels::{
    Case, check_grad_clip, check_head, check_lstm_backward, check_lstm_backward_with,
    check_lstm_forward, check_lstm_forward_with, check_rmsprop,
};
pub use report::{Bound, Metric, SelftestReport, SelftestRow};
pub use sequence::{HeadRows, check_sequence, head_rows};
pub use stack::{StackCase, check_dropout, check_gemm, check_stack};
pub use training::check_training;

use std::fmt;

use super::device::{DevicePtr, GpuDevice};
use super::lstm::{LstmLauncher, LstmPath};
use crate::error::{Error, Result};
use crate::sample::{GenMode, Purpose, RngStream};

/// Bound of the f32 kernels with reductions and transcendentals (f32 vs
/// the f64 reference: summation order and `expf`/`tanhf` differ by a few
/// ulp per operation; 1e-4 leaves room for sums over T x B terms).
pub const BOUND_F32_KERNEL: Bound = Bound::max_rel(1e-4);
/// Bound of `rmsprop_update_f32` against `RmsProp::step::<f32>`: the same
/// element-wise IEEE operations on both sides, so at most an ulp or two
/// (an FMA contraction); 1e-6 is about 8 ulp.
pub const BOUND_RMSPROP: Bound = Bound::max_rel(1e-6);
/// Bound of the loss of a training step from the CPU engine's state: the
/// forward's rounding only (an H200: ~1e-7).
pub const BOUND_TRAINING_LOSS: Bound = Bound::max_rel(1e-5);
/// Bound of the weights and RMSprop state after one step from the CPU
/// engine's state, as whole tensors (see `training.rs` for why not
/// element-wise, and why not after many steps run apart); an H200: ~1e-6.
pub const BOUND_TRAINING_WEIGHTS: Bound = Bound::rel_l2(1e-4);
/// Bound of `grad_norm_clip_f32` against `cpu::clip_grad_norm::<f32>`: the
/// norm is summed in f64 on both sides, in another order, so the scale
/// (rounded to f32) and every clipped gradient differ by at most an ulp.
pub const BOUND_CLIP: Bound = Bound::max_rel(1e-6);
/// Exact: the decoded input classes.
pub const BOUND_EXACT: Bound = Bound::max_rel(0.0);
/// Every kernel of `kernels/` (the generated contract's list), each covered
/// by a check below: tests/selftest.rs fails when the report has no row for
/// one, so a new kernel cannot join the build unchecked.
pub const KERNELS: &[&str] = crate::gpu::contract::KERNELS;

/// Elements below this fraction of a tensor's largest |want| are measured
/// against it instead of their own magnitude (see the module docs).
pub const FLOOR: f64 = 0.1;

/// Sizes of one model and batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Batch rows B.
    pub batch: usize,
    /// Time steps T (`maxlen`).
    pub seq_len: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "V={} H={} B={} T={}",
            self.vocab, self.hidden, self.batch, self.seq_len
        )
    }
}

impl Shape {
    /// The Keras job's: V = 57 (the Nietzsche text's characters), H = 128,
    /// B = 128, T = 60.
    pub const KERAS: Shape = Shape {
        vocab: 57,
        hidden: 128,
        batch: 128,
        seq_len: 60,
    };

    /// `(V, H, B, T)`.
    pub fn vhbt(&self) -> (usize, usize, usize, usize) {
        (self.vocab, self.hidden, self.batch, self.seq_len)
    }
}

/// What the selftest runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SelftestShapes {
    /// The kernel checks (RMSprop over a V x H model, head, LSTM).
    pub kernels: Shape,
    /// The engine-vs-engine training run.
    pub training: Shape,
    /// Training steps compared.
    pub steps: usize,
    /// Characters generated per strategy (from the kernel checks' model).
    pub gen_length: usize,
}

impl SelftestShapes {
    /// The Keras job (V=57, H=128, B=128, T=60) everywhere: for a real GPU.
    pub fn full() -> Self {
        SelftestShapes {
            kernels: Shape::KERAS,
            training: Shape::KERAS,
            steps: 20,
            gen_length: 400,
        }
    }

    /// Small enough for the simulator (a few seconds in a release build),
    /// still crossing what the kernels' indexing depends on: V > 64 (two
    /// u64 words per one-hot row), B*H and 4H above the 128-thread block,
    /// H above the 32-lane warp.
    pub fn small() -> Self {
        SelftestShapes {
            kernels: Shape {
                vocab: 70,
                hidden: 33,
                batch: 4,
                seq_len: 3,
            },
            training: Shape {
                vocab: 20,
                hidden: 16,
                batch: 8,
                seq_len: 6,
            },
            steps: 20,
            gen_length: 12,
        }
    }
}

/// Runs every check on `dev`, inputs drawn from `seed`.
///
/// A check that fails to run (a launch the device refuses, a fault the
/// simulator catches) becomes a failing row carrying the error, and the
/// other checks still run; only a device that cannot run kernels at all
/// ([`Error::BackendUnavailable`], [`Error::NoKernels`]) ends the selftest
/// with an error.
pub fn run<D: GpuDevice>(dev: &mut D, shapes: SelftestShapes, seed: u64) -> Result<SelftestReport> {
    let mut report = SelftestReport::default();
    let mut record = |kernel: &str, shape: &dyn fmt::Display, rows: Result<Vec<SelftestRow>>| {
        record(&mut report, kernel, shape, rows)
    };
    let k = shapes.kernels;
    let mut rng = RngStream::new(seed, Purpose::Sample, STREAM_KERNELS);
    let case = Case::random(k, &mut rng)?;
    let rmsprop = check_rmsprop(dev, k.vocab, k.hidden, &mut rng);
    record("rmsprop_update_f32", &k, rmsprop)?;
    let clip = check_grad_clip(dev, k.vocab, k.hidden, &mut rng);
    record("grad_norm_clip_f32", &k, clip)?;
    record("head_fwd_bwd_f32", &k, check_head(dev, &case, true))?;
    record("lstm_cell_fwd_f32", &k, check_lstm_forward(dev, &case))?;
    record("lstm_cell_bwd_f32", &k, check_lstm_backward(dev, &case))?;
    record("batch_targets_u32", &k, check_targets(dev, &case))?;
    // The persistent kernels need H a multiple of 8, and H = 128 has its own
    // builds (forward, backward, generation): the job at the nearest H
    // below that is a multiple of 8 (64 when that is 128, so a GPU run at
    // the Keras shape checks the generic builds too), and at H = 128 (the
    // kernel shape itself when it is 128, else two rows and three steps).
    let persistent = LstmLauncher {
        path: LstmPath::Persistent,
        ..LstmLauncher::default()
    };
    let generic = Shape {
        hidden: match (k.hidden / 8 * 8).max(8) {
            128 => 64,
            h => h,
        },
        ..k
    };
    let h128 = match k.hidden {
        128 => k,
        _ => Shape {
            hidden: 128,
            batch: k.batch.min(2),
            seq_len: k.seq_len.min(3),
            ..k
        },
    };
    for p in [generic, h128] {
        let fresh;
        let pcase = if p == k {
            &case
        } else {
            fresh = Case::random(p, &mut rng)?;
            &fresh
        };
        let (fwd_name, bwd_name) = match persistent.plan(dev, pcase.lstm_dims()) {
            Ok(Some(plan)) => plan.kernels(),
            _ => ("lstm_persistent_fwd_f32", "lstm_persistent_bwd_f32"),
        };
        let fwd = check_lstm_forward_with(dev, pcase, persistent);
        record(fwd_name, &p, fwd)?;
        let bwd = check_lstm_backward_with(dev, pcase, persistent);
        record(bwd_name, &p, bwd)?;
        if p != k {
            for mode in [GenMode::Window, GenMode::Stateful] {
                let generate = check_generate(dev, pcase, shapes.gen_length, seed, mode);
                record(
                    generate_kernel(dev, p, shapes.gen_length, mode),
                    &p,
                    generate,
                )?;
            }
        }
    }
    for mode in [GenMode::Window, GenMode::Stateful] {
        let generate = check_generate(dev, &case, shapes.gen_length, seed, mode);
        record(
            generate_kernel(dev, k, shapes.gen_length, mode),
            &k,
            generate,
        )?;
    }
    // The sequence form (initial state, a loss at every step): the per-step
    // kernels at the kernel shape, the persistent ones at the two shapes
    // above (generic H and H = 128).
    let per_step = LstmLauncher {
        path: LstmPath::PerStep,
        ..LstmLauncher::default()
    };
    for (p, launcher) in [(k, per_step), (generic, persistent), (h128, persistent)] {
        let name = match persistent.plan(dev, dims_of(p)) {
            Ok(Some(plan)) if launcher.path == LstmPath::Persistent => {
                plan.kernels_for(true, true).0
            }
            _ => "lstm_cell_fwd_f32 (sequence form)",
        };
        record(name, &p, check_sequence(dev, p, launcher, true, &mut rng))?;
    }
    // Stacked layers: the dense GEMMs (at the kernel shape's products, and
    // a k long enough to split), dropout, and a 2-layer stack with dropout
    // on the per-step kernels and on the persistent ones (generic H in the
    // window form, H = 128 in the sequence form).
    let (kt, kh) = (k.seq_len * k.batch, k.hidden);
    for mnk in [(kt, 4 * kh, kh), (kh, 4 * kh, kt.max(130))] {
        let shape = format!("M={} N={} K={}", mnk.0, mnk.1, mnk.2);
        record("gemm_nn_f32", &shape, check_gemm(dev, mnk, &mut rng))?;
    }
    record(
        "dropout_fwd_f32",
        &k,
        check_dropout(dev, (kt, kh), 0.25, &mut rng),
    )?;
    for (p, path, window) in [
        (k, LstmPath::PerStep, false),
        (generic, LstmPath::Persistent, true),
        (h128, LstmPath::Persistent, false),
    ] {
        let case = StackCase {
            shape: p,
            layers: 2,
            p: 0.25,
            window,
            path,
        };
        let name = "lstm stack (2 layers, dropout)";
        record(name, &p, check_stack(dev, case, &mut rng))?;
    }
    // The cluster kernels (Hopper; the simulator), at H = 256 (their
    // compiled-in build) and H = 64 (the generic one), two rows and three
    // steps: the window form forward and backward, the sequence form, and
    // a 2-layer stack with dropout.
    if dev.clusters() {
        let cluster = LstmLauncher {
            path: LstmPath::Cluster,
            ..LstmLauncher::default()
        };
        for hidden in [256, 64] {
            let p = Shape {
                hidden,
                batch: k.batch.min(2),
                seq_len: k.seq_len.min(3),
                ..k
            };
            let pcase = Case::random(p, &mut rng)?;
            let (fwd_name, bwd_name) = match cluster.cluster_plan(dev, pcase.lstm_dims()) {
                Ok(Some(plan)) => plan.kernels(),
                _ => ("lstm_cluster_fwd_f32", "lstm_cluster_bwd_f32"),
            };
            let fwd = check_lstm_forward_with(dev, &pcase, cluster);
            record(fwd_name, &p, fwd)?;
            let bwd = check_lstm_backward_with(dev, &pcase, cluster);
            record(bwd_name, &p, bwd)?;
            let seq = check_sequence(dev, p, cluster, true, &mut rng);
            record(&format!("{fwd_name} (sequence form)"), &p, seq)?;
            let case = StackCase {
                shape: p,
                layers: 2,
                p: 0.25,
                window: true,
                path: LstmPath::Cluster,
            };
            let name = "lstm stack (2 layers, dropout, cluster kernels)";
            record(name, &p, check_stack(dev, case, &mut rng))?;
        }
    }
    record("batch_select_u32", &"", check_batch_select(dev, &mut rng))?;
    record(
        "op_classes_onehot_u32",
        &k,
        check_op_classes(dev, k, &mut rng),
    )?;
    record("loss_log_append_f32", &"", check_loss_log(dev, &mut rng))?;
    let (t, steps) = (shapes.training, shapes.steps);
    record("GpuEngine", &t, check_training(dev, t, steps, seed))?;
    Ok(report)
}

/// The LSTM sizes of `shape` (one-hot rows of ceil(V / 64) words).
fn dims_of(shape: Shape) -> super::lstm::LstmDims {
    super::lstm::LstmDims {
        batch: shape.batch,
        seq_len: shape.seq_len,
        hidden: shape.hidden,
        vocab: shape.vocab,
        words_per_row: shape.vocab.div_ceil(64),
    }
}

/// Philox stream of the kernel checks' inputs (the training check uses its own).
const STREAM_KERNELS: u32 = 0x5e1f_7e57;

/// Adds a check's rows to `report`, or a failing row carrying the error of
/// a check that could not run; only a device that cannot run kernels at
/// all is an error.
fn record(
    report: &mut SelftestReport,
    kernel: &str,
    shape: &dyn fmt::Display,
    rows: Result<Vec<SelftestRow>>,
) -> Result<()> {
    match rows {
        Ok(rows) => report.rows.extend(rows),
        Err(e @ (Error::BackendUnavailable { .. } | Error::NoKernels { .. })) => return Err(e),
        Err(e) => report
            .rows
            .push(SelftestRow::error(kernel, &shape.to_string(), &e)),
    }
    Ok(())
}

/// Worst relative error of `got` against `want` (module docs) and how many
/// `got` are not finite (NaN: most likely never written).
pub(crate) fn max_rel_err(got: &[f64], want: &[f64]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "selftest: compared lengths differ");
    let floor = FLOOR * want.iter().fold(0f64, |m, w| m.max(w.abs()));
    let mut worst = 0f64;
    let mut non_finite = 0;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            non_finite += 1;
            continue;
        }
        let err = (g - w).abs();
        let denom = w.abs() + floor;
        // An all-zero reference has no scale: only an exact match passes.
        let e = if denom > 0.0 {
            err / denom
        } else if err == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        worst = worst.max(e);
    }
    if non_finite > 0 {
        worst = f64::INFINITY;
    }
    (worst, non_finite)
}

/// Relative L2 error `||got - want|| / ||want||` and how many `got` are not
/// finite.
pub(crate) fn rel_l2_err(got: &[f64], want: &[f64]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "selftest: compared lengths differ");
    let non_finite = got.iter().filter(|g| !g.is_finite()).count();
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    let err = match (non_finite, norm > 0.0) {
        (0, true) => (diff / norm).sqrt(),
        (0, false) if diff == 0.0 => 0.0,
        _ => f64::INFINITY,
    };
    (err, non_finite)
}

/// The buffers of one check: uploads, NaN-poisoned outputs, and one place
/// that frees them all.
pub(crate) struct Buffers(Vec<DevicePtr>);

impl Buffers {
    /// A fresh buffer holding `data`.
    pub(crate) fn f32s<D: GpuDevice>(&mut self, dev: &mut D, data: &[f32]) -> Result<DevicePtr> {
        self.bytes(dev, bytemuck::cast_slice(data))
    }

    /// A fresh buffer holding `data`.
    pub(crate) fn bytes<D: GpuDevice>(&mut self, dev: &mut D, data: &[u8]) -> Result<DevicePtr> {
        // A zero-length allocation would be a null pointer some kernels read as "absent".
        let p = dev.alloc(data.len().max(4))?;
        dev.upload(p, data)?;
        self.0.push(p);
        Ok(p)
    }

    /// A fresh buffer holding `data`, f64 rounded to f32.
    pub(crate) fn f64s<D: GpuDevice>(&mut self, dev: &mut D, data: &[f64]) -> Result<DevicePtr> {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.f32s(dev, &v)
    }

    /// A fresh buffer holding `data`.
    pub(crate) fn u32s<D: GpuDevice>(&mut self, dev: &mut D, data: &[u32]) -> Result<DevicePtr> {
        self.bytes(dev, bytemuck::cast_slice(data))
    }

    /// `n` f32 NaNs: an output whose every element the kernel must write.
    pub(crate) fn poisoned<D: GpuDevice>(&mut self, dev: &mut D, n: usize) -> Result<DevicePtr> {
        self.f32s(dev, &vec![f32::NAN; n])
    }

    /// Runs `check` with a fresh set of buffers and frees them all after it,
    /// also when it fails (a failed check must not leak into the next).
    pub(crate) fn scope<D: GpuDevice, T>(
        dev: &mut D,
        check: impl FnOnce(&mut D, &mut Buffers) -> Result<T>,
    ) -> Result<T> {
        let mut bufs = Buffers(Vec::new());
        let out = check(dev, &mut bufs);
        let freed = bufs.0.into_iter().try_for_each(|p| dev.free(p));
        let out = out?;
        freed.map(|()| out)
    }
}

/// The rows of one check at one shape.
pub(crate) struct Rows {
    shape: String,
    /// The rows so far.
    pub(crate) rows: Vec<SelftestRow>,
}

impl Rows {
    /// No rows yet; each will name `shape`.
    pub(crate) fn new(shape: impl fmt::Display) -> Self {
        let (shape, rows) = (shape.to_string(), Vec::new());
        Rows { shape, rows }
    }

    /// Adds the row of `kernel`'s `output`: `got` against `want`, widened to f64.
    pub(crate) fn compare<G, W>(
        &mut self,
        kernel: &str,
        output: &str,
        got: &[G],
        want: &[W],
        bound: Bound,
    ) where
        G: Copy + Into<f64>,
        W: Copy + Into<f64>,
    {
        let (got, want): (Vec<f64>, Vec<f64>) = (widen(got), widen(want));
        let row = SelftestRow::compare(kernel, output, &self.shape, &got, &want, bound);
        self.rows.push(row);
    }

    /// [`compare`](Self::compare) of the `want.len()` f32s at `got`.
    pub(crate) fn device<D: GpuDevice, W: Copy + Into<f64>>(
        &mut self,
        dev: &mut D,
        kernel: &str,
        output: &str,
        got: DevicePtr,
        want: &[W],
        bound: Bound,
    ) -> Result<()> {
        let got = download(dev, got, want.len())?;
        self.compare(kernel, output, &got, want, bound);
        Ok(())
    }
}

/// `x` as f64s.
pub(crate) fn widen<T: Copy + Into<f64>>(x: &[T]) -> Vec<f64> {
    x.iter().map(|&v| v.into()).collect()
}

/// `n` f32s from `src`, widened for the comparison.
pub(crate) fn download<D: GpuDevice>(dev: &mut D, src: DevicePtr, n: usize) -> Result<Vec<f64>> {
    Ok(dev
        .download_vec_f32(src, n)?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// Uniform in [-a, a).
pub(crate) fn uniform(rng: &mut RngStream, a: f64) -> f64 {
    a * (2.0 * rng.next_f64() - 1.0)
}
