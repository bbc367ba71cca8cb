//! The LSTM cell of one batch row at one time step, forward and backward:
//! the math every recurrence on the CPU runs (the engine's over one-hot
//! windows, [`crate::ops::Lstm`]'s over a stack of layers), written once.
//!
//! Gate order i, f, c(g), o along the 4H axis (Keras); `i, f, o = sigmoid`,
//! `g = tanh`. Both are `#[inline(always)]` so that they compile into the
//! caller's `simd_dispatch!` body, in its AVX2 build where the CPU has it.

use super::Scalar;

/// `z += xrow`; activates z in place into (i, f, g, o); `c` holds c_{t-1}
/// on entry and c_t on return; `tc = tanh(c_t)`; `h = o * tanh(c_t)`.
///
/// z and xrow are `[4H]`, c, tc, h `[H]`.
#[inline(always)]
pub(crate) fn forward_row<F: Scalar>(
    z: &mut [F],
    xrow: &[F],
    c: &mut [F],
    tc: &mut [F],
    h_out: &mut [F],
) {
    let h = c.len();
    // One activation per loop: loops with several do not vectorise.
    let (ifs, rest) = z.split_at_mut(2 * h);
    let (gs, os) = rest.split_at_mut(h);
    for (zj, &xj) in ifs.iter_mut().zip(&xrow[..2 * h]) {
        *zj = (*zj + xj).sigmoid();
    }
    for (zj, &xj) in gs.iter_mut().zip(&xrow[2 * h..3 * h]) {
        *zj = (*zj + xj).tanh_act();
    }
    for (zj, &xj) in os.iter_mut().zip(&xrow[3 * h..]) {
        *zj = (*zj + xj).sigmoid();
    }
    let (i, f) = ifs.split_at(h);
    for (((cj, &ij), &fj), &gj) in c.iter_mut().zip(i).zip(f).zip(gs.iter()) {
        *cj = fj * *cj + ij * gj;
    }
    for (tj, &cj) in tc.iter_mut().zip(c.iter()) {
        *tj = cj.tanh_act();
    }
    for ((hj, &oj), &tj) in h_out.iter_mut().zip(os.iter()).zip(tc.iter()) {
        *hj = oj * tj;
    }
}

/// Turns the activated gates `z` `[4H]` into dz, and `dc` `[H]` (dc_t from the
/// step after, without this step's dh) into dc_{t-1}, given dh_t, tanh(c_t)
/// and c_{t-1}:
///
/// ```text
/// dc  += dh * o * (1 - tanh(c_t)^2)
/// dz_i = dc * g * i(1-i)      dz_f = dc * c_{t-1} * f(1-f)
/// dz_c = dc * i * (1-g^2)     dz_o = dh * tanh(c_t) * o(1-o)
/// dc   = dc * f
/// ```
#[inline(always)]
pub(crate) fn backward_row<F: Scalar>(z: &mut [F], tc: &[F], c_prev: &[F], dh: &[F], dc: &mut [F]) {
    let (h, one) = (tc.len(), F::one());
    let (zi, rest) = z.split_at_mut(h);
    let (zf, rest) = rest.split_at_mut(h);
    let (zg, zo) = rest.split_at_mut(h);
    // Zipped, not indexed: no bounds checks, so the loop vectorises.
    let gates = zi
        .iter_mut()
        .zip(zf.iter_mut())
        .zip(zg.iter_mut())
        .zip(zo.iter_mut());
    let state = tc.iter().zip(dh).zip(dc.iter_mut()).zip(c_prev);
    for ((((zi, zf), zg), zo), (((&tc, &dh), dc), &c_prev)) in gates.zip(state) {
        let (i, f, gg, o) = (*zi, *zf, *zg, *zo);
        let dcj = *dc + dh * o * (one - tc * tc);
        *dc = dcj * f;
        *zi = dcj * gg * (i * (one - i));
        *zf = dcj * c_prev * (f * (one - f));
        *zg = dcj * i * (one - gg * gg);
        *zo = dh * tc * (o * (one - o));
    }
}
