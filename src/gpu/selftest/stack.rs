//! The kernels of stacked layers (issue 17) against the CPU reference: the
//! dense GEMMs, dropout, and the whole device stack
//! ([`crate::gpu::lstm::stack`]: one-hot layer 0, dense layers above it
//! through the `_dense_` forward kernels, dropout between them) against
//! [`crate::ops::Lstm`] in f64.
//!
//! | check | kernels | reference |
//! |---|---|---|
//! | [`check_gemm`] | `gemm_{nn,nt,tn}_f32`, whole and split over k (+ `gemm_reduce_f32`) | the sums in f64 |
//! | [`check_dropout`] | `dropout_{fwd,bwd}_f32` | `ops::dropout::mask` applied in f32 (exact) |
//! | [`check_stack`] | the stack's forward and backward | `ops::Lstm::{forward, backward}::<f64>` in `Mode::Train` |
//!
//! Every output NaN-poisoned first. The stack's rows name the kernel that
//! writes each output last (a wrong input GEMM or mask shows up in every
//! output above it; the per-kernel rows say which).

use super::kernels::{random_starts, random_text};
use super::{
    BOUND_EXACT, BOUND_F32_KERNEL, Bound, Buffers, Rows, SelftestRow, Shape, download, uniform,
};
use crate::corpus::OneHotCorpus;
use crate::error::Result;
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::dropout::{DropoutLauncher, DropoutMask};
use crate::gpu::gemm::{GemmDims, GemmForm, GemmLauncher};
use crate::gpu::lstm::stack::{LayerPtrs, StackDims, StackIo, StackLauncher, StackWorkspace};
use crate::gpu::lstm::{LstmLauncher, LstmPath};
use crate::ops::{LayerParams, Lstm, LstmInput, Mode, dropout};
use crate::sample::RngStream;

