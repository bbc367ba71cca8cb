//! The CPU reference: forward, full BPTT backward and RMSprop, generic over
//! f32 (speed) and f64 (gradient checks). This is the specification every
//! kernel is checked against.

use crate::corpus::OneHotCorpus;
use crate::model::{Grads, Params};

/// Float type the reference runs in (f32 or f64).
pub trait Scalar: num_traits::Float + Default + Send + Sync + std::fmt::Debug + 'static {}
impl Scalar for f32 {}
impl Scalar for f64 {}

/// Decodes a batch: `x` is [B, T] class indices of the windows, `y` [B] their targets.
pub fn gather(corpus: &OneHotCorpus, starts: &[u32], maxlen: usize) -> (Vec<u32>, Vec<u32>) {
    let _ = (corpus, starts, maxlen);
    todo!()
}

/// Mean categorical cross-entropy of the batch.
pub fn loss<F: Scalar>(params: &Params<F>, x: &[u32], y: &[u32], seq_len: usize) -> F {
    let _ = (params, x, y, seq_len);
    todo!()
}

/// Mean loss and its gradient with respect to every parameter.
pub fn loss_and_grads<F: Scalar>(params: &Params<F>, x: &[u32], y: &[u32], seq_len: usize) -> (F, Grads<F>) {
    let _ = (params, x, y, seq_len);
    todo!()
}

/// Softmax probabilities [B, V] of the next character after each sequence.
pub fn predict<F: Scalar>(params: &Params<F>, x: &[u32], seq_len: usize) -> Vec<F> {
    let _ = (params, x, seq_len);
    todo!()
}

/// RMSprop as DESIGN §1: `ms = rho*ms + (1-rho)*g^2; p -= lr*g/(sqrt(ms)+eps)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate.
    pub lr: f64,
    /// Mean-square decay.
    pub rho: f64,
    /// Added to `sqrt(ms)`.
    pub eps: f64,
}

impl RmsProp {
    /// One update of every parameter; `ms` is the running mean square.
    pub fn step<F: Scalar>(&self, params: &mut Params<F>, ms: &mut Params<F>, grads: &Grads<F>) {
        let _ = (params, ms, grads);
        todo!()
    }
}
