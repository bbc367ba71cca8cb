//! Whole-batch drivers: shape checks, the split of batch rows across
//! threads and chunks, and the fixed-order reductions.
//!
//! x: [B, T] class indices, row-major `b*T + t`, T = `seq_len`; y: [B].
//! Threads own contiguous row ranges; within one, rows go through the
//! recurrence `chunk` at a time. Nothing summed over rows happens inside a
//! chunk, so neither knob changes a bit of the result.
//!
//! A model of N > 1 LSTM layers goes to `stacked.rs` (the same math through
//! [`crate::ops::Lstm`]), in evaluation mode: no dropout. The engine calls
//! `stacked.rs` itself to train with dropout.

use super::packed::PackedB;
use super::stacked::{
    StackedWorkspace, stacked_loss, stacked_loss_and_grads_into, stacked_predict_into,
};
use super::workspace::{Dims, Rows, run_or_spawn};
use super::{Scalar, Workspace, backward, forward};
use crate::model::Tensor;
use crate::model::{Grads, Params};
use crate::ops::Mode;

/// Checks shapes and class indices; returns the call's dimensions.
pub(super) fn dims<F>(
    p: &Params<F>,
    x: &[u32],
    y: Option<&[u32]>,
    seq_len: usize,
    keep: bool,
) -> Dims {
    let (h, v) = (p.hidden, p.vocab);
    assert!(h > 0 && v > 0, "params: empty model (V = {v}, H = {h})");
    let shapes = [
        p[Tensor::Kernel].len(),
        p[Tensor::RecurrentKernel].len(),
        p[Tensor::Bias].len(),
        p[Tensor::DenseKernel].len(),
        p[Tensor::DenseBias].len(),
    ];
    assert_eq!(
        shapes,
        [v * 4 * h, h * 4 * h, 4 * h, h * v, v],
        "params: tensor lengths do not match V = {v}, H = {h}"
    );
    assert!(seq_len >= 1, "seq_len must be at least 1");
    assert!(
        !x.is_empty() && x.len().is_multiple_of(seq_len),
        "x has {} class indices, not a positive multiple of seq_len = {seq_len}",
        x.len()
    );
    let b = x.len() / seq_len;
    if let Some(bad) = x.iter().find(|&&c| c as usize >= v) {
        panic!("x holds class {bad}, outside the vocabulary of {v}");
    }
    if let Some(y) = y {
        assert_eq!(
            y.len(),
            b,
            "y has {} targets for a batch of {b} rows",
            y.len()
        );
        if let Some(bad) = y.iter().find(|&&c| c as usize >= v) {
            panic!("y holds class {bad}, outside the vocabulary of {v}");
        }
    }
    Dims {
        b,
        t: seq_len,
        s: if keep { seq_len } else { 1 },
        h,
        v,
    }
}

/// Runs `work` on every chunk of rows, the row ranges of different threads in parallel.
pub(super) fn for_each_chunk<F: Scalar>(
    ws: &mut Workspace<F>,
    d: Dims,
    work: impl Fn(&[F], &mut Rows<'_, F>) + Sync,
) {
    let threads = ws.threads_for(d.b);
    let per_thread = d.b.div_ceil(threads);
    let chunk = ws.chunk_for(per_thread);
    let (xb, all) = ws.rows(d);
    let work = &work;
    std::thread::scope(|scope| {
        let mut rest = all;
        for ti in 0..threads {
            let take = per_thread.min(rest.n);
            let (mine, tail) = rest.split_at(take, d);
            rest = tail;
            let job = move || {
                let mut rest = mine;
                while rest.n > 0 {
                    let take = chunk.min(rest.n);
                    let (mut c, tail) = rest.split_at(take, d);
                    work(xb, &mut c);
                    rest = tail;
                }
            };
            run_or_spawn(scope, ti + 1 == threads, job);
        }
    });
}

/// recurrent_kernel [H, 4H] packed for the recurrence's steps, once per call.
pub(super) fn pack_rk<'a, F: Scalar>(
    p: &'a Params<F>,
    d: Dims,
    store: &'a mut Vec<F>,
) -> PackedB<'a, F> {
    PackedB::recurrent(&p[Tensor::RecurrentKernel], d.h, store)
}

