//! The per-kernel checks. Each runs its kernels on inputs the reference
//! also saw and compares every output tensor with the reference's:
//!
//! | check | kernels | reference |
//! |---|---|---|
//! | [`check_rmsprop`] | `rmsprop_update_f32` | `RmsProp::step::<f32>` |
//! | [`check_grad_clip`] | `grad_norm_clip_f32` | `cpu::clip_grad_norm::<f32>` |
//! | [`check_head`] | `head_fwd_bwd_f32`, `head_wgrad_bwd_f32` | `cpu::trace::<f64>` |
//! | [`check_lstm_forward`] | `lstm_cell_fwd_f32` over T steps | `cpu::trace::<f64>` |
//! | [`check_lstm_backward`] | `lstm_cell_bwd_f32`, `lstm_dh_cell_bwd_f32`, `lstm_wgrad_bwd_f32`, `wgrad_{rk,cls}_partial_f32`, `wgrad_reduce_f32` | `cpu::trace::<f64>` |
//!
//! The head and the backward are fed the reference's own inputs (h_{T-1};
//! the forward state and dh_{T-1}), rounded to f32, not the device's
//! forward output: a failing row then names the kernel at fault instead of
//! everything downstream of it. The chain of them is what the training
//! check exercises.

use super::{
    BOUND_CLIP, BOUND_EXACT, BOUND_F32_KERNEL, BOUND_RMSPROP, Buffers, Rows, SelftestRow, Shape,
    download, uniform,
};
use crate::corpus::OneHotCorpus;
use crate::cpu::{self, RmsProp, Trace};
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use crate::gpu::lstm::wgrad::WgradLauncher;
use crate::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher, LstmPath};
use crate::gpu::rmsprop::{GradClipLauncher, RmsPropLauncher};
use crate::model::ParamLayout;
use crate::model::Tensor;
use crate::model::{Params, TENSOR_NAMES};
use crate::sample::RngStream;

/// One random model, corpus and batch, and the reference's trace of it:
/// the inputs and the expected outputs of the head and LSTM checks.
pub struct Case {
    /// The sizes.
    pub shape: Shape,
    /// A random text over exactly V symbols, one-hot encoded.
    pub corpus: OneHotCorpus,
    /// Window start rows, `[B]`.
    pub starts: Vec<u32>,
    /// Input classes of the windows, [B, T] (`cpu::gather`).
    pub x: Vec<u32>,
    /// Targets, `[B]`.
    pub y: Vec<u32>,
    /// The weights, random: gates and softmax neither trivial nor saturated
    /// (`random_params`).
    pub params: Params<f32>,
    /// The reference in f64 on exactly these (f32) weights.
    pub want: Trace<f64>,
}

impl Case {
    /// A case of `shape`, drawn from `rng`.
    pub fn random(shape: Shape, rng: &mut RngStream) -> Result<Case> {
        let (v, h, b, t) = shape.vhbt();
        if v < 2 || h == 0 || b == 0 || t == 0 {
            return Err(Error::InvalidArgument {
                name: "selftest shape",
                what: format!("{shape} (needs V >= 2 and H, B, T >= 1)"),
            });
        }
        let corpus = OneHotCorpus::from_text(&random_text(rng, v, v + t + 64), false)?;
        let starts = random_starts(rng, &corpus, b, t);
        let (x, y) = cpu::gather(&corpus, &starts, t);
        let params = random_params(v, h, rng);
        let want = cpu::trace(&params.map(f64::from), &x, &y, t);
        Ok(Case {
            shape,
            corpus,
            starts,
            x,
            y,
            params,
            want,
        })
    }

    /// The input classes t-major, [T, B]: what `lstm_cell_fwd_f32` decodes into `cls`.
    fn cls(&self) -> Vec<u32> {
        let (b, t) = (self.shape.batch, self.shape.seq_len);
        (0..t * b).map(|s| self.x[(s % b) * t + s / b]).collect()
    }

    /// The LSTM launchers' sizes of this case.
    pub fn lstm_dims(&self) -> LstmDims {
        LstmDims {
            batch: self.shape.batch,
            seq_len: self.shape.seq_len,
            hidden: self.shape.hidden,
            vocab: self.shape.vocab,
            words_per_row: self.corpus.words_per_row(),
        }
    }
}

