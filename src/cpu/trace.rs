//! [`trace`]: the reference's intermediate tensors of one batch, in the
//! kernels' layouts, so a device can be checked tensor by tensor (the LSTM
//! forward state, the head's outputs, the pre-activation gradients) and not
//! only by its loss and final gradients.
//!
//! It runs the very functions [`loss_and_grads_into`] runs; nothing here
//! restates the math. The forward is run once on its own first, because the
//! backward overwrites the activated gates with dz and the probabilities
//! with dlogits in place.

use super::batch::{dims, for_each_chunk, pack_rk};
use super::{Scalar, Workspace, backward, forward, loss_and_grads_into};
use crate::model::Tensor;
use crate::model::{Grads, Params};

/// Everything the kernels produce for one batch, as the reference computes
/// it. B = batch rows, T = sequence length, H = hidden units, V = vocabulary;
/// the [T, B, ...] tensors are t-major like the kernels' buffers.
#[derive(Clone, Debug)]
pub struct Trace<F> {
    /// Activated gates i, f, g, o, [T, B, 4H].
    pub gates: Vec<F>,
    /// Cell state c_t, [T, B, H].
    pub c: Vec<F>,
    /// Hidden state h_t, [T, B, H]; step T-1 feeds the head.
    pub h: Vec<F>,
    /// Softmax of the head, [B, V].
    pub probs: Vec<F>,
    /// Mean cross-entropy of the batch.
    pub loss: F,
    /// `(probs - onehot(y)) / B`, [B, V].
    pub dlogits: Vec<F>,
    /// dh_{T-1} = dlogits @ dense_kernel^T, [B, H]: what the head hands the recurrence.
    pub dh_last: Vec<F>,
    /// Pre-activation gradients, [T, B, 4H].
    pub dz: Vec<F>,
    /// Gradients of every parameter.
    pub grads: Grads<F>,
}

/// The reference's intermediates for `x` ([B, seq_len] class indices) and
/// targets `y` (`[B]`). Panics with a message on shape errors, like
/// [`loss_and_grads_into`].
pub fn trace<F: Scalar>(params: &Params<F>, x: &[u32], y: &[u32], seq_len: usize) -> Trace<F> {
    let d = dims(params, x, Some(y), seq_len, true);
    let mut ws = Workspace::new();
    ws.prepare(d, &params[Tensor::Kernel], &params[Tensor::Bias]);
    let mut store = Vec::new();
    let rk = pack_rk(params, d, &mut store);
    for_each_chunk(&mut ws, d, |xb, r| {
        forward::recurrence(&rk, xb, x, r, d);
        forward::head(params, Some(y), r);
    });
    let gates = ws.gates.clone();
    let c = ws.cs.clone();
    // Slot t of `hprev` holds h_{t-1} (slot 0 the zero h_{-1}); h_{T-1} is `hlast`.
    let mut h = ws.hprev[d.b * d.h..].to_vec();
    h.extend_from_slice(&ws.hlast);
    let probs = ws.probs.clone();

    let mut grads = Grads::zeros(d.v, d.h);
    let loss = loss_and_grads_into(params, x, y, seq_len, &mut ws, &mut grads);
    // The backward leaves dz in `gates` and dlogits in `probs`; its dh has
    // moved on to dh_0 by now, so dh_{T-1} is recomputed by the same GEMM.
    let mut dh_last = vec![F::zero(); d.b * d.h];
    backward::head_dh(
        &ws.probs,
        &params[Tensor::DenseKernel],
        (d.b, d.h, d.v),
        &mut dh_last,
    );
    Trace {
        gates,
        c,
        h,
        probs,
        loss,
        dlogits: ws.probs.clone(),
        dh_last,
        dz: ws.gates.clone(),
        grads,
    }
}
