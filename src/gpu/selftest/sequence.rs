//! The sequence form of the kernels (stream training, issue 18; the stacked
//! layers of issue 17 need the same): the recurrence from a given initial
//! state with a gradient at every step, and the head over all B*L rows,
//! against the CPU reference: [`crate::ops::Lstm`] in f64 (forward from h0,
//! c0; backward from dy at every step plus dh_T, dc_T) and the head's math
//! written out in f64 over every row.
//!
//! | check | kernels | reference |
//! |---|---|---|
//! | [`check_sequence`] forward | `lstm_persistent*_seq_fwd_f32` or `lstm_cell_fwd_f32` from h0, c0 | `ops::Lstm::forward::<f64>` |
//! | head | `head_rows_fwd_bwd_f32`, `head_wgrad_bwd_f32`, `loss_rows_sum_f32` over T*B rows | [`head_rows`] |
//! | bookkeeping | `batch_stream_targets_u32`, `stream_state_carry_f32` | the corpus; the saved state (exact) |
//! | backward | `lstm_persistent*_seq_bwd_f32` or `lstm_cell_bwd_f32` + `lstm_dh_cell_bwd_f32` + `lstm_dh_bwd_f32` with dy; `lstm_wgrad_bwd_f32` and the fast path with h0 | `ops::Lstm::backward::<f64>` |
//!
//! As in `kernels.rs`, each stage is fed the reference's own inputs
//! (rounded to f32) where the reference exposes them, so a failing row names
//! the kernel at fault; the backward reads the device forward's saved state
//! (the op keeps its own private), which the forward rows check.

use super::kernels::{random_params, random_starts, random_text};
use super::{BOUND_EXACT, BOUND_F32_KERNEL, Buffers, Rows, SelftestRow, Shape, download, uniform};
use crate::corpus::OneHotCorpus;
use crate::error::{Error, Result};
use crate::gpu::batch::BatchLauncher;
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use crate::gpu::lstm::wgrad::WgradLauncher;
use crate::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher};
use crate::model::{Params, TENSOR_NAMES, Tensor};
use crate::ops::{LayerWeights, Lstm, LstmInput, Mode};
use crate::sample::RngStream;

/// The head over `rows` rows of `h` ([rows, H]) with targets `y` and
/// `scale` (1 / rows for the mean), in f64, the math of `kernels/head.cu`
/// written out: (loss sum, dlogits [rows, V], dh [rows, H], d dense.kernel
/// [H, V], d dense.bias \[V\]).
pub fn head_rows(p: &Params<f64>, h: &[f64], y: &[u32], scale: f64) -> HeadRows {
    let (hh, v) = (p.hidden, p.vocab);
    let (wd, bd) = (&p[Tensor::DenseKernel], &p[Tensor::DenseBias]);
    let rows = y.len();
    let mut out = HeadRows {
        loss: 0.0,
        dlogits: vec![0.0; rows * v],
        dh: vec![0.0; rows * hh],
        d_dense_kernel: vec![0.0; hh * v],
        d_dense_bias: vec![0.0; v],
    };
    for (r, &target) in y.iter().enumerate() {
        let hr = &h[r * hh..][..hh];
        let logits: Vec<f64> = (0..v)
            .map(|j| bd[j] + (0..hh).map(|k| hr[k] * wd[k * v + j]).sum::<f64>())
            .collect();
        let max = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l));
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        out.loss += scale * (log_z - logits[target as usize]);
        let d = &mut out.dlogits[r * v..][..v];
        for (j, dj) in d.iter_mut().enumerate() {
            let p = (logits[j] - log_z).exp();
            *dj = (if j == target as usize { p - 1.0 } else { p }) * scale;
        }
        for k in 0..hh {
            let wk = &wd[k * v..][..v];
            out.dh[r * hh + k] = d.iter().zip(wk).map(|(dj, w)| dj * w).sum();
            let dk = &mut out.d_dense_kernel[k * v..][..v];
            for (g, dj) in dk.iter_mut().zip(d.iter()) {
                *g += hr[k] * dj;
            }
        }
        for (g, dj) in out.d_dense_bias.iter_mut().zip(d.iter()) {
            *g += dj;
        }
    }
    out
}

