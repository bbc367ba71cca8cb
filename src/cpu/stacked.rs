//! The trainer's model with N > 1 LSTM layers (issue 17): the stack through
//! [`crate::ops::Lstm`], the engine's dense + softmax head on the top
//! layer's last h. The one-layer model keeps its own fused path
//! (`batch.rs`), bit for bit the notebook's; this one is its
//! generalisation, and agrees with it to rounding at N = 1 (tests).
//!
//! x: [B, T] class indices, row-major `b*T + t` as everywhere in `cpu`;
//! the op reads time-major [T, B], so x is transposed once per call.
//!
//! ```text
//! Y      = LSTM_N(... dropout(LSTM_1(onehot(x))) ...)       [T, B, H], top layer
//! p      = softmax(Y[T-1] @ dense_kernel + dense_bias)      [B, V]
//! loss   = mean over b of -log p[b, y[b]]
//! dlogits = (p - onehot(y)) / B
//! dY[t]  = 0 for t < T-1;  dY[T-1] = dlogits @ dense_kernelᵀ
//! ```
//!
//! # Dropout in training
//!
//! [`Mode::Train`] `{ seed: hyper.seed, step }` with `step` the run's
//! optimizer steps before this batch (`TrainState::step`, as a u32: masks
//! repeat after 2^32 steps), so the masks of a batch are the same in a run
//! resumed from a checkpoint as in one never stopped; the op's counter
//! (`ops::dropout`) then fixes each (t, b, unit). Evaluation, prediction
//! and generation run [`Mode::Eval`]: no dropout.

use super::Scalar;
use super::backward::sum_rows;
use super::forward::dense_softmax;
use super::scalar::{View, gemm};
use crate::error::Result;
use crate::model::{Grads, LayerTensor, Params, Tensor};
use crate::ops::{LayerWeights, Lstm, LstmGrads, LstmInput, LstmOutput, Mode};

/// Buffers of the stacked path, reused from call to call.
#[derive(Debug, Default)]
pub struct StackedWorkspace<F> {
    xt: Vec<u32>,
    out: LstmOutput<F>,
    grads: LstmGrads<F>,
    dy: Vec<F>,
    /// (T, B, H) of `dy`: zero but for its last step, which each call
    /// overwrites, so it is zero-filled only when they change.
    dy_shape: (usize, usize, usize),
    probs: Vec<F>,
}

impl<F> StackedWorkspace<F> {
    /// Empty; the first call sizes it.
    pub fn new() -> Self {
        StackedWorkspace {
            xt: Vec::new(),
            out: LstmOutput::new(),
            grads: LstmGrads {
                dx: None,
                dh0: Vec::new(),
                dc0: Vec::new(),
                layers: Vec::new(),
            },
            dy: Vec::new(),
            dy_shape: (0, 0, 0),
            probs: Vec::new(),
        }
    }
}

/// The op for `params`' stack, with dropout `p` between layers.
fn stack<F>(params: &Params<F>, dropout: f64) -> Result<Lstm> {
    Lstm::new(params.layers, params.vocab, params.hidden)?.with_dropout(dropout)
}

fn weights<F>(params: &Params<F>) -> Vec<LayerWeights<'_, F>> {
    (0..params.layers).map(|l| params.lstm_weights(l)).collect()
}

/// The forward over `x` ([B, T]) and the head: probabilities [B, V] in
/// `ws.probs`; returns the mean loss when `y` is given (else zero).
fn forward<F: Scalar>(
    params: &Params<F>,
    lstm: &Lstm,
    (x, y, seq_len): (&[u32], Option<&[u32]>, usize),
    mode: Mode,
    ws: &mut StackedWorkspace<F>,
) -> Result<F> {
    super::check_sequences(x, seq_len, params.vocab)?;
    let b = x.len() / seq_len;
    if let Some(y) = y {
        check_targets(y, b, params.vocab)?;
    }
    ws.xt.clear();
    ws.xt
        .extend((0..seq_len).flat_map(|t| (0..b).map(move |r| x[r * seq_len + t])));
    let input = LstmInput::classes(&ws.xt, seq_len, b);
    lstm.forward_into(&weights(params), input, None, None, mode, &mut ws.out)?;
    let h = params.hidden;
    let last = &ws.out.y()[(seq_len - 1) * b * h..];
    ws.probs.resize(b * params.vocab, F::zero());
    let mut sum = F::zero();
    dense_softmax(params, last, b, &mut ws.probs, |r, logits, log_z| {
        if let Some(y) = y {
            sum = sum + (log_z - logits[y[r] as usize]);
        }
    });
    Ok(sum / F::of(b as f64))
}

fn check_targets(y: &[u32], b: usize, vocab: usize) -> Result<()> {
    let bad = |what: String| crate::error::Error::InvalidArgument { name: "y", what };
    if y.len() != b {
        return Err(bad(format!("{} targets for a batch of {b} rows", y.len())));
    }
    match y.iter().find(|&&c| c as usize >= vocab) {
        Some(c) => Err(bad(format!(
            "target class {c} is outside the vocabulary of {vocab}"
        ))),
        None => Ok(()),
    }
}

