//! One LSTM layer over a whole sequence, with any initial state, a gradient
//! arriving at every step, and every state kept: the recurrence
//! [`crate::ops::Lstm`] runs once per layer of its stack.
//!
//! T = steps, B = batch rows, H = units, g = 4H. Every buffer is time-major
//! and holds the whole batch; threads own row ranges of every slot
//! ([`Steps`]), as in the engine.
//!
//! | buffer  | shape        | holds                                              |
//! |---------|--------------|----------------------------------------------------|
//! | `gates` | [T, B, 4H]   | activated i, f, g, o; the backward turns them into dz |
//! | `c`     | [T+1, B, H]  | slot 0 = c_0 (the initial state), slot t+1 = c_t   |
//! | `tc`    | [T, B, H]    | tanh(c_t)                                          |
//! | `h`     | [T+1, B, H]  | slot 0 = h_0, slot t+1 = h_t                       |
//!
//! With the initial state in slot 0, `h[B*H..]` is the layer's output
//! sequence [T, B, H] and `h[..T*B*H]` the h_{t-1} operand [T*B, H] of the
//! `recurrent_kernel` gradient GEMM, both without a copy. The input term
//! (`x_t @ kernel + bias`) is a gathered row for a one-hot input, else a
//! product each step ahead of the recurrent one ([`InputTerm`]), so a step
//! costs one or two GEMMs of the thread's rows and the cell. In the
//! backward the threads also own columns of the weight gradients, which
//! they add up a few steps behind the recurrence ([`StepGrads`]).

use super::packed::NR;
use super::packed::PackedB;
use super::scalar::View;
use super::step_grads::{GradTargets, StepGrads};
use super::steps::Steps;
use super::workspace::{run_or_spawn, split_range};
use super::{Scalar, cell};

/// `x_t @ kernel + bias` of row (t, b), for every step, computed ahead of
/// the recurrence.
#[derive(Clone, Copy, Debug)]
pub(crate) enum InputTerm<'a, F> {
    /// A one-hot input: row `classes[t*B + b]` of `xb` ([classes, 4H],
    /// `kernel + bias`), the gather that stands for the product.
    Gather { xb: &'a [F], classes: &'a [u32] },
    /// The sums ready for every row, [T, B, 4H] (a one-hot generation
    /// step's `kernel + bias` rows).
    Dense(&'a [F]),
    /// Any other input (`x` [T, B, `width`], a dense layer 0 or the layer
    /// below's output), its product with `kernel` (packed) computed step by
    /// step: each step's rows into the gates ahead of the recurrent
    /// product, which adds on; `bias` [4H] is added in the cells. One
    /// product of all T*B rows ahead would write [T, B, 4H] (31 MB at T*B =
    /// 7680, 4H = 1024) for the cells to read back from L3, a step later.
    Step {
        x: &'a [F],
        width: usize,
        kernel: PackedB<'a, F>,
        bias: &'a [F],
    },
}

impl<'a, F> InputTerm<'a, F> {
    /// The 4H values the cells add to row `k = t*B + b`'s gates.
    #[inline(always)]
    fn row(&self, k: usize, g: usize) -> &'a [F] {
        match *self {
            InputTerm::Gather { xb, classes } => &xb[classes[k] as usize * g..][..g],
            InputTerm::Dense(z) => &z[k * g..][..g],
            // The product is in the gates already.
            InputTerm::Step { bias, .. } => bias,
        }
    }
}

/// T, B, H of one layer's call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub t: usize,
    pub b: usize,
    pub h: usize,
}