/// A random text over exactly `v` distinct symbols (printable ASCII, then
/// CJK ideographs, which have no case), at least `len` long, every symbol
/// at least once.
pub(crate) fn random_text(rng: &mut RngStream, v: usize, len: usize) -> String {
    let pool: Vec<char> = ('!'..='~').chain('\u{4e00}'..).take(v).collect();
    let mut text = pool.clone();
    while text.len() < len {
        text.push(pool[rng.below(v as u64) as usize]);
    }
    // Shuffle so the guaranteed occurrences are not all at the start.
    for i in (1..text.len()).rev() {
        text.swap(i, rng.below(i as u64 + 1) as usize);
    }
    text.into_iter().collect()
}

/// `b` window starts, each with its `t` inputs and its target inside the corpus.
pub(crate) fn random_starts(
    rng: &mut RngStream,
    corpus: &OneHotCorpus,
    b: usize,
    t: usize,
) -> Vec<u32> {
    let starts = (corpus.rows() - t) as u64; // start + t must be a row
    (0..b).map(|_| rng.below(starts) as u32).collect()
}

/// Weights that keep the gates and the softmax far from trivial and away
/// from saturation: the gathered input row and the biases uniform in
/// ±0.6; the two kernels whose products sum over H terms scaled by
/// sqrt(32 / H), so their spread does not grow with H.
pub(crate) fn random_params(v: usize, h: usize, rng: &mut RngStream) -> Params<f32> {
    let summed = 0.6 * (32.0 / h as f64).sqrt().min(1.0);
    let mut p = Params::zeros(v, h);
    for (t, a) in p
        .tensors_mut()
        .into_iter()
        .zip([0.6, summed, 0.6, summed, 0.6])
    {
        t.iter_mut().for_each(|e| *e = uniform(rng, a) as f32);
    }
    p
}

/// One RMSprop step over a random V x H model, against `RmsProp::step::<f32>`.
/// Some mean squares are zero (a first step), some gradients zero.
pub fn check_rmsprop<D: GpuDevice>(
    dev: &mut D,
    vocab: usize,
    hidden: usize,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let layout = ParamLayout::new(vocab, hidden);
    let n = layout.len();
    let opt = RmsProp {
        lr: 10f64.powi(-1 - rng.below(3) as i32),
        ..RmsProp::default()
    };
    let mut draw = |a: f64, zero: fn(usize) -> bool| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = uniform(rng, a) as f32;
                if zero(i) { 0.0 } else { x }
            })
            .collect()
    };
    let params = draw(1.0, |_| false);
    let ms: Vec<f32> = draw(1.0, |i| i % 3 == 0).iter().map(|x| x.abs()).collect();
    let grads = draw(2.0, |i| i % 7 == 0);
    let (mut want_p, mut want_ms) = (
        Params::from_flat(layout, params.clone()),
        Params::from_flat(layout, ms.clone()),
    );
    opt.step(
        &mut want_p,
        &mut want_ms,
        &Params::from_flat(layout, grads.clone()),
    );
    let shape = format!("n={n} (V={vocab} H={hidden})");
    Buffers::scope(dev, |dev, bufs| {
        let (d_p, d_ms, d_g) = (
            bufs.f32s(dev, &params)?,
            bufs.f32s(dev, &ms)?,
            bufs.f32s(dev, &grads)?,
        );
        RmsPropLauncher::default().update(dev, &opt, d_p, d_ms, d_g, n)?;
        dev.synchronize()?;
        let (mut rows, kernel) = (Rows::new(shape), "rmsprop_update_f32");
        rows.device(dev, kernel, "params", d_p, want_p.flat(), BOUND_RMSPROP)?;
        rows.device(dev, kernel, "ms", d_ms, want_ms.flat(), BOUND_RMSPROP)?;
        Ok(rows.rows)
    })
}