/// Mean loss of the batch and its gradient with respect to every
/// parameter, written over `grads` (the shapes of `params`), dropout `p`
/// in `mode` (module docs).
#[allow(clippy::too_many_arguments)]
pub fn stacked_loss_and_grads_into<F: Scalar>(
    params: &Params<F>,
    (x, y, seq_len): (&[u32], &[u32], usize),
    dropout: f64,
    mode: Mode,
    ws: &mut StackedWorkspace<F>,
    grads: &mut Grads<F>,
) -> Result<F> {
    assert_eq!(
        grads.layout(),
        params.layout(),
        "grads: another layout than the params'"
    );
    let lstm = stack(params, dropout)?;
    let loss = forward(params, &lstm, (x, Some(y), seq_len), mode, ws)?;
    let (b, h, v) = (y.len(), params.hidden, params.vocab);
    let inv_b = F::one() / F::of(b as f64);
    let dlogits = &mut ws.probs;
    for (r, &target) in y.iter().enumerate() {
        let l = &mut dlogits[r * v..][..v];
        l[target as usize] = l[target as usize] - F::one();
        l.iter_mut().for_each(|x| *x = *x * inv_b);
    }
    let last = &ws.out.y()[(seq_len - 1) * b * h..];
    let [.., d_dense_kernel, d_dense_bias] = grads.tensors_mut();
    gemm(
        (h, b, v),
        View::new(last, 1, h),
        View::new(dlogits, v, 1),
        F::zero(),
        d_dense_kernel,
        (v, 1),
    );
    sum_rows(d_dense_bias, dlogits);
    if ws.dy_shape != (seq_len, b, h) {
        ws.dy.clear();
        super::pages::resize(&mut ws.dy, seq_len * b * h, F::zero());
        ws.dy_shape = (seq_len, b, h);
    }
    gemm(
        (b, v, h),
        View::new(dlogits, v, 1),
        View::new(&params[Tensor::DenseKernel], 1, v),
        F::zero(),
        &mut ws.dy[(seq_len - 1) * b * h..],
        (h, 1),
    );
    lstm.backward_into(
        &weights(params),
        &mut ws.out,
        &ws.dy,
        None,
        None,
        &mut ws.grads,
    )?;
    copy_layer_grads(&ws.grads, grads);
    Ok(loss)
}

/// Every layer's weight gradients from the op's `from` into their tensors
/// of `grads` (layer 0 under today's names, the rest `lstm_{k}.*`).
pub(super) fn copy_layer_grads<F: Scalar>(from: &LstmGrads<F>, grads: &mut Grads<F>) {
    for (l, g) in from.layers.iter().enumerate() {
        if l == 0 {
            grads[Tensor::Kernel].copy_from_slice(&g.kernel);
            grads[Tensor::RecurrentKernel].copy_from_slice(&g.recurrent_kernel);
            grads[Tensor::Bias].copy_from_slice(&g.bias);
        } else {
            grads
                .layer_mut(l, LayerTensor::Kernel)
                .copy_from_slice(&g.kernel);
            grads
                .layer_mut(l, LayerTensor::RecurrentKernel)
                .copy_from_slice(&g.recurrent_kernel);
            grads
                .layer_mut(l, LayerTensor::Bias)
                .copy_from_slice(&g.bias);
        }
    }
}

/// [`stacked_loss_and_grads_into`] with fresh buffers.
pub fn stacked_loss_and_grads<F: Scalar>(
    params: &Params<F>,
    (x, y, seq_len): (&[u32], &[u32], usize),
    dropout: f64,
    mode: Mode,
) -> Result<(F, Grads<F>)> {
    let mut grads = params.zeros_like();
    let loss = stacked_loss_and_grads_into(
        params,
        (x, y, seq_len),
        dropout,
        mode,
        &mut StackedWorkspace::new(),
        &mut grads,
    )?;
    Ok((loss, grads))
}

/// Mean loss of the batch in `mode` (what the gradient is of).
pub fn stacked_loss<F: Scalar>(
    params: &Params<F>,
    (x, y, seq_len): (&[u32], &[u32], usize),
    dropout: f64,
    mode: Mode,
    ws: &mut StackedWorkspace<F>,
) -> Result<F> {
    let lstm = stack(params, dropout)?;
    forward(params, &lstm, (x, Some(y), seq_len), mode, ws)
}

/// Next-class probabilities [B, V] after each sequence of `x` ([B,
/// seq_len]), no dropout.
pub fn stacked_predict_into<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    seq_len: usize,
    ws: &mut StackedWorkspace<F>,
    probs: &mut [F],
) -> Result<()> {
    let lstm = stack(params, 0.0)?;
    forward(params, &lstm, (x, None, seq_len), Mode::Eval, ws)?;
    probs.copy_from_slice(&ws.probs);
    Ok(())
}
