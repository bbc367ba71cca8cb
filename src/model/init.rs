//! Keras initialisation: Glorot uniform kernels, orthogonal recurrent kernel,
//! unit forget bias.
//!
//! | tensor (stream)              | shape   | Keras initializer                          |
//! |------------------------------|---------|--------------------------------------------|
//! | `lstm.kernel` (0)            | [V, 4H] | GlorotUniform: U(-l, l), l = sqrt(6/(V+4H)) |
//! | `lstm.recurrent_kernel` (1)  | [H, 4H] | Orthogonal: rows orthonormal               |
//! | `lstm.bias` (2)              | [4H]    | zeros, forget slice [H, 2H) = 1            |
//! | `dense.kernel` (3)           | [H, V]  | GlorotUniform, l = sqrt(6/(H+V))           |
//! | `dense.bias` (4)             | [V]     | zeros                                      |
//!
//! Each tensor draws from its own Philox stream `(seed, Purpose::Init,
//! tensor index)`, row-major, so a tensor's values depend on nothing else.
//! Everything is computed in f64 and rounded to f32 once.

use super::{GATE_F, Params, Tensor};
use crate::rng::{Purpose, RngStream};

/// Fresh parameters drawn from Philox with `seed`, exactly as Keras initialises them.
pub fn init_params(vocab: usize, hidden: usize, seed: u64) -> Params<f32> {
    let g = 4 * hidden;
    let mut p = Params::zeros(vocab, hidden);
    p[Tensor::Kernel].copy_from_slice(&glorot_uniform(vocab, g, seed, 0));
    p[Tensor::RecurrentKernel].copy_from_slice(&orthogonal(hidden, g, seed, 1));
    p[Tensor::Bias][GATE_F * hidden..(GATE_F + 1) * hidden].fill(1.0);
    p[Tensor::DenseKernel].copy_from_slice(&glorot_uniform(hidden, vocab, seed, 3));
    p
}

/// [rows, cols] uniform in [-l, l), l = sqrt(6 / (fan_in + fan_out)),
/// fan_in = rows, fan_out = cols (Keras' fans of a 2-D kernel).
fn glorot_uniform(rows: usize, cols: usize, seed: u64, stream: u32) -> Vec<f32> {
    let limit = (6.0 / (rows + cols) as f64).sqrt();
    let mut rng = RngStream::new(seed, Purpose::Init, stream);
    (0..rows * cols)
        .map(|_| (limit * (2.0 * rng.next_f64() - 1.0)) as f32)
        .collect()
}

/// Keras `Orthogonal` for a [rows, cols] kernel with rows <= cols: QR of a
/// standard normal (cols x rows) matrix, Q's columns times sign(diag R) (so
/// the result is the unique Q with R's diagonal positive, whatever QR
/// algorithm), transposed to [rows, cols] with orthonormal rows.
fn orthogonal(rows: usize, cols: usize, seed: u64, stream: u32) -> Vec<f32> {
    assert!(
        rows <= cols,
        "orthogonal: expects rows <= cols, got {rows} x {cols}"
    );
    let (m, n) = (cols, rows);
    let mut rng = RngStream::new(seed, Purpose::Init, stream);
    let a: Vec<f64> = (0..m * n).map(|_| rng.next_normal()).collect();
    let q = thin_q_positive(a, m, n);
    // q is [m, n] row-major; the kernel is its transpose [n, m] = [rows, cols].
    let mut out = vec![0.0f32; rows * cols];
    for i in 0..m {
        for j in 0..n {
            out[j * m + i] = q[i * n + j] as f32;
        }
    }
    out
}

/// Householder QR of `a` ([m, n] row-major, m >= n): returns the thin Q
/// ([m, n]) with each column multiplied by the sign of R's diagonal entry.
fn thin_q_positive(mut a: Vec<f64>, m: usize, n: usize) -> Vec<f64> {
    // Reflector k is I - 2 v v^T with v (unit, zero above row k) in vs[k].
    let mut vs = vec![0.0f64; n * m];
    let mut r_diag = vec![0.0f64; n];
    for k in 0..n {
        let norm = (k..m)
            .map(|i| a[i * n + k] * a[i * n + k])
            .sum::<f64>()
            .sqrt();
        // Reflect x onto -sign(x_k) |x| e_k: adds magnitudes, no cancellation.
        let alpha = if a[k * n + k] >= 0.0 { -norm } else { norm };
        let v = &mut vs[k * m..(k + 1) * m];
        for i in k..m {
            v[i] = a[i * n + k];
        }
        v[k] -= alpha;
        let v_norm = (k..m).map(|i| v[i] * v[i]).sum::<f64>().sqrt();
        if v_norm > 0.0 {
            v[k..].iter_mut().for_each(|x| *x /= v_norm);
        }
        for j in k..n {
            let dot: f64 = (k..m).map(|i| v[i] * a[i * n + j]).sum();
            for i in k..m {
                a[i * n + j] -= 2.0 * v[i] * dot;
            }
        }
        r_diag[k] = a[k * n + k];
    }
    // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of I.
    let mut q = vec![0.0f64; m * n];
    for j in 0..n {
        q[j * n + j] = 1.0;
    }
    for k in (0..n).rev() {
        let v = &vs[k * m..(k + 1) * m];
        for j in 0..n {
            let dot: f64 = (k..m).map(|i| v[i] * q[i * n + j]).sum();
            for i in k..m {
                q[i * n + j] -= 2.0 * v[i] * dot;
            }
        }
    }
    // numpy's sign(0) is 0, which would zero a column; a zero diagonal has
    // probability zero for Gaussian input, so treat it as +1.
    for (j, &d) in r_diag.iter().enumerate() {
        if d < 0.0 {
            (0..m).for_each(|i| q[i * n + j] = -q[i * n + j]);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_times_r_reproduces_a_and_r_diag_is_positive() {
        let (m, n) = (7, 3);
        let mut rng = RngStream::new(1, Purpose::Init, 9);
        let a: Vec<f64> = (0..m * n).map(|_| rng.next_normal()).collect();
        let q = thin_q_positive(a.clone(), m, n);
        // R = Q^T A must be upper triangular with a positive diagonal, and Q R = A.
        let r = |i: usize, j: usize| (0..m).map(|k| q[k * n + i] * a[k * n + j]).sum::<f64>();
        for i in 0..n {
            assert!(r(i, i) > 0.0);
            for j in 0..i {
                assert!(r(i, j).abs() < 1e-12, "R[{i},{j}] = {}", r(i, j));
            }
        }
        for i in 0..m {
            for j in 0..n {
                let qr: f64 = (0..n).map(|k| q[i * n + k] * r(k, j)).sum();
                assert!((qr - a[i * n + j]).abs() < 1e-12);
            }
        }
    }
}