/// What [`head_rows`] computes.
#[derive(Clone, Debug)]
pub struct HeadRows {
    /// `scale * sum of the rows' cross-entropies`.
    pub loss: f64,
    /// [rows, V] `(p - onehot(y)) * scale`.
    pub dlogits: Vec<f64>,
    /// [rows, H] the gradient into each row's h.
    pub dh: Vec<f64>,
    /// [H, V].
    pub d_dense_kernel: Vec<f64>,
    /// \[V\].
    pub d_dense_bias: Vec<f64>,
}

/// A random stream batch: B streams of T = `shape.seq_len` steps over a
/// random text, a random initial state and final-state gradient.
struct SeqCase {
    shape: Shape,
    corpus: OneHotCorpus,
    starts: Vec<u32>,
    /// [T, B] inputs and targets (`starts[b] + t`, `+ t + 1`).
    x: Vec<u32>,
    y: Vec<u32>,
    params: Params<f32>,
    /// [B, H] each: h0, c0, dh_T, dc_T.
    h0: Vec<f32>,
    c0: Vec<f32>,
    dh_t: Vec<f32>,
    dc_t: Vec<f32>,
}

impl SeqCase {
    fn random(shape: Shape, rng: &mut RngStream) -> Result<Self> {
        let (v, h, b, t) = shape.vhbt();
        if v < 2 || h == 0 || b == 0 || t == 0 {
            return Err(Error::InvalidArgument {
                name: "selftest shape",
                what: format!("{shape} (needs V >= 2 and H, B, T >= 1)"),
            });
        }
        let corpus = OneHotCorpus::from_text(&random_text(rng, v, v + t + 64), false)?;
        // Every stream's T inputs and T targets inside the corpus.
        let starts = random_starts(rng, &corpus, b, t);
        let at = |dt: usize| -> Vec<u32> {
            (0..t * b)
                .map(|s| corpus.class_at(starts[s % b] as usize + s / b + dt))
                .collect()
        };
        let (x, y) = (at(0), at(1));
        let params = random_params(v, h, rng);
        let mut state =
            |a: f64| -> Vec<f32> { (0..b * h).map(|_| uniform(rng, a) as f32).collect() };
        let (h0, c0) = (state(0.9), state(1.5));
        let (dh_t, dc_t) = (state(0.1), state(0.1));
        Ok(SeqCase {
            shape,
            corpus,
            starts,
            x,
            y,
            params,
            h0,
            c0,
            dh_t,
            dc_t,
        })
    }