/// The forward over all T steps (`rk`: recurrent_kernel [H, 4H] packed,
/// [`PackedB`]). `c` and `h` come with the initial state in slot 0; every
/// other slot, and `gates` and `tc`, is overwritten. `h0_zero`: h's slot 0
/// is all zeros (no initial state given), so step 0's product is zero and
/// is not computed (1/T of the recurrence's multiply-adds).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<F: Scalar>(
    rk: &PackedB<'_, F>,
    input: InputTerm<'_, F>,
    gates: &mut [F],
    c: &mut [F],
    tc: &mut [F],
    h: &mut [F],
    (s, h0_zero): (Shape, bool),
    threads: usize,
) {
    let (hh, g) = (s.h, 4 * s.h);
    let mut gates = Steps::new(gates, s.t, s.b, g);
    let mut c = Steps::new(c, s.t + 1, s.b, hh);
    let mut tc = Steps::new(tc, s.t, s.b, hh);
    let mut h = Steps::new(h, s.t + 1, s.b, hh);
    std::thread::scope(|scope| {
        for (b0, b1) in split_range(s.b, threads.max(1), 1) {
            let (g0, g1) = gates.split_at(b1 - b0);
            let (c0, c1) = c.split_at(b1 - b0);
            let (t0, t1) = tc.split_at(b1 - b0);
            let (h0, h1) = h.split_at(b1 - b0);
            (gates, c, tc, h) = (g1, c1, t1, h1);
            let mut rows = Rows {
                b0,
                gates: g0,
                c: c0,
                tc: t0,
                h: h0,
            };
            let job = move || {
                let n = b1 - b0;
                for t in 0..s.t {
                    let h_prev = View::new(rows.h.get(t), hh, 1);
                    match input {
                        InputTerm::Step {
                            x, width, kernel, ..
                        } => {
                            let x_t = View::new(&x[(t * s.b + b0) * width..], width, 1);
                            kernel.gemm(n, x_t, rows.gates.get_mut(t), g);
                            if t > 0 || !h0_zero {
                                rk.gemm_add(n, h_prev, rows.gates.get_mut(t), g);
                            }
                        }
                        _ if t == 0 && h0_zero => {
                            // What the kernel would write: its sums start at +0.
                            rows.gates.get_mut(0).fill(F::zero());
                        }
                        _ => rk.gemm(n, h_prev, rows.gates.get_mut(t), g),
                    }
                    cells(&mut rows, input, t, s);
                }
            };
            run_or_spawn(scope, b1 == s.b, job);
        }
    });
}

/// One thread's rows `[b0, b0 + n)` of every buffer.
struct Rows<'a, F> {
    b0: usize,
    gates: Steps<'a, F>,
    c: Steps<'a, F>,
    tc: Steps<'a, F>,
    h: Steps<'a, F>,
}

simd_dispatch! {
    /// Step `t` of the thread's rows after the GEMM: c_{t-1} copied into
    /// slot t+1 and updated there, h_t written to slot t+1.
    fn cells<F: Scalar>(r: &mut Rows<'_, F>, input: InputTerm<'_, F>, t: usize, s: Shape) {
        let (hh, g) = (s.h, 4 * s.h);
        let (prev, cur) = r.c.pair_mut(t, t + 1);
        cur.copy_from_slice(prev);
        let (z_all, tc_all) = (r.gates.get_mut(t), r.tc.get_mut(t));
        let h_all = r.h.get_mut(t + 1);
        let c_all = r.c.get_mut(t + 1);
        for (b, z) in z_all.chunks_exact_mut(g).enumerate() {
            let xrow = input.row(t * s.b + r.b0 + b, g);
            let c = &mut c_all[b * hh..][..hh];
            let tc = &mut tc_all[b * hh..][..hh];
            let out = &mut h_all[b * hh..][..hh];
            cell::forward_row(z, xrow, c, tc, out);
        }
    }
}

