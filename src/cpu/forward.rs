//! Forward pass of one chunk of batch rows: the LSTM recurrence and the
//! dense + softmax head.
//!
//! x: [B, T] class indices (row-major `b*T + t`); rows of a chunk are
//! `[b0, b0 + n)`. Buffers as in `workspace.rs` ([n, S, 4H] etc.).
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

use super::Scalar;
use super::scalar::{View, gemm};
use super::workspace::{Dims, Rows};
use crate::model::Params;

/// Runs the recurrence over the chunk's rows; leaves activated gates, c,
/// tanh(c) and h_{t-1} of every kept slot, and h_{T-1} in `hlast`.
pub(super) fn recurrence<F: Scalar>(
    p: &Params<F>,
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
            gemm(
                (r.n, h, g),
                View {
                    data: &r.hprev[s * h..],
                    rs: d.s * h,
                    cs: 1,
                },
                View {
                    data: &p.recurrent_kernel,
                    rs: g,
                    cs: 1,
                },
                F::zero(),
                &mut r.gates[s * g..],
                (d.s * g, 1),
            );
        }
        cells(xb, x, r, d, t);
    }
}

simd_dispatch! {
    /// Step `t` of every row after the GEMM: input term, activations, c, tanh(c), h.
    fn cells<F: Scalar>(xb: &[F], x: &[u32], r: &mut Rows<'_, F>, d: Dims, t: usize) {
        let (h, g, s) = (d.h, 4 * d.h, t % d.s);
        for b in 0..r.n {
            let row = b * d.s + s;
            let cls = x[(r.b0 + b) * d.t + t] as usize;
            let xrow = &xb[cls * g..][..g];
            let z = &mut r.gates[row * g..][..g];
            if t == 0 {
                // h_{-1} = 0: no GEMM; hprev slot 0 is read by the weight-gradient GEMM.
                z.copy_from_slice(xrow);
                r.hprev[row * h..][..h].fill(F::zero());
            } else {
                for (zj, &xj) in z.iter_mut().zip(xrow) {
                    *zj = *zj + xj;
                }
            }
            let (ifg, o) = z.split_at_mut(3 * h);
            F::sigmoid_in_place(&mut ifg[..2 * h]);
            F::tanh_in_place(&mut ifg[2 * h..]);
            F::sigmoid_in_place(o);
            let (i, rest) = z.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (gg, o) = rest.split_at(h);
            // c_{t-1} lives in slot t-1, before slot t in memory; with S = 1
            // it is slot t itself, updated in place.
            if t == 0 {
                let c = &mut r.cs[row * h..][..h];
                for ((cj, &ij), &gj) in c.iter_mut().zip(i).zip(gg) {
                    *cj = ij * gj;
                }
            } else if d.s == 1 {
                let c = &mut r.cs[row * h..][..h];
                for (((cj, &ij), &gj), &fj) in c.iter_mut().zip(i).zip(gg).zip(f) {
                    *cj = fj * *cj + ij * gj;
                }
            } else {
                let (before, after) = r.cs.split_at_mut(row * h);
                let c_prev = &before[(row - 1) * h..][..h];
                let c = &mut after[..h];
                for ((((cj, &cp), &ij), &gj), &fj) in c.iter_mut().zip(c_prev).zip(i).zip(gg).zip(f) {
                    *cj = fj * cp + ij * gj;
                }
            }
            let tc = &mut r.tcs[row * h..][..h];
            tc.copy_from_slice(&r.cs[row * h..][..h]);
            F::tanh_in_place(tc);
            let out = if t + 1 < d.t {
                &mut r.hprev[(b * d.s + (t + 1) % d.s) * h..][..h]
            } else {
                &mut r.hlast[b * h..][..h]
            };
            for ((hj, &oj), &tj) in out.iter_mut().zip(o).zip(tc.iter()) {
                *hj = oj * tj;
            }
        }
    }
}

/// Dense head: `probs = softmax(hlast @ dense_kernel + dense_bias)` per row,
/// and `row_loss = -log p[y]` through a stable log-softmax when `y` is given.
pub(super) fn head<F: Scalar>(p: &Params<F>, y: Option<&[u32]>, r: &mut Rows<'_, F>, d: Dims) {
    let v = d.v;
    gemm(
        (r.n, d.h, v),
        View {
            data: r.hlast,
            rs: d.h,
            cs: 1,
        },
        View {
            data: &p.dense_kernel,
            rs: v,
            cs: 1,
        },
        F::zero(),
        r.probs,
        (v, 1),
    );
    for b in 0..r.n {
        let l = &mut r.probs[b * v..][..v];
        let mut max = F::neg_infinity();
        for (lj, &bj) in l.iter_mut().zip(&p.dense_bias) {
            *lj = *lj + bj;
            max = max.max(*lj);
        }
        let mut sum = F::zero();
        for lj in l.iter() {
            sum = sum + (*lj - max).exp();
        }
        let log_z = max + sum.ln();
        if let Some(y) = y {
            r.row_loss[b] = log_z - l[y[r.b0 + b] as usize];
        }
        for lj in l.iter_mut() {
            *lj = (*lj - log_z).exp();
        }
    }
}
