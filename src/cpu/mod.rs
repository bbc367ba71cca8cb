//! The CPU reference: forward, full BPTT backward and RMSprop, generic over
//! f32 (speed) and f64 (gradient checks). This is the specification every
//! kernel is checked against.
//!
//! Shapes: x [B, T] class indices (row-major `b*T + t`), y `[B]` targets,
//! probabilities [B, V]; parameters as in `model::params` (gate order i, f, c, o).
//! Loss: mean over the batch of `-log softmax(h_T @ dense_kernel + dense_bias)[y]`.
//!
//! Files: `forward.rs` / `backward.rs` hold the math of one chunk of rows,
//! `batch.rs` the threading and fixed-order reductions, `workspace.rs` the
//! buffers (`steps.rs`: a thread's rows of a time-major buffer), `scalar.rs`
//! the float trait and GEMM, `fastmath.rs` the f32 activations, `simd.rs`
//! the AVX-512/AVX2 dispatch of the element-wise loops, `packed.rs` the
//! recurrence's products with the weights packed once per call, `cell.rs` the LSTM cell of
//! one row (shared with `layer.rs`, the sequence-level recurrence of
//! [`crate::ops::Lstm`]), `pages.rs` the large buffers' huge pages, `rmsprop.rs` the optimizer, `stream.rs` stream (truncated-BPTT)
//! training: a loss at every step and a carried state,
//! `trace.rs` the intermediate tensors the kernel checks compare against,
//! `stacked.rs` the model of N > 1 LSTM layers (through [`crate::ops::Lstm`]),
//! `step_grads.rs` that recurrence's weight gradients, a few steps at a
//! time inside its backward.

#[macro_use]
mod simd;

pub(crate) mod backward;
mod batch;
mod cell;
mod engine;
mod fastmath;
mod forward;
pub(crate) mod layer;
pub(crate) mod packed;
pub(crate) mod pages;
mod rmsprop;
pub(crate) mod scalar;
mod stacked;
pub(crate) mod step_grads;
mod steps;
mod stream;
mod trace;
pub(crate) mod workspace;

pub use batch::{loss_and_grads_into, loss_with, predict_into};
pub(crate) use engine::check_sequences;
pub use engine::{CpuEngine, CpuModel};
pub(crate) use forward::dense_softmax;
pub use rmsprop::{RmsProp, clip_grad_norm};
pub use scalar::Scalar;
pub use stacked::{
    StackedWorkspace, stacked_loss, stacked_loss_and_grads, stacked_loss_and_grads_into,
    stacked_predict_into,
};
pub use stream::{StreamStep, stream_loss_and_grads};
pub use trace::{Trace, trace};
pub use workspace::Workspace;

use crate::corpus::OneHotCorpus;
use crate::model::{Grads, Params};

/// Decodes a batch: `x` is [B, T] class indices of the windows, `y` `[B]` their targets.
///
/// `x[b*maxlen + t] = class_at(starts[b] + t)`, `y[b] = class_at(starts[b] + maxlen)`.
pub fn gather(corpus: &OneHotCorpus, starts: &[u32], maxlen: usize) -> (Vec<u32>, Vec<u32>) {
    let mut x = Vec::with_capacity(starts.len() * maxlen);
    let mut y = Vec::with_capacity(starts.len());
    for &s in starts {
        let s = s as usize;
        x.extend((s..s + maxlen).map(|row| corpus.class_at(row)));
        y.push(corpus.class_at(s + maxlen));
    }
    (x, y)
}

/// Mean categorical cross-entropy of the batch.
pub fn loss<F: Scalar>(params: &Params<F>, x: &[u32], y: &[u32], seq_len: usize) -> F {
    loss_with(params, x, y, seq_len, &mut Workspace::new())
}

/// Mean loss and its gradient with respect to every parameter.
pub fn loss_and_grads<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    y: &[u32],
    seq_len: usize,
) -> (F, Grads<F>) {
    let mut grads = params.zeros_like();
    let loss = loss_and_grads_into(params, x, y, seq_len, &mut Workspace::new(), &mut grads);
    (loss, grads)
}

/// Softmax probabilities [B, V] of the next character after each sequence.
pub fn predict<F: Scalar>(params: &Params<F>, x: &[u32], seq_len: usize) -> Vec<F> {
    let b = x.len() / seq_len.max(1);
    let mut probs = vec![F::zero(); b * params.vocab];
    predict_into(params, x, seq_len, &mut Workspace::new(), &mut probs);
    probs
}