fn random_vec(rng: &mut RngStream, n: usize, a: f64) -> Vec<f32> {
    (0..n).map(|_| uniform(rng, a) as f32).collect()
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// The three GEMM forms at `(m, n, k)` against their sums in f64, each
/// whole (one block per tile) and with k split over blocks (when k is long
/// enough to split: `GemmLauncher::scratch_len`), `gemm_nn_f32` with a
/// bias.
pub fn check_gemm<D: GpuDevice>(
    dev: &mut D,
    (m, n, k): (usize, usize, usize),
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let d = GemmDims { m, n, k };
    let launcher = GemmLauncher {
        // Split whenever k allows it, at any size.
        target_blocks: 1 << 20,
        ..GemmLauncher::default()
    };
    Buffers::scope(dev, |dev, bufs| {
        let mut rows = Rows::new(format!("M={m} N={n} K={k}"));
        let scratch_len = GemmLauncher::scratch_len(d);
        let scratch = match scratch_len {
            0 => DevicePtr::NULL,
            len => bufs.poisoned(dev, len)?,
        };
        for form in [GemmForm::NN, GemmForm::NT, GemmForm::TN] {
            let a = random_vec(rng, m * k, 1.0);
            let b = random_vec(rng, k * n, 1.0);
            let bias = match form {
                GemmForm::NN => random_vec(rng, n, 1.0),
                _ => Vec::new(),
            };
            // op(A)[i, kk] and op(B)[kk, j] as the form lays them out.
            let at = |i: usize, kk: usize| match form {
                GemmForm::TN => a[kk * m + i],
                _ => a[i * k + kk],
            };
            let bt = |kk: usize, j: usize| match form {
                GemmForm::NT => b[j * k + kk],
                _ => b[kk * n + j],
            };
            let want: Vec<f64> = (0..m * n)
                .map(|e| {
                    let (i, j) = (e / n, e % n);
                    let sum: f64 = (0..k)
                        .map(|kk| f64::from(at(i, kk)) * f64::from(bt(kk, j)))
                        .sum();
                    sum + bias.get(j).map_or(0.0, |&x| f64::from(x))
                })
                .collect();
            let (da, db) = (bufs.f32s(dev, &a)?, bufs.f32s(dev, &b)?);
            let dbias = match bias.is_empty() {
                true => DevicePtr::NULL,
                false => bufs.f32s(dev, &bias)?,
            };
            let c = bufs.poisoned(dev, m * n)?;
            let mut runs = vec![(DevicePtr::NULL, form.kernel().to_string())];
            if scratch != DevicePtr::NULL {
                let split = format!("{} + gemm_reduce_f32 (k split)", form.kernel());
                runs.push((scratch, split));
            }
            for (scratch, name) in runs {
                dev.upload_f32(c, &vec![f32::NAN; m * n])?;
                launcher.run(dev, form, d, (da, db, dbias), c, scratch)?;
                dev.synchronize()?;
                rows.device(dev, &name, "C", c, &want, BOUND_F32_KERNEL)?;
            }
        }
        Ok(rows.rows)
    })
}

/// Dropout over `rows` x `hidden` at probability `p`, forward (out of
/// place) and backward (in place), against `ops::dropout::mask` applied in
/// f32: the same mask and the same product, so exactly equal.
pub fn check_dropout<D: GpuDevice>(
    dev: &mut D,
    (rows, hidden): (usize, usize),
    p: f64,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let mask = DropoutMask {
        p,
        seed: rng.next_u64(),
        step: rng.next_u32(),
        step_at: DevicePtr::NULL,
        layer: rng.below(4) as u32,
    };
    let keep = dropout::mask(p, (mask.seed, mask.step), mask.layer, (rows, 1, hidden))?;
    let scale = 1.0f32 / (1.0f32 - p as f32);
    let apply = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .zip(&keep)
            .map(|(&v, &k)| if k { v * scale } else { 0.0 })
            .collect()
    };
    let (x, dy) = (
        random_vec(rng, rows * hidden, 1.0),
        random_vec(rng, rows * hidden, 1.0),
    );
    Buffers::scope(dev, |dev, bufs| {
        let mut out = Rows::new(format!("T*B={rows} H={hidden} p={p}"));
        let launcher = DropoutLauncher::default();
        let (x_in, y_out) = (bufs.f32s(dev, &x)?, bufs.poisoned(dev, rows * hidden)?);
        launcher.forward(dev, mask, (rows, hidden), x_in, y_out)?;
        let d = bufs.f32s(dev, &dy)?;
        launcher.backward(dev, mask, (rows, hidden), d, d)?;
        dev.synchronize()?;
        let fwd = download(dev, y_out, rows * hidden)?;
        out.compare("dropout_fwd_f32", "y", &fwd, &apply(&x), BOUND_EXACT);
        let bwd = download(dev, d, rows * hidden)?;
        out.compare(
            "dropout_bwd_f32",
            "dx (in place)",
            &bwd,
            &apply(&dy),
            BOUND_EXACT,
        );

        // The step from the device counter (the launch argument is another
        // step, which must be ignored), after the counter advanced to it.
        let counter = bufs.u32s(dev, &[mask.step.wrapping_sub(1)])?;
        launcher.advance_step(dev, counter)?;
        let from_counter = DropoutMask {
            step: mask.step ^ 0x5555_5555,
            step_at: counter,
            ..mask
        };
        let y = bufs.poisoned(dev, rows * hidden)?;
        launcher.forward(dev, from_counter, (rows, hidden), x_in, y)?;
        dev.synchronize()?;
        let name = "dropout_fwd_f32 (step from dropout_step_advance_u32's counter)";
        let got = download(dev, y, rows * hidden)?;
        out.compare(name, "y", &got, &apply(&x), BOUND_EXACT);
        let mut step = [0u32];
        dev.download(counter, bytemuck::cast_slice_mut(&mut step))?;
        let advanced = "dropout_step_advance_u32";
        out.compare(advanced, "step", &step, &[mask.step], BOUND_EXACT);
        Ok(out.rows)
    })
}

/// How [`check_stack`] runs the stack.
#[derive(Clone, Copy, Debug)]
pub struct StackCase {
    /// V, H, B, T.
    pub shape: Shape,
    /// Layers N.
    pub layers: usize,
    /// Dropout between layers (the masks of a random training step).
    pub p: f64,
    /// The window form (zero initial state, one gradient at the top
    /// layer's last step, as the window trainer runs it), else the
    /// sequence form (random h0, c0, a gradient at every step, dh_T, dc_T).
    pub window: bool,
    /// Persistent or per-step recurrence.
    pub path: LstmPath,
}

