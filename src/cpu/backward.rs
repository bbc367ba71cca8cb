//! Backward pass (full BPTT) of the mean cross-entropy.
//!
//! Per chunk of rows (in parallel, rows are independent):
//!
//! ```text
//! dlogits = (p - onehot(y)) / B                                  [n, V]
//! dh_{T-1} = dlogits @ dense_kernel^T;  dc = 0                  [n, H]
//! for t = T-1 .. 0:
//!   dc  += dh * o * (1 - tanh(c_t)^2)
//!   dz_i = dc * g * i(1-i)      dz_f = dc * c_{t-1} * f(1-f)
//!   dz_c = dc * i * (1-g^2)     dz_o = dh * tanh(c_t) * o(1-o)
//!   dc   = dc * f;   dh = dz @ recurrent_kernel^T   (not needed at t = 0)
//! ```
//!
//! dz overwrites the activated gates in place (`gates`, [T, B, 4H]).
//! Then, over the whole batch in one fixed order (so the chunking cannot
//! change a bit of the result), split across threads by output rows:
//!
//! ```text
//! d recurrent_kernel = hprev^T @ dz      [H, T*B] @ [T*B, 4H], one GEMM
//! d kernel[v, :]     = sum of dz rows whose input class is v (scatter-add)
//! d bias             = sum of d kernel's rows (each dz row is in exactly one)
//! d dense_kernel     = hlast^T @ dlogits [H, B] @ [B, V];  d dense_bias = sum of dlogits rows
//! ```
//!
//! Every gradient tensor is overwritten, not accumulated into.

use super::packed::{PackedB, gemm_cols};
use super::scalar::{View, gemm};
use super::workspace::{Dims, Rows, run_or_spawn, split_range};
use super::{Scalar, cell};
use crate::model::Tensor;
use crate::model::{Grads, Params};

/// dlogits and the recurrence backward over the chunk's rows (`rkt`:
/// recurrent_kernel^T packed, [`PackedB`]); leaves dz in `gates`.
pub(super) fn recurrence_backward<F: Scalar>(
    p: &Params<F>,
    rkt: &PackedB<'_, F>,
    y: &[u32],
    inv_b: F,
    r: &mut Rows<'_, F>,
    d: Dims,
) {
    let (h, g, v, n) = (d.h, 4 * d.h, d.v, r.n);
    assert_eq!(d.s, d.t, "backward needs every time step kept");
    for b in 0..n {
        let l = &mut r.probs[b * v..][..v];
        l[y[r.b0 + b] as usize] = l[y[r.b0 + b] as usize] - F::one();
        for lj in l.iter_mut() {
            *lj = *lj * inv_b;
        }
    }
    head_dh(r.probs, &p[Tensor::DenseKernel], (n, h, v), r.dh);
    r.dc.fill(F::zero());
    for t in (0..d.t).rev() {
        cells_backward(r, t, d);
        if t > 0 {
            rkt.gemm(n, View::new(r.gates.get(t), g, 1), r.dh, h);
        }
    }
}

/// `dh = dlogits @ dense_kernel^T` ([n, V] @ [V, H]; `dense_kernel` is
/// [H, V]): the gradient the head hands the recurrence, dh_{T-1}.
pub(super) fn head_dh<F: Scalar>(
    dlogits: &[F],
    dense_kernel: &[F],
    (n, h, v): (usize, usize, usize),
    dh: &mut [F],
) {
    gemm(
        (n, v, h),
        View::new(dlogits, v, 1),
        View::new(dense_kernel, 1, v),
        F::zero(),
        dh,
        (h, 1),
    );
}

simd_dispatch! {
    /// Step `t` of every row: turns the activated gates into dz and `dc` into
    /// dc_{t-1}, given dh_t and the forward's tanh(c_t) and c_{t-1}.
    fn cells_backward<F: Scalar>(r: &mut Rows<'_, F>, t: usize, d: Dims) {
        let (h, g) = (d.h, 4 * d.h);
        // c_{-1} = 0: slot 0 of hprev is h_{-1}, zeros of the right shape.
        let c_prev_all = if t == 0 { r.hprev.get(0) } else { r.cs.get(t - 1) };
        debug_assert!(t > 0 || c_prev_all.iter().all(|&c| c == F::zero()));
        let (z_all, tc_all) = (r.gates.get_mut(t), r.tcs.get(t));
        for b in 0..r.n {
            let z = &mut z_all[b * g..][..g];
            let tc = &tc_all[b * h..][..h];
            let c_prev = &c_prev_all[b * h..][..h];
            let dh = &r.dh[b * h..][..h];
            let dc = &mut r.dc[b * h..][..h];
            cell::backward_row(z, tc, c_prev, dh, dc);
        }
    }
}

/// d recurrent_kernel [H, 4H] = the sum over rows k = t*B + b, in that
/// fixed order, of `hprev[k]^T dz[k]` (`hprev` [T*B, H] holding h_{t-1},
/// `dz` [T*B, 4H]), split across threads by columns ([`gemm_cols`]).
/// `h0_zero`: h_{-1} = 0, so step 0's B rows add nothing and are left out.
pub(crate) fn recurrent_kernel_grad<F: Scalar>(
    threads: usize,
    (hprev, dz): (&[F], &[F]),
    (k, b, h): (usize, usize, usize),
    h0_zero: bool,
    out: &mut [F],
) {
    let (g, skip) = (4 * h, if h0_zero { b } else { 0 });
    gemm_cols(
        threads,
        (h, k - skip, g),
        View::new(&hprev[skip * h..], 1, h),
        View::new(&dz[skip * g..], g, 1),
        out,
    );
}