    fn dims(&self) -> LstmDims {
        LstmDims {
            batch: self.shape.batch,
            seq_len: self.shape.seq_len,
            hidden: self.shape.hidden,
            vocab: self.shape.vocab,
            words_per_row: self.corpus.words_per_row(),
        }
    }
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// The sequence form at `shape` through `launcher` (per-step or persistent
/// kernels, whichever it picks): forward from a random h0, c0; the head
/// over all T*B rows; the backward from the reference's dy and a random
/// dh_T, dc_T, with the reference weight gradients (when
/// `reference_wgrad`: one thread per output summing all T*B rows, which
/// the simulator runs slowly at the Keras shape) and the fast ones. Every
/// output NaN-poisoned first.
pub fn check_sequence<D: GpuDevice>(
    dev: &mut D,
    shape: Shape,
    launcher: LstmLauncher,
    reference_wgrad: bool,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let case = SeqCase::random(shape, rng)?;
    let (v, h, b, t) = shape.vhbt();
    let g = 4 * h;
    let p64 = case.params.map(f64::from);
    let weights = [LayerWeights {
        kernel: &p64[Tensor::Kernel],
        recurrent_kernel: &p64[Tensor::RecurrentKernel],
        bias: &p64[Tensor::Bias],
    }];
    let lstm = Lstm::new(1, v, h)?.with_threads(1);
    let (h0, c0) = (widen(&case.h0), widen(&case.c0));
    let input = LstmInput::classes(&case.x, t, b);
    let out = lstm.forward(&weights, input, Some(&h0), Some(&c0), Mode::Eval)?;
    let y_ref = out.y().to_vec();
    let c_n_ref = out.c_n().to_vec();
    let scale = 1.0 / (t * b) as f32;
    let head = head_rows(&p64, &y_ref, &case.y, f64::from(scale));
    let (dh_t, dc_t) = (widen(&case.dh_t), widen(&case.dc_t));
    let grads = lstm.backward(&weights, out, &head.dh, Some(&dh_t), Some(&dc_t))?;
    let dims = case.dims();
    let plan = launcher.plan(dev, dims)?;
    let cluster = launcher.cluster_plan(dev, dims)?;
    Buffers::scope(dev, |dev, bufs| {
        let p = &case.params;
        let mut lb = LstmBuffers {
            corpus_words: bufs.bytes(dev, bytemuck::cast_slice(case.corpus.words()))?,
            starts: bufs.u32s(dev, &case.starts)?,
            kernel: bufs.f32s(dev, &p[Tensor::Kernel])?,
            recurrent_kernel: bufs.f32s(dev, &p[Tensor::RecurrentKernel])?,
            bias: bufs.f32s(dev, &p[Tensor::Bias])?,
            h0: bufs.f32s(dev, &case.h0)?,
            c0: bufs.f32s(dev, &case.c0)?,
            gates: bufs.poisoned(dev, t * b * g)?,
            c: bufs.poisoned(dev, t * b * h)?,
            h: bufs.poisoned(dev, t * b * h)?,
            cls: bufs.u32s(dev, &vec![u32::MAX; t * b])?,
            ..LstmBuffers::default()
        };
        let (fwd, bwd) = match (cluster, plan) {
            (Some(c), _) => c.kernels(),
            (None, Some(plan)) => plan.kernels_for(true, true),
            (None, None) => (
                "lstm_cell_fwd_f32",
                LstmLauncher::per_step_backward_kernels(true),
            ),
        };
        launcher.forward(dev, dims, &lb)?;
        dev.synchronize()?;
        let mut rows = Rows::new(format!("{shape} (sequence form)"));
        rows.device(dev, fwd, "h (from h0, c0)", lb.h, &y_ref, BOUND_F32_KERNEL)?;
        let c_last = dims.at(lb.c, t - 1, h);
        rows.device(dev, fwd, "c_T", c_last, &c_n_ref, BOUND_F32_KERNEL)?;
        let mut cls = vec![0u32; t * b];
        dev.download(lb.cls, bytemuck::cast_slice_mut(&mut cls))?;
        rows.compare(fwd, "cls", &cls, &case.x, BOUND_EXACT);

        // The batch's bookkeeping around the recurrence: its targets from
        // the corpus, and the final state carried (an exact copy).
        let hd = HeadDims {
            batch: b,
            hidden: h,
            vocab: v,
        };
        let targets = bufs.u32s(dev, &vec![u32::MAX; t * b])?;
        let wpr = case.corpus.words_per_row();
        let batch = BatchLauncher::default();
        batch.stream_targets(dev, lb.corpus_words, wpr, lb.starts, t, hd, targets)?;
        let state = bufs.poisoned(dev, 2 * b * h)?;
        let h_last = dims.at(lb.h, t - 1, h);
        batch.carry_state(dev, h_last, c_last, b * h, state)?;
        dev.synchronize()?;
        let mut got = vec![0u32; t * b];
        dev.download(targets, bytemuck::cast_slice_mut(&mut got))?;
        rows.compare(
            "batch_stream_targets_u32",
            "targets",
            &got,
            &case.y,
            BOUND_EXACT,
        );
        let mut want = download(dev, h_last, b * h)?;
        want.extend(download(dev, c_last, b * h)?);
        let carry = "stream_state_carry_f32";
        rows.device(dev, carry, "state (h_T, c_T)", state, &want, BOUND_EXACT)?;

        // The head over the reference's h of every step.
        let hb = HeadBuffers {
            h: bufs.f64s(dev, &y_ref)?,
            dense_kernel: bufs.f32s(dev, &p[Tensor::DenseKernel])?,
            dense_bias: bufs.f32s(dev, &p[Tensor::DenseBias])?,
            targets: bufs.u32s(dev, &case.y)?,
            probs: DevicePtr::NULL,
            dlogits: bufs.poisoned(dev, t * b * v)?,
            dh: bufs.poisoned(dev, t * b * h)?,
            d_dense_kernel: bufs.poisoned(dev, h * v)?,
            d_dense_bias: bufs.poisoned(dev, v)?,
            // Overwritten, not added to: a NaN start must not survive.
            loss_sum: bufs.poisoned(dev, 1)?,
            row_loss: bufs.poisoned(dev, t * b)?,
        };
        let hd = HeadDims {
            batch: t * b,
            hidden: h,
            vocab: v,
        };
        HeadLauncher::default().fwd_bwd(dev, hd, &hb, scale)?;
        dev.synchronize()?;
        let (rf, rw, rl) = (
            "head_rows_fwd_bwd_f32",
            "head_wgrad_bwd_f32",
            "loss_rows_sum_f32",
        );
        let loss = download(dev, hb.loss_sum, 1)?;
        rows.compare(
            rl,
            "loss (mean over T*B rows)",
            &loss,
            &[head.loss],
            BOUND_F32_KERNEL,
        );
        rows.device(
            dev,
            rf,
            "dlogits",
            hb.dlogits,
            &head.dlogits,
            BOUND_F32_KERNEL,
        )?;
        rows.device(
            dev,
            rf,
            "dy (dh of every row)",
            hb.dh,
            &head.dh,
            BOUND_F32_KERNEL,
        )?;
        let (dk, db) = (hb.d_dense_kernel, hb.d_dense_bias);
        rows.device(
            dev,
            rw,
            "d dense.kernel",
            dk,
            &head.d_dense_kernel,
            BOUND_F32_KERNEL,
        )?;
        rows.device(
            dev,
            rw,
            "d dense.bias",
            db,
            &head.d_dense_bias,
            BOUND_F32_KERNEL,
        )?;

        // The backward from the reference's dy, twice: the reference
        // weight gradients, then the fast path (with h0's own split).
        lb.dy = bufs.f64s(dev, &head.dh)?;
        lb.dz = bufs.poisoned(dev, t * b * g)?;
        lb.dh = bufs.poisoned(dev, b * h)?;
        lb.dc = bufs.poisoned(dev, b * h)?;
        lb.d_kernel = bufs.poisoned(dev, v * g)?;
        lb.d_recurrent_kernel = bufs.poisoned(dev, h * g)?;
        lb.d_bias = bufs.poisoned(dev, g)?;
        let scratch = bufs.poisoned(dev, WgradLauncher::scratch_len(dims))?;
        let layer = &grads.layers[0];
        let want = [&layer.kernel, &layer.recurrent_kernel, &layer.bias];
        let runs = [
            (false, "lstm_wgrad_bwd_f32"),
            (true, "wgrad_{rk,cls}_partial_f32 + wgrad_reduce_f32"),
        ];
        // The first backward's dh / dc are checked; both runs' gradients.
        let first = usize::from(!reference_wgrad);
        for (i, (fast, wgrad)) in runs.into_iter().enumerate().skip(first) {
            dev.upload_f32(lb.dh, &case.dh_t)?;
            dev.upload_f32(lb.dc, &case.dc_t)?;
            for (ptr, n) in [
                (lb.dz, t * b * g),
                (lb.d_kernel, v * g),
                (lb.d_recurrent_kernel, h * g),
                (lb.d_bias, g),
            ] {
                dev.upload_f32(ptr, &vec![f32::NAN; n])?;
            }
            lb.wgrad_scratch = if fast { scratch } else { DevicePtr::NULL };
            launcher.backward(dev, dims, &lb)?;
            dev.synchronize()?;
            if i == first {
                rows.device(
                    dev,
                    bwd,
                    "dh_{-1} (dh0)",
                    lb.dh,
                    &grads.dh0,
                    BOUND_F32_KERNEL,
                )?;
                rows.device(
                    dev,
                    bwd,
                    "dc_{-1} (dc0)",
                    lb.dc,
                    &grads.dc0,
                    BOUND_F32_KERNEL,
                )?;
            }
            let ptrs = [lb.d_kernel, lb.d_recurrent_kernel, lb.d_bias];
            for ((ptr, want), name) in ptrs.into_iter().zip(want).zip(TENSOR_NAMES) {
                let output = format!("d {name} (dy at every step, h0)");
                rows.device(dev, wgrad, &output, ptr, want, BOUND_F32_KERNEL)?;
            }
        }
        Ok(rows.rows)
    })
}