/// Global gradient-norm clipping of random V x H gradients, against
/// `cpu::clip_grad_norm::<f32>`: once with a bound below their norm (every
/// gradient scaled), once above it (nothing may change, exactly).
pub fn check_grad_clip<D: GpuDevice>(
    dev: &mut D,
    vocab: usize,
    hidden: usize,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let layout = ParamLayout::new(vocab, hidden);
    let n = layout.len();
    let grads: Vec<f32> = (0..n)
        .map(|i| {
            if i % 5 == 0 {
                0.0
            } else {
                uniform(rng, 1.0) as f32
            }
        })
        .collect();
    let norm = f64::from(cpu::clip_grad_norm(&mut grads.clone(), f64::INFINITY) as f32);
    let mut rows = Rows::new(format!("n={n} (V={vocab} H={hidden})"));
    // 0.2..0.8 of the norm: clipped; 2x: untouched.
    let below = (0.2 + 0.6 * rng.next_f64()) * norm;
    for (max_norm, what, bound, clipped) in [
        (below as f32, "grads (clipped)", BOUND_CLIP, true),
        (
            (2.0 * norm) as f32,
            "grads (below the bound)",
            BOUND_EXACT,
            false,
        ),
    ] {
        let mut want = grads.clone();
        let want_norm = cpu::clip_grad_norm(&mut want, f64::from(max_norm));
        let (got, got_norm) = Buffers::scope(dev, |dev, bufs| {
            let d_g = bufs.f32s(dev, &grads)?;
            let d_norm = bufs.poisoned(dev, 1)?;
            GradClipLauncher::default().clip(dev, d_g, n, max_norm, d_norm)?;
            dev.synchronize()?;
            Ok((download(dev, d_g, n)?, download(dev, d_norm, 1)?))
        })?;
        let kernel = "grad_norm_clip_f32";
        rows.compare(kernel, what, &got, &want, bound);
        if clipped {
            // The norm is written as f32: compare with the reference's, rounded so.
            rows.compare(kernel, "norm", &got_norm, &[want_norm as f32], BOUND_CLIP);
        }
    }
    Ok(rows.rows)
}

/// The head on the reference's h_{T-1}: loss, probabilities (when
/// `with_probs`; training passes none), dlogits, dh_{T-1}, and the dense
/// weight gradients.
pub fn check_head<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    with_probs: bool,
) -> Result<Vec<SelftestRow>> {
    let (v, h, b, t) = case.shape.vhbt();
    let w = &case.want;
    // loss_sum accumulates; starting it off zero checks that it adds.
    const LOSS_START: f32 = 0.25;
    Buffers::scope(dev, |dev, bufs| {
        let hb = HeadBuffers {
            h: bufs.f64s(dev, &w.h[(t - 1) * b * h..])?,
            dense_kernel: bufs.f32s(dev, &case.params[Tensor::DenseKernel])?,
            dense_bias: bufs.f32s(dev, &case.params[Tensor::DenseBias])?,
            targets: bufs.u32s(dev, &case.y)?,
            probs: if with_probs {
                bufs.poisoned(dev, b * v)?
            } else {
                DevicePtr::NULL
            },
            dlogits: bufs.poisoned(dev, b * v)?,
            dh: bufs.poisoned(dev, b * h)?,
            d_dense_kernel: bufs.poisoned(dev, h * v)?,
            d_dense_bias: bufs.poisoned(dev, v)?,
            loss_sum: bufs.f32s(dev, &[LOSS_START])?,
            row_loss: DevicePtr::NULL,
        };
        let dims = HeadDims {
            batch: b,
            hidden: h,
            vocab: v,
        };
        HeadLauncher::default().fwd_bwd(dev, dims, &hb, 1.0 / b as f32)?;
        dev.synchronize()?;
        let (fwd, wgrad, bound) = ("head_fwd_bwd_f32", "head_wgrad_bwd_f32", BOUND_F32_KERNEL);
        let mut rows = Rows::new(format!("B={b} H={h} V={v}"));
        let loss = download(dev, hb.loss_sum, 1)?[0] - f64::from(LOSS_START);
        rows.compare(fwd, "loss", &[loss], &[w.loss], bound);
        if with_probs {
            rows.device(dev, fwd, "probs", hb.probs, &w.probs, bound)?;
        }
        rows.device(dev, fwd, "dlogits", hb.dlogits, &w.dlogits, bound)?;
        rows.device(dev, fwd, "dh", hb.dh, &w.dh_last, bound)?;
        let (d_kernel, d_bias) = (&w.grads[Tensor::DenseKernel], &w.grads[Tensor::DenseBias]);
        rows.device(
            dev,
            wgrad,
            "d dense.kernel",
            hb.d_dense_kernel,
            d_kernel,
            bound,
        )?;
        rows.device(dev, wgrad, "d dense.bias", hb.d_dense_bias, d_bias, bound)?;
        Ok(rows.rows)
    })
}