/// The device stack against `ops::Lstm::<f64>` (see the module docs):
/// the top layer's h at every step, every layer's final state, every
/// layer's weight gradients, and in the sequence form dh_0, dc_0.
pub fn check_stack<D: GpuDevice>(
    dev: &mut D,
    case: StackCase,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let (v, h, b, t) = case.shape.vhbt();
    let n = case.layers;
    let g = 4 * h;
    let corpus = OneHotCorpus::from_text(&random_text(rng, v, v + t + 64), false)?;
    let starts = random_starts(rng, &corpus, b, t);
    let x: Vec<u32> = (0..t * b)
        .map(|s| corpus.class_at(starts[s % b] as usize + s / b))
        .collect();
    let summed = 0.6 * (32.0 / h as f64).sqrt().min(1.0);
    let weights: Vec<LayerParams<f32>> = (0..n)
        .map(|l| LayerParams {
            kernel: random_vec(
                rng,
                if l == 0 { v } else { h } * g,
                if l == 0 { 0.6 } else { summed },
            ),
            recurrent_kernel: random_vec(rng, h * g, summed),
            bias: random_vec(rng, g, 0.6),
        })
        .collect();
    let state = |rng: &mut RngStream, a: f64| random_vec(rng, n * b * h, a);
    let (h0, c0, dh_n, dc_n, dy) = if case.window {
        let mut dy = vec![0.0; t * b * h];
        dy[(t - 1) * b * h..].copy_from_slice(&random_vec(rng, b * h, 0.1));
        (None, None, None, None, dy)
    } else {
        let (h0, c0) = (state(rng, 0.9), state(rng, 1.5));
        let (dh, dc) = (state(rng, 0.1), state(rng, 0.1));
        (
            Some(h0),
            Some(c0),
            Some(dh),
            Some(dc),
            random_vec(rng, t * b * h, 0.1),
        )
    };
    let mode = Mode::Train {
        seed: rng.next_u64(),
        step: rng.next_u32(),
    };

    let w64: Vec<LayerParams<f64>> = weights
        .iter()
        .map(|w| LayerParams {
            kernel: widen(&w.kernel),
            recurrent_kernel: widen(&w.recurrent_kernel),
            bias: widen(&w.bias),
        })
        .collect();
    let views: Vec<_> = w64.iter().map(LayerParams::weights).collect();
    let lstm = Lstm::new(n, v, h)?.with_dropout(case.p)?.with_threads(1);
    let opt = |s: &Option<Vec<f32>>| s.as_deref().map(widen);
    let (h0_64, c0_64, dh_64, dc_64) = (opt(&h0), opt(&c0), opt(&dh_n), opt(&dc_n));
    let input = LstmInput::classes(&x, t, b);
    let out = lstm.forward(&views, input, h0_64.as_deref(), c0_64.as_deref(), mode)?;
    let (y_ref, h_n_ref, c_n_ref) = (out.y().to_vec(), out.h_n().to_vec(), out.c_n().to_vec());
    let grads = lstm.backward(&views, out, &widen(&dy), dh_64.as_deref(), dc_64.as_deref())?;

    let dims = StackDims {
        layers: n,
        batch: b,
        seq_len: t,
        hidden: h,
        vocab: v,
    };
    let launcher = StackLauncher {
        lstm: LstmLauncher {
            path: case.path,
            ..LstmLauncher::default()
        },
        p: case.p,
        ..StackLauncher::default()
    };
    let plan = launcher.lstm.plan(dev, dims.layer(0))?;
    let cluster = launcher.lstm.cluster_plan(dev, dims.layer(0))?;
    let seq = !case.window;
    // Layer l's kernels: the top layer's backward is the window form's in
    // the window form, every other layer's the sequence form's (the
    // cluster kernels take both forms, and a dense input, as arguments).
    let (fwd0, fwd_dense) = match (cluster, plan) {
        (Some(c), _) => (c.kernels().0, c.kernels().0),
        (None, Some(plan)) => (plan.kernels_for(seq, seq).0, plan.dense_forward()),
        (None, None) => ("lstm_cell_fwd_f32", "lstm_cell_dense_fwd_f32"),
    };
    let bwd = |l: usize| match (cluster, plan) {
        (Some(c), _) => c.kernels().1,
        (None, Some(plan)) => plan.kernels_for(seq, seq || l + 1 < n).1,
        (None, None) => LstmLauncher::per_step_backward_kernels(seq || l + 1 < n),
    };
    let mut ws = StackWorkspace::default();
    let result = Buffers::scope(dev, |dev, bufs| {
        let mut layers = Vec::new();
        for w in &weights {
            layers.push(LayerPtrs {
                kernel: bufs.f32s(dev, &w.kernel)?,
                recurrent_kernel: bufs.f32s(dev, &w.recurrent_kernel)?,
                bias: bufs.f32s(dev, &w.bias)?,
                d_kernel: bufs.poisoned(dev, w.kernel.len())?,
                d_recurrent_kernel: bufs.poisoned(dev, h * g)?,
                d_bias: bufs.poisoned(dev, g)?,
            });
        }
        let upload = |bufs: &mut Buffers, dev: &mut D, s: &Option<Vec<f32>>| match s {
            Some(s) => bufs.f32s(dev, s),
            None => Ok(DevicePtr::NULL),
        };
        let io = StackIo {
            corpus_words: bufs.bytes(dev, bytemuck::cast_slice(corpus.words()))?,
            starts: bufs.u32s(dev, &starts)?,
            layers,
            state_stride: 0,
            h0: upload(bufs, dev, &h0)?,
            c0: upload(bufs, dev, &c0)?,
            dy: match case.window {
                true => DevicePtr::NULL,
                false => bufs.f32s(dev, &dy)?,
            },
            dh: bufs.poisoned(dev, n * b * h)?,
            dc: bufs.poisoned(dev, n * b * h)?,
        };
        ws.ensure(dev, dims, case.p > 0.0)?;
        let sb = ws.buffers(dims, &io)?;
        for l in 0..n {
            for (ptr, len) in [(ws.h(l), t * b * h), (ws.c(l), t * b * h)] {
                dev.upload_f32(ptr, &vec![f32::NAN; len])?;
            }
        }
        launcher.forward(dev, dims, &sb, mode)?;
        dev.synchronize()?;
        let label = format!(
            "{} N={n} p={} ({} form)",
            case.shape,
            case.p,
            if case.window { "window" } else { "sequence" }
        );
        let mut rows = Rows::new(label);
        let top = if n > 1 { fwd_dense } else { fwd0 };
        rows.device(
            dev,
            top,
            "y (top layer's h)",
            ws.h(n - 1),
            &y_ref,
            BOUND_F32_KERNEL,
        )?;
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for l in 0..n {
            let last = (t - 1) * b * h * 4;
            h_n.extend(download(dev, ws.h(l).offset(last), b * h)?);
            c_n.extend(download(dev, ws.c(l).offset(last), b * h)?);
        }
        let fwd_all = format!("{fwd0} + {fwd_dense} + gemm_nn_f32 + dropout_fwd_f32");
        rows.compare(
            &fwd_all,
            "h_n (every layer)",
            &h_n,
            &h_n_ref,
            BOUND_F32_KERNEL,
        );
        rows.compare(
            &fwd_all,
            "c_n (every layer)",
            &c_n,
            &c_n_ref,
            BOUND_F32_KERNEL,
        );

        // The backward: the top layer's dh_{T-1} (window form) or dh_T, dc_T.
        match (&dh_n, &dc_n) {
            (Some(dh), Some(dc)) => {
                dev.upload_f32(io.dh, dh)?;
                dev.upload_f32(io.dc, dc)?;
            }
            _ => {
                let top = io.dh.offset((n - 1) * b * h * 4);
                dev.upload_f32(top, &dy[(t - 1) * b * h..])?;
            }
        }
        launcher.backward(dev, dims, &sb, mode)?;
        dev.synchronize()?;
        let below = "gemm_nt_f32 + dropout_bwd_f32";
        for (l, (ptrs, want)) in io.layers.iter().zip(&grads.layers).enumerate() {
            let (kname, rname) = match l {
                0 => (format!("{} + wgrad", bwd(l)), bwd(l).to_string()),
                _ => (
                    "gemm_tn_f32".to_string(),
                    format!("{} (dense layer)", bwd(l)),
                ),
            };
            let name = |t: &str| format!("layer {l}: d {t}");
            // Below the top, every gradient comes through the dh passed down,
            // each unit's one f32 sum of 4H products: with few units kept by
            // the mask at a tiny H, one cancelling sum scales a whole tensor
            // (a fresh draw at H = 8, B = 1 erred 1.7e-4 in every element of
            // layer 0's d recurrent_kernel, all from one dh value). A wrong
            // index or term errs by far more than 1e-3.
            let bound = if l + 1 < n {
                Bound::max_rel(1e-3)
            } else {
                BOUND_F32_KERNEL
            };
            rows.device(
                dev,
                &kname,
                &name("kernel"),
                ptrs.d_kernel,
                &want.kernel,
                bound,
            )?;
            let (d_rk, rk) = (ptrs.d_recurrent_kernel, &want.recurrent_kernel);
            rows.device(dev, &rname, &name("recurrent_kernel"), d_rk, rk, bound)?;
            rows.device(dev, &rname, &name("bias"), ptrs.d_bias, &want.bias, bound)?;
        }
        if seq {
            let name = format!("{} + {below}", bwd(0));
            rows.device(
                dev,
                &name,
                "dh_0 (every layer)",
                io.dh,
                &grads.dh0,
                BOUND_F32_KERNEL,
            )?;
            rows.device(
                dev,
                &name,
                "dc_0 (every layer)",
                io.dc,
                &grads.dc0,
                BOUND_F32_KERNEL,
            )?;
        }
        Ok(rows.rows)
    });
    let freed = ws.free(dev);
    let rows = result?;
    freed.map(|()| rows)
}