/// The backward over all T steps, from the buffers the forward left.
///
/// `dy` [T, B, H] is the gradient arriving at h_t from outside the
/// recurrence (the layer above, a loss at every step), added to dh at each
/// step. `dh`, `dc` [B, H] hold dh_T, dc_T (the final state's gradient) on
/// entry and dh_0, dc_0 (the initial state's) on return. `gates` becomes dz.
/// `dx`: the kernel^T ([4H, In], packed) and the [T, B, In] buffer where
/// the input's gradient dz_t @ kernel^T goes, step by step while dz_t is in
/// cache (one product of all T*B rows after would read dz's 31 MB back
/// from L3); each row's sum is the same either way.
///
/// `grads`: the layer's weight gradients, computed a few steps behind the
/// recurrence from dz in cache ([`StepGrads`]; only where the packed
/// kernel runs), with the scratch buffer they use.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<F: Scalar>(
    recurrent_kernel: &[F],
    pack: &mut Vec<F>,
    gates: &mut [F],
    c: &[F],
    tc: &[F],
    dy: &[F],
    (dh, dc): (&mut [F], &mut [F]),
    dx: Option<(PackedB<'_, F>, &mut [F])>,
    grads: Option<(GradTargets<'_, F>, &mut Vec<F>)>,
    s: Shape,
    threads: usize,
) {
    let (hh, g) = (s.h, 4 * s.h);
    // recurrent_kernel^T [4H, H], packed once for the T products.
    let rkt = PackedB::recurrent_t(recurrent_kernel, hh, pack);
    let rkt = &rkt;
    let mut gates = Steps::new(gates, s.t, s.b, g);
    // Threads own rows in the recurrence and columns of the gradients.
    let row_parts: Vec<(usize, usize)> = split_range(s.b, threads.max(1), 1).collect();
    let cols: Vec<(usize, usize)> = split_range(g, threads.max(1), NR).collect();
    // Each thread's share of the gradients' scratch: `per` values.
    let (step_grads, mut scratch, per) = match grads {
        Some((targets, scratch)) => {
            let widest = cols.iter().map(|(j0, j1)| j1 - j0).max().unwrap_or(0);
            let sg = StepGrads::new(targets, gates.reader(), hh, &row_parts, widest);
            let per = sg.scratch_len();
            super::pages::resize(scratch, per * row_parts.len(), F::zero());
            (Some(sg), &mut scratch[..], per)
        }
        None => (None, &mut [][..], 0),
    };
    let step_grads = step_grads.as_ref();
    let mut dx = dx.map(|(kernel_t, buf)| {
        let width = buf.len() / (s.t * s.b);
        (kernel_t, width, Steps::new(buf, s.t, s.b, width))
    });
    let (mut dh, mut dc) = (dh, dc);
    std::thread::scope(|scope| {
        for (p, (&(b0, b1), &my_cols)) in row_parts.iter().zip(&cols).enumerate() {
            let n = b1 - b0;
            let (my_scratch, scratch_rest) = std::mem::take(&mut scratch).split_at_mut(per);
            scratch = scratch_rest;
            let (mine, rest) = gates.split_at(n);
            gates = rest;
            let mut dx_mine = dx.take().map(|(kernel_t, width, d)| {
                let (mine, rest) = d.split_at(n);
                dx = Some((kernel_t, width, rest));
                (kernel_t, width, mine)
            });
            let (dh_mine, dh_rest) = std::mem::take(&mut dh).split_at_mut(n * hh);
            let (dc_mine, dc_rest) = std::mem::take(&mut dc).split_at_mut(n * hh);
            (dh, dc) = (dh_rest, dc_rest);
            let mut rows = BackRows {
                b0,
                dz: mine,
                dh: dh_mine,
                dc: dc_mine,
            };
            let job = move || {
                let _guard = step_grads.map(StepGrads::guard);
                if let Some(sg) = step_grads {
                    sg.zero(my_cols);
                }
                for t in (0..s.t).rev() {
                    cells_backward(&mut rows, c, tc, dy, t, s);
                    let dz = View::new(rows.dz.get(t), g, 1);
                    // dh_{t-1} = dz_t @ recurrent_kernel^T; at t = 0 that is dh_0.
                    rkt.gemm(n, dz, rows.dh, hh);
                    if let Some((kernel_t, width, dx)) = dx_mine.as_mut() {
                        kernel_t.gemm(n, dz, dx.get_mut(t), *width);
                    }
                    if let Some(sg) = step_grads {
                        sg.finished(p, t);
                        if let Some(steps) = sg.due(t) {
                            sg.add_steps(steps, my_cols, my_scratch);
                        }
                    }
                }
                if let Some(sg) = step_grads {
                    sg.add_steps((0, 0), my_cols, my_scratch);
                }
            };
            run_or_spawn(scope, b1 == s.b, job);
        }
    });
}

/// One thread's rows of the backward's written buffers.
struct BackRows<'a, F> {
    b0: usize,
    dz: Steps<'a, F>,
    dh: &'a mut [F],
    dc: &'a mut [F],
}

simd_dispatch! {
    /// Step `t` of the thread's rows: dh += dy_t, then the cell's backward.
    fn cells_backward<F: Scalar>(r: &mut BackRows<'_, F>, c: &[F], tc: &[F], dy: &[F], t: usize, s: Shape) {
        let (hh, g) = (s.h, 4 * s.h);
        let at = |slot: usize, b: usize| (slot * s.b + r.b0 + b) * hh;
        let z_all = r.dz.get_mut(t);
        for (b, z) in z_all.chunks_exact_mut(g).enumerate() {
            let dh = &mut r.dh[b * hh..][..hh];
            for (d, &y) in dh.iter_mut().zip(&dy[at(t, b)..][..hh]) {
                *d = *d + y;
            }
            let dc = &mut r.dc[b * hh..][..hh];
            // c slot t is c_{t-1}; tc slot t is tanh(c_t).
            cell::backward_row(z, &tc[at(t, b)..][..hh], &c[at(t, b)..][..hh], dh, dc);
        }
    }
}