/// The forward recurrence, T launches, from the one-hot corpus on the
/// device: the activated gates, c, h and the decoded classes of every step.
pub fn check_lstm_forward<D: GpuDevice>(dev: &mut D, case: &Case) -> Result<Vec<SelftestRow>> {
    check_lstm_forward_with(dev, case, per_step())
}

/// The per-step kernels, whatever the shape.
fn per_step() -> LstmLauncher {
    LstmLauncher {
        path: LstmPath::PerStep,
        ..LstmLauncher::default()
    }
}

/// Rows' kernel name: what `launcher` runs for this case's shape.
fn lstm_kernel_names<D: GpuDevice>(
    dev: &D,
    launcher: &LstmLauncher,
    dims: LstmDims,
) -> Result<(&'static str, &'static str)> {
    Ok(match launcher.plan(dev, dims)? {
        Some(plan) => plan.kernels(),
        None => (
            "lstm_cell_fwd_f32",
            LstmLauncher::per_step_backward_kernels(false),
        ),
    })
}

/// [`check_lstm_forward`] through `launcher` (the persistent kernel where
/// it runs this shape), rows named by the kernel that ran.
pub fn check_lstm_forward_with<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    launcher: LstmLauncher,
) -> Result<Vec<SelftestRow>> {
    let (_, h, b, t) = case.shape.vhbt();
    let (kernel, _) = lstm_kernel_names(dev, &launcher, case.lstm_dims())?;
    let (w, p) = (&case.want, &case.params);
    Buffers::scope(dev, |dev, bufs| {
        let lb = LstmBuffers {
            corpus_words: bufs.bytes(dev, bytemuck::cast_slice(case.corpus.words()))?,
            starts: bufs.u32s(dev, &case.starts)?,
            kernel: bufs.f32s(dev, &p[Tensor::Kernel])?,
            recurrent_kernel: bufs.f32s(dev, &p[Tensor::RecurrentKernel])?,
            bias: bufs.f32s(dev, &p[Tensor::Bias])?,
            gates: bufs.poisoned(dev, t * b * 4 * h)?,
            c: bufs.poisoned(dev, t * b * h)?,
            h: bufs.poisoned(dev, t * b * h)?,
            cls: bufs.u32s(dev, &vec![u32::MAX; t * b])?,
            // The backward's buffers (NULL): not touched by the forward.
            ..LstmBuffers::default()
        };
        launcher.forward(dev, case.lstm_dims(), &lb)?;
        dev.synchronize()?;
        let mut cls = vec![0u32; t * b];
        dev.download(lb.cls, bytemuck::cast_slice_mut(&mut cls))?;
        let mut rows = Rows::new(case.shape);
        rows.device(dev, kernel, "gates", lb.gates, &w.gates, BOUND_F32_KERNEL)?;
        rows.device(dev, kernel, "c", lb.c, &w.c, BOUND_F32_KERNEL)?;
        rows.device(dev, kernel, "h", lb.h, &w.h, BOUND_F32_KERNEL)?;
        rows.compare(kernel, "cls", &cls, &case.cls(), BOUND_EXACT);
        Ok(rows.rows)
    })
}

/// The backward recurrence, T steps from dh_{T-1}, then the three LSTM
/// weight gradients: dz of every step and d kernel, d recurrent_kernel,
/// d bias, by the reference `lstm_wgrad_bwd_f32` and again by the fast path
/// (kernels/wgrad.cu) on the same dz, outputs and scratch re-poisoned; the
/// fast path also twice more, which must give the same bits.
pub fn check_lstm_backward<D: GpuDevice>(dev: &mut D, case: &Case) -> Result<Vec<SelftestRow>> {
    check_lstm_backward_with(dev, case, per_step())
}

