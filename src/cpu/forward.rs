//! Forward pass of one chunk of batch rows: the LSTM recurrence and the
//! dense + softmax head.
//!
//! x: [B, T] class indices (row-major `b*T + t`); rows of a chunk are
//! `[b0, b0 + n)`. Buffers as in `workspace.rs` ([S, B, 4H] etc.; a chunk
//! sees its [n, 4H] block of each slot).
//! Gate order i, f, c(g), o along the 4H axis (Keras):
//!
//! ```text
//! z   = kernel[x[b,t], :] + bias + h_{t-1} @ recurrent_kernel      [n, 4H]
//! i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_c)
//! c_t = f * c_{t-1} + i * g;         h_t = o * tanh(c_t)
//! logits = h_{T-1} @ dense_kernel + dense_bias;  p = softmax(logits)
//! ```
//!
//! The input term is a row gather (`xb` = kernel + bias, one row per class),
//! never a one-hot matrix product. h_{-1} = c_{-1} = 0, so step 0 needs no GEMM.

use super::packed::PackedB;
use super::scalar::{View, gemm};
use super::workspace::{Dims, Rows};
use super::{Scalar, cell};
use crate::model::Params;
use crate::model::Tensor;

/// Runs the recurrence over the chunk's rows (`rk`: recurrent_kernel
/// packed, [`PackedB`]); leaves activated gates, c,
/// tanh(c) and h_{t-1} of every kept slot, and h_{T-1} in `hlast`.
pub(super) fn recurrence<F: Scalar>(
    rk: &PackedB<'_, F>,
    xb: &[F],
    x: &[u32],
    r: &mut Rows<'_, F>,
    d: Dims,
) {
    let (h, g) = (d.h, 4 * d.h);
    for t in 0..d.t {
        let s = t % d.s;
        if t > 0 {
            // z = h_{t-1} @ recurrent_kernel; `cells` adds xb[x].
            rk.gemm(r.n, View::new(r.hprev.get(s), h, 1), r.gates.get_mut(s), g);
        }
        cells(xb, x, r, d, t);
    }
}

simd_dispatch! {
    /// Step `t` of every row after the GEMM:
    /// z += xb[x]; i, f, o = sigmoid, g = tanh; c = f*c + i*g; h = o*tanh(c).
    fn cells<F: Scalar>(xb: &[F], x: &[u32], r: &mut Rows<'_, F>, d: Dims, t: usize) {
        let (h, g, s) = (d.h, 4 * d.h, t % d.s);
        let z_all = r.gates.get_mut(s);
        // Bring c_{t-1} into slot t, then update it in place. With S = 1 it
        // is already there; at t = 0 it and h_{-1} are zero and there was no GEMM.
        if t == 0 {
            z_all.fill(F::zero());
            r.cs.get_mut(s).fill(F::zero());
            // Slot 0 of hprev is h_{-1}, read by the weight-gradient GEMM.
            r.hprev.get_mut(0).fill(F::zero());
        } else if d.s > 1 {
            let (prev, cur) = r.cs.pair_mut(s - 1, s);
            cur.copy_from_slice(prev);
        }
        let c_all = r.cs.get_mut(s);
        let tc_all = r.tcs.get_mut(s);
        let h_all = if t + 1 < d.t { r.hprev.get_mut((t + 1) % d.s) } else { &mut *r.hlast };
        for b in 0..r.n {
            let cls = x[(r.b0 + b) * d.t + t] as usize;
            let xrow = &xb[cls * g..][..g];
            let z = &mut z_all[b * g..][..g];
            let c = &mut c_all[b * h..][..h];
            let tc = &mut tc_all[b * h..][..h];
            let out = &mut h_all[b * h..][..h];
            cell::forward_row(z, xrow, c, tc, out);
        }
    }
}

/// Dense head: `probs = softmax(hlast @ dense_kernel + dense_bias)` per row,
/// and `row_loss = -log p[y]` through a stable log-softmax when `y` is given.
pub(super) fn head<F: Scalar>(p: &Params<F>, y: Option<&[u32]>, r: &mut Rows<'_, F>) {
    let (b0, row_loss) = (r.b0, &mut *r.row_loss);
    dense_softmax(p, r.hlast, r.n, r.probs, |b, logits, log_z| {
        if let Some(y) = y {
            row_loss[b] = log_z - logits[y[b0 + b] as usize];
        }
    });
}

/// `probs = softmax(h @ dense_kernel + dense_bias)` for `n` rows of `h`
/// ([n, H] -> [n, V]), through a stable log-softmax; `each(b, logits,
/// log_z)` sees row b's logits and log-partition before they become
/// probabilities (the loss). The head of the engine and of the stateful
/// generator (`super::stateful`), one computation for both.
pub(crate) fn dense_softmax<F: Scalar>(
    p: &Params<F>,
    h: &[F],
    n: usize,
    probs: &mut [F],
    each: impl FnMut(usize, &[F], F),
) {
    let (hh, v) = (p.hidden, p.vocab);
    gemm(
        (n, hh, v),
        View::new(h, hh, 1),
        View::new(&p[Tensor::DenseKernel], v, 1),
        F::zero(),
        probs,
        (v, 1),
    );
    softmax_rows(p, n, probs, each);
}

/// The second half of [`dense_softmax`], for a caller that computed the
/// `n` rows of `h @ dense_kernel` into `probs` itself.
pub(crate) fn softmax_rows<F: Scalar>(
    p: &Params<F>,
    n: usize,
    probs: &mut [F],
    mut each: impl FnMut(usize, &[F], F),
) {
    let v = p.vocab;
    let mut log_z = F::zero();
    for b in 0..n {
        let l = &mut probs[b * v..][..v];
        log_softmax_row(l, &p[Tensor::DenseBias], &mut log_z);
        each(b, l, log_z);
        for_probs(l, log_z);
    }
}

/// Lanes of the softmax's max and sum: the reductions run as this many
/// independent chains (combined in lane order, so the result is still one
/// fixed order), which the compiler vectorises, where one serial chain of
/// adds waited on each add's latency (~10 % of a stream batch).
const LANES: usize = 16;

simd_dispatch! {
    /// `l += bias` (the logits), and `log_z = max + ln(sum(exp(l - max)))`.
    fn log_softmax_row<F: Scalar>(l: &mut [F], bias: &[F], log_z: &mut F) {
        let mut max = [F::neg_infinity(); LANES];
        for (chunk, bias) in l.chunks_mut(LANES).zip(bias.chunks(LANES)) {
            for ((lj, &bj), m) in chunk.iter_mut().zip(bias).zip(max.iter_mut()) {
                *lj = *lj + bj;
                *m = m.max(*lj);
            }
        }
        let max = max.iter().fold(F::neg_infinity(), |a, &m| a.max(m));
        let mut sum = [F::zero(); LANES];
        for chunk in l.chunks(LANES) {
            for (&lj, s) in chunk.iter().zip(sum.iter_mut()) {
                *s = *s + (lj - max).exp_act();
            }
        }
        let sum = sum.iter().fold(F::zero(), |a, &s| a + s);
        *log_z = max + sum.ln();
    }
}

simd_dispatch! {
    /// The logits `l` become probabilities `exp(l - log_z)`.
    fn for_probs<F: Scalar>(l: &mut [F], log_z: F) {
        for lj in l.iter_mut() {
            *lj = (*lj - log_z).exp_act();
        }
    }
}
