//! Gradient check: the f64 CPU reference's analytic gradients against
//! central finite differences of its own loss, for every parameter tensor.
//!
//! Tolerance `|analytic - numeric| <= TOL * max(1, |numeric|)` with TOL = 1e-6.
//! With step 1e-5 the central difference has truncation error ~ h^2 |L'''| ~
//! 1e-10 and rounding error ~ 1e-16 |L| / h ~ 1e-11, far below TOL, while a
//! wrong gradient term (a dropped factor, a wrong gate slice, a missing time
//! step) is of the size of the gradient itself, 1e-3 .. 1e-1 on these
//! non-saturated random parameters: `tolerance_is_tight_enough` checks that
//! such errors (down to 1e-5 in one element) are caught.

mod common;
use charlstm_cuda::model::Tensor;
use common::{random_batch, random_params};

use charlstm_cuda::cpu;
use charlstm_cuda::model::{Params, TENSOR_NAMES};

const STEP: f64 = 1e-5;
const TOL: f64 = 1e-6;

/// Central difference of the loss along element `i` of tensor `ti`.
fn numeric(p: &Params<f64>, ti: usize, i: usize, x: &[u32], y: &[u32], t: usize) -> f64 {
    let mut q = p.clone();
    let orig = q.tensors()[ti][i];
    q.tensors_mut()[ti][i] = orig + STEP;
    let plus = cpu::loss(&q, x, y, t);
    q.tensors_mut()[ti][i] = orig - STEP;
    let minus = cpu::loss(&q, x, y, t);
    (plus - minus) / (2.0 * STEP)
}

/// Scaled error of one element: passes when <= TOL.
fn err(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / numeric.abs().max(1.0)
}

/// Checks the listed elements of every tensor; returns the worst scaled error per tensor.
fn check(
    label: &str,
    p: &Params<f64>,
    x: &[u32],
    y: &[u32],
    t: usize,
    pick: impl Fn(usize, usize) -> Vec<usize>,
) {
    let (_, grads) = cpu::loss_and_grads(p, x, y, t);
    let mut worst = [0.0f64; 5];
    for ti in 0..5 {
        let g = grads.tensors()[ti];
        for i in pick(ti, g.len()) {
            let n = numeric(p, ti, i, x, y, t);
            let e = err(g[i], n);
            assert!(
                e <= TOL,
                "{}[{i}]: analytic {} vs numeric {n} (scaled error {e:.3e})",
                TENSOR_NAMES[ti],
                g[i]
            );
            worst[ti] = worst[ti].max(e);
        }
    }
    let mut report = format!("{label}:\n");
    for (name, w) in TENSOR_NAMES.iter().zip(worst) {
        report += &format!("  {name:24} max scaled error {w:.3e}\n");
    }
    print!("{report}");
}

#[test]
fn small_model_every_element() {
    let (v, h, t, b) = (5, 3, 4, 3);
    let p = random_params(v, h, 0.5, 11);
    let (x, y) = random_batch(v, b, t, 12);
    let label = format!("V={v} H={h} T={t} B={b}, all {} elements", p.len());
    check(&label, &p, &x, &y, t, |_, n| (0..n).collect());
}

#[test]
fn larger_model_sampled_elements() {
    let (v, h, t, b) = (70, 8, 7, 5);
    let p = random_params(v, h, 0.3, 21);
    let (x, y) = random_batch(v, b, t, 22);
    // Every row of `kernel` that the batch uses (its gradient is a
    // scatter-add) plus a stride through the rest (whose gradient must be 0),
    // and a stride through each other tensor.
    let used: Vec<usize> = {
        let mut u: Vec<usize> = x.iter().map(|&c| c as usize).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let g = 4 * h;
    let label = format!("V={v} H={h} T={t} B={b}, sampled elements");
    check(&label, &p, &x, &y, t, |ti, n| {
        let mut idx: Vec<usize> = (0..n).step_by(7).collect();
        if ti == 0 {
            for &row in used.iter().take(6) {
                idx.extend((0..g).step_by(3).map(|j| row * g + j));
            }
        }
        idx
    });
}

#[test]
fn single_step_and_single_row() {
    // T = 1 (no recurrence: the recurrent_kernel gradient is exactly 0) and B = 1.
    let (v, h) = (4, 2);
    let p = random_params(v, h, 0.7, 31);
    let (x, y) = random_batch(v, 1, 1, 32);
    let (_, grads) = cpu::loss_and_grads(&p, &x, &y, 1);
    assert!(grads[Tensor::RecurrentKernel].iter().all(|&g| g == 0.0));
    check("T=1 B=1, all elements", &p, &x, &y, 1, |_, n| {
        (0..n).collect()
    });
}

/// The check can fail: one element off by 1e-5, or a whole gradient term
/// missing (here: the recurrent path through time, by checking a T = 4
/// gradient against the loss of the same batch cut to its last step), is
/// reported.
#[test]
fn tolerance_is_tight_enough() {
    let (v, h, t, b) = (5, 3, 4, 3);
    let p = random_params(v, h, 0.5, 11);
    let (x, y) = random_batch(v, b, t, 12);
    let (_, grads) = cpu::loss_and_grads(&p, &x, &y, t);
    let mut caught = 0;
    for ti in 0..5 {
        let i = grads.tensors()[ti].len() / 2;
        let n = numeric(&p, ti, i, &x, &y, t);
        assert!(err(grads.tensors()[ti][i], n) <= TOL);
        caught += usize::from(err(grads.tensors()[ti][i] + 1e-5, n) > TOL);
    }
    assert_eq!(caught, 5, "a 1e-5 error went unnoticed");
    // Truncated BPTT (only the last step) differs far beyond the tolerance.
    let x_last: Vec<u32> = x.chunks(t).map(|row| row[t - 1]).collect();
    let (_, last_only) = cpu::loss_and_grads(&p, &x_last, &y, 1);
    let worst = (0..grads[Tensor::Kernel].len())
        .map(|i| err(last_only[Tensor::Kernel][i], numeric(&p, 0, i, &x, &y, t)))
        .fold(0.0, f64::max);
    println!("last-step-only kernel gradient: max scaled error {worst:.3e}");
    assert!(worst > 1e3 * TOL);
}