/// [`check_lstm_backward`] through `launcher`, rows named by the kernel that ran.
pub fn check_lstm_backward_with<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    launcher: LstmLauncher,
) -> Result<Vec<SelftestRow>> {
    let (v, h, b, t) = case.shape.vhbt();
    let (_, kernel) = lstm_kernel_names(dev, &launcher, case.lstm_dims())?;
    let g = 4 * h;
    let w = &case.want;
    Buffers::scope(dev, |dev, bufs| {
        let lb = LstmBuffers {
            recurrent_kernel: bufs.f32s(dev, &case.params[Tensor::RecurrentKernel])?,
            gates: bufs.f64s(dev, &w.gates)?,
            c: bufs.f64s(dev, &w.c)?,
            h: bufs.f64s(dev, &w.h)?,
            cls: bufs.u32s(dev, &case.cls())?,
            dz: bufs.poisoned(dev, t * b * g)?,
            dh: bufs.f64s(dev, &w.dh_last)?,
            dc: bufs.poisoned(dev, b * h)?,
            d_kernel: bufs.poisoned(dev, v * g)?,
            d_recurrent_kernel: bufs.poisoned(dev, h * g)?,
            d_bias: bufs.poisoned(dev, g)?,
            // The forward's inputs (NULL): not read by the backward. No
            // wgrad_scratch: the reference weight gradients first, the fast path below.
            ..LstmBuffers::default()
        };
        launcher.backward(dev, case.lstm_dims(), &lb)?;
        dev.synchronize()?;
        let mut rows = Rows::new(case.shape);
        rows.device(dev, kernel, "dz", lb.dz, &w.dz, BOUND_F32_KERNEL)?;
        let grads = [
            (lb.d_kernel, &w.grads[Tensor::Kernel]),
            (lb.d_recurrent_kernel, &w.grads[Tensor::RecurrentKernel]),
            (lb.d_bias, &w.grads[Tensor::Bias]),
        ];
        for ((ptr, want), name) in grads.into_iter().zip(TENSOR_NAMES) {
            let (kernel, output) = ("lstm_wgrad_bwd_f32", format!("d {name}"));
            rows.device(dev, kernel, &output, ptr, want, BOUND_F32_KERNEL)?;
        }
        let dims = case.lstm_dims();
        let scratch_len = WgradLauncher::scratch_len(dims);
        let scratch = bufs.poisoned(dev, scratch_len)?;
        let fast = LstmLauncher::default().fast_wgrad;
        let mut runs = Vec::new();
        for _ in 0..2 {
            for (ptr, want) in grads {
                dev.upload_f32(ptr, &vec![f32::NAN; want.len()])?;
            }
            let lb = LstmBuffers {
                wgrad_scratch: scratch,
                ..lb
            };
            if !fast.run(dev, dims, &lb)? {
                // Too large a V for the fast path: the reference rows above
                // cover what LstmLauncher::wgrad runs at this shape.
                return Ok(rows.rows);
            }
            dev.synchronize()?;
            let got = grads
                .iter()
                .map(|&(ptr, want)| download(dev, ptr, want.len()));
            runs.push(got.collect::<Result<Vec<_>>>()?);
            dev.upload_f32(scratch, &vec![f32::NAN; scratch_len])?;
        }
        let fast_kernels = [
            "wgrad_cls_partial_f32 + wgrad_reduce_f32",
            "wgrad_rk_partial_f32 + wgrad_reduce_f32",
            "wgrad_cls_partial_f32 + wgrad_reduce_f32",
        ];
        for (i, ((_, want), name)) in grads.iter().zip(TENSOR_NAMES).enumerate() {
            let (kernel, output) = (fast_kernels[i], format!("d {name}"));
            let (first, second) = (&runs[0][i], &runs[1][i]);
            rows.compare(kernel, &output, first, want, BOUND_F32_KERNEL);
            // Bits: f32 -> f64 is exact, so equal f64s are equal f32s.
            let bits = format!("{output} (second run, bits)");
            rows.compare(kernel, &bits, second, first, BOUND_EXACT);
        }
        Ok(rows.rows)
    })
}