/// Mean of the per-row losses, summed in row order.
fn mean_loss<F: Scalar>(row_loss: &[F]) -> F {
    let sum = row_loss.iter().fold(F::zero(), |a, &l| a + l);
    sum / F::of(row_loss.len() as f64)
}

/// Mean loss and every gradient, with all buffers borrowed from `ws`.
///
/// `grads` must have the shapes of `params` (e.g. `Grads::zeros(V, H)`);
/// every tensor of it is overwritten. Panics with a message on shape errors.
pub fn loss_and_grads_into<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    y: &[u32],
    seq_len: usize,
    ws: &mut Workspace<F>,
    grads: &mut Grads<F>,
) -> F {
    if params.layers > 1 {
        let mut stacked = StackedWorkspace::new();
        let (x, mode) = ((x, y, seq_len), Mode::Eval);
        return stacked_loss_and_grads_into(params, x, 0.0, mode, &mut stacked, grads)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let d = dims(params, x, Some(y), seq_len, true);
    assert!(
        grads.vocab == d.v && grads.hidden == d.h && grads.len() == params.len(),
        "grads: shape (V = {}, H = {}) differs from the params' (V = {}, H = {})",
        grads.vocab,
        grads.hidden,
        d.v,
        d.h
    );
    ws.prepare(d, &params[Tensor::Kernel], &params[Tensor::Bias]);
    let inv_b = F::one() / F::of(d.b as f64);
    let [mut rk_store, mut rkt_store] = std::mem::take(&mut ws.pack);
    let rk = pack_rk(params, d, &mut rk_store);
    let rkt = PackedB::recurrent_t(&params[Tensor::RecurrentKernel], d.h, &mut rkt_store);
    for_each_chunk(ws, d, |xb, r| {
        forward::recurrence(&rk, xb, x, r, d);
        forward::head(params, Some(y), r);
        backward::recurrence_backward(params, &rkt, y, inv_b, r, d);
    });
    ws.pack = [rk_store, rkt_store];
    let threads = ws.threads_for(d.b);
    backward::weight_grads(
        &ws.hprev, &ws.gates, &ws.hlast, &ws.probs, x, d, threads, grads,
    );
    mean_loss(&ws.row_loss)
}

/// Mean loss only, keeping one time step of state instead of T.
pub fn loss_with<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    y: &[u32],
    seq_len: usize,
    ws: &mut Workspace<F>,
) -> F {
    if params.layers > 1 {
        let mut stacked = StackedWorkspace::new();
        return stacked_loss(params, (x, y, seq_len), 0.0, Mode::Eval, &mut stacked)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let d = dims(params, x, Some(y), seq_len, false);
    ws.prepare(d, &params[Tensor::Kernel], &params[Tensor::Bias]);
    let mut store = std::mem::take(&mut ws.pack[0]);
    let rk = pack_rk(params, d, &mut store);
    for_each_chunk(ws, d, |xb, r| {
        forward::recurrence(&rk, xb, x, r, d);
        forward::head(params, Some(y), r);
    });
    ws.pack[0] = store;
    mean_loss(&ws.row_loss)
}

/// Softmax probabilities [B, V] of the next class after each of the B
/// sequences of `x` ([B, seq_len]), written to `probs`.
pub fn predict_into<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    seq_len: usize,
    ws: &mut Workspace<F>,
    probs: &mut [F],
) {
    if params.layers > 1 {
        let mut stacked = StackedWorkspace::new();
        return stacked_predict_into(params, x, seq_len, &mut stacked, probs)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let d = dims(params, x, None, seq_len, false);
    assert_eq!(
        probs.len(),
        d.b * d.v,
        "probs must hold B * V = {} * {} values",
        d.b,
        d.v
    );
    ws.prepare(d, &params[Tensor::Kernel], &params[Tensor::Bias]);
    let mut store = std::mem::take(&mut ws.pack[0]);
    let rk = pack_rk(params, d, &mut store);
    for_each_chunk(ws, d, |xb, r| {
        forward::recurrence(&rk, xb, x, r, d);
        forward::head(params, None, r);
    });
    ws.pack[0] = store;
    probs.copy_from_slice(&ws.probs);
}