/// The five gradient tensors from the backward's buffers, over all B rows.
///
/// `hprev` [T*B, H], `dz` [T*B, 4H], `hlast` [B, H], `dlogits` [B, V], `x` [B, T].
/// d recurrent_kernel is split across threads by columns ([`gemm_cols`]);
/// then thread i gets a range of classes of d kernel holding about
/// 1/threads of the dz rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grads<F: Scalar>(
    hprev: &[F],
    dz: &[F],
    hlast: &[F],
    dlogits: &[F],
    x: &[u32],
    d: Dims,
    threads: usize,
    grads: &mut Grads<F>,
) {
    let (h, g, v, k) = (d.h, 4 * d.h, d.v, d.b * d.t);
    let [mut dk_rest, dr, _, d_dense_kernel, d_dense_bias] = grads.tensors_mut();
    recurrent_kernel_grad(threads, (hprev, dz), (k, d.b, h), true, dr);
    std::thread::scope(|scope| {
        let classes = split_classes(x, v, threads);
        for (ti, (v0, v1)) in classes.enumerate() {
            let (dk, r2) = dk_rest.split_at_mut((v1 - v0) * g);
            dk_rest = r2;
            let job = move || {
                let at = ClassLayout {
                    batch: d.b,
                    b_stride: d.t,
                    t_stride: 1,
                };
                scatter_rows(dk, v0..v1, x, at, dz, g);
            };
            run_or_spawn(scope, ti + 1 == threads, job);
        }
        gemm(
            (h, d.b, v),
            View::new(hlast, 1, h),
            View::new(dlogits, v, 1),
            F::zero(),
            d_dense_kernel,
            (v, 1),
        );
        sum_rows(d_dense_bias, dlogits);
    });
    // Every dz row went to exactly one row of d kernel, so d bias is the sum
    // of d kernel's rows: V rows to add instead of T*B.
    let [d_kernel, _, d_bias, _, _] = grads.tensors_mut();
    sum_rows(d_bias, d_kernel);
}

/// Class ranges, one per thread, each holding about `x.len() / threads` of
/// the inputs (a frequent class such as the space would otherwise load one
/// thread). Only the work split depends on it, never a gradient's value.
pub(crate) fn split_classes(
    x: &[u32],
    v: usize,
    threads: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let mut bounds = [v; 64];
    let parts = threads.clamp(1, bounds.len());
    let mut count = vec![0usize; v];
    x.iter().for_each(|&c| count[c as usize] += 1);
    let (mut seen, mut part, mut start) = (0usize, 1usize, 0usize);
    bounds[0] = 0;
    for (c, &n) in count.iter().enumerate() {
        seen += n;
        while part < parts && seen * parts >= part * x.len() {
            bounds[part] = c + 1;
            part += 1;
        }
    }
    (0..threads).map(move |i| {
        let end = if i + 1 >= parts { v } else { bounds[i + 1] };
        let range = (start.min(end), end);
        start = end;
        range
    })
}

/// Where the class of dz row k = t*B + b sits in a class-index array:
/// `x[b * b_stride + t * t_stride]` (the engine's x is [B, T]: strides (T, 1);
/// a time-major [T, B] one has (1, B)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClassLayout {
    pub batch: usize,
    pub b_stride: usize,
    pub t_stride: usize,
}

simd_dispatch! {
    /// `dk[c - classes.start] = sum of the dz rows ([T*B, 4H]) whose input
    /// class is c`, in dz row order k = t*B + b; g = 4H.
    pub(crate) fn scatter_rows<F: Scalar>(dk: &mut [F], classes: std::ops::Range<usize>, x: &[u32], at: ClassLayout, dz: &[F], g: usize) {
        dk.fill(F::zero());
        for (k, src) in dz.chunks_exact(g).enumerate() {
            let cls = x[(k % at.batch) * at.b_stride + (k / at.batch) * at.t_stride] as usize;
            if classes.contains(&cls) {
                let dst = &mut dk[(cls - classes.start) * g..][..g];
                for (a, &b) in dst.iter_mut().zip(src) {
                    *a = *a + b;
                }
            }
        }
    }
}

/// `out = sum of the rows of `m` ([_, out.len()])`, in row order.
pub(crate) fn sum_rows<F: Scalar>(out: &mut [F], m: &[F]) {
    sum_cols(out, m, 0, out.len());
}

/// [`sum_rows`] with the columns split across `threads`: every element is
/// the same sum, in row order, whatever the split. For a bias gradient over
/// all T*B rows (31 MB of dz at T*B = 7680, 4H = 1024), which one thread
/// reads at a fraction of the machine's bandwidth.
pub(crate) fn sum_rows_split<F: Scalar>(threads: usize, out: &mut [F], m: &[F]) {
    let n = out.len();
    std::thread::scope(|scope| {
        let mut rest = out;
        for (j0, j1) in split_range(n, threads.max(1), 16) {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(j1 - j0);
            rest = tail;
            run_or_spawn(scope, j1 == n, move || sum_cols(mine, m, j0, n));
        }
    });
}

simd_dispatch! {
    /// `out[j] = sum over the rows of m ([_, n]) of m[row, j0 + j]`, in row order.
    fn sum_cols<F: Scalar>(out: &mut [F], m: &[F], j0: usize, n: usize) {
        out.fill(F::zero());
        for row in m.chunks_exact(n) {
            for (a, &b) in out.iter_mut().zip(&row[j0..]) {
                *a = *a + b;
            }
        }
    }
}
