//! RMSprop (Keras / TF2 formulation), element-wise over every tensor:
//!
//! ```text
//! ms = rho * ms + (1 - rho) * g^2
//! p  = p - lr * g / (sqrt(ms) + eps)
//! ```
//!
//! The hyper-parameters are converted to F once and `1 - rho` is computed in
//! F, as Keras does in f32, so the f32 path is what a kernel taking f32
//! arguments computes.

use super::Scalar;
use crate::model::{Grads, Hyper, Params};

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

impl Default for RmsProp {
    /// The Keras notebook's values: lr 0.01, rho 0.9, eps 1e-7.
    fn default() -> Self {
        RmsProp {
            lr: 0.01,
            rho: 0.9,
            eps: 1e-7,
        }
    }
}

impl RmsProp {
    /// The optimizer of a run's hyper-parameters.
    pub fn from_hyper(h: &Hyper) -> Self {
        RmsProp {
            lr: f64::from(h.lr),
            rho: f64::from(h.rho),
            eps: f64::from(h.eps),
        }
    }

    /// One update of every parameter; `ms` is the running mean square
    /// (zeros before the first step, as Keras starts it).
    pub fn step<F: Scalar>(&self, params: &mut Params<F>, ms: &mut Params<F>, grads: &Grads<F>) {
        let (lr, rho, eps) = (F::of(self.lr), F::of(self.rho), F::of(self.eps));
        let one_minus_rho = F::one() - rho;
        let shapes_match = params.vocab == grads.vocab
            && params.hidden == grads.hidden
            && params.vocab == ms.vocab
            && params.hidden == ms.hidden;
        assert!(
            shapes_match,
            "RmsProp::step: params, mean squares and grads differ in shape"
        );
        let (p, m) = (params.flat_mut(), ms.flat_mut());
        for ((p, m), &g) in p.iter_mut().zip(m.iter_mut()).zip(grads.flat()) {
            *m = rho * *m + one_minus_rho * (g * g);
            *p = *p - lr * g / (m.sqrt() + eps);
        }
    }
}

/// Global gradient-norm clipping, the reference of `grad_norm_clip_f32`
/// (PyTorch's `clip_grad_norm_`, TensorFlow's `clip_by_global_norm`, without
/// PyTorch's 1e-6 in the denominator):
///
/// ```text
/// norm = sqrt(sum of g^2 over all five tensors)
/// if norm > max_norm: g = g * (max_norm / norm)
/// ```
///
/// `grads` is a [`Grads`] or any flat buffer in its layout. The sum is taken
/// in f64, element by element in layout order, so it is deterministic (and, for f32 gradients, every
/// square is exact). The scale `max_norm / norm` is computed in f64 and
/// rounded to F once; every gradient is multiplied by that one F value, as
/// the kernel does. A NaN norm compares false and leaves the gradients as
/// they are (the loss guard catches the NaN). Returns the norm before
/// clipping.
pub fn clip_grad_norm<F: Scalar>(grads: &mut (impl AsMut<[F]> + ?Sized), max_norm: f64) -> f64 {
    let grads = grads.as_mut();
    let sum = grads.iter().fold(0f64, |sum, g| {
        let g = g.to_f64().unwrap_or(f64::NAN);
        sum + g * g
    });
    let norm = sum.sqrt();
    if norm > max_norm {
        let scale = F::of(max_norm / norm);
        grads.iter_mut().for_each(|g| *g = *g * scale);
    }
    norm
}
