//! The CPU reference against independent checks: a naive f64 forward written
//! out loop by loop, f32 vs f64, RMSprop against hand-computed numbers, Keras
//! initialisation statistics, and bit-identical results for every threading
//! and chunking of a batch.
//!
//! Shapes: x [B, T] class indices (row-major), y [B], probabilities [B, V].

mod common;
use charlstm_cuda::model::Tensor;
use common::{random_batch, random_params};

use charlstm_cuda::cpu::{self, RmsProp, Workspace};
use charlstm_cuda::model::{GATE_F, Grads, Params, TENSOR_NAMES, init_params};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Logits [B, V] by the textbook loops: no GEMM, no gather table, no chunks.
fn naive_logits(p: &Params<f64>, x: &[u32], t_len: usize) -> Vec<f64> {
    let (h, v, g) = (p.hidden, p.vocab, 4 * p.hidden);
    let mut logits = Vec::new();
    for seq in x.chunks(t_len) {
        let (mut hs, mut cs) = (vec![0.0; h], vec![0.0; h]);
        for &cls in seq {
            let z: Vec<f64> = (0..g)
                .map(|j| {
                    let rec: f64 = (0..h)
                        .map(|k| hs[k] * p[Tensor::RecurrentKernel][k * g + j])
                        .sum();
                    p[Tensor::Kernel][cls as usize * g + j] + p[Tensor::Bias][j] + rec
                })
                .collect();
            for j in 0..h {
                let (i, f) = (sigmoid(z[j]), sigmoid(z[h + j]));
                let (gg, o) = (z[2 * h + j].tanh(), sigmoid(z[3 * h + j]));
                cs[j] = f * cs[j] + i * gg;
                hs[j] = o * cs[j].tanh();
            }
        }
        logits.extend((0..v).map(|c| {
            p[Tensor::DenseBias][c]
                + (0..h)
                    .map(|j| hs[j] * p[Tensor::DenseKernel][j * v + c])
                    .sum::<f64>()
        }));
    }
    logits
}

fn softmax_rows(logits: &[f64], v: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for row in logits.chunks(v) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|l| (l - m).exp()).sum();
        out.extend(row.iter().map(|l| (l - m).exp() / s));
    }
    out
}

#[test]
fn forward_matches_naive_loops_for_every_seq_len() {
    let (v, h, b) = (11, 6, 4);
    let p = random_params(v, h, 0.6, 1);
    for t in [1, 2, 5, 13] {
        let (x, y) = random_batch(v, b, t, t as u64);
        let want = softmax_rows(&naive_logits(&p, &x, t), v);
        let got = cpu::predict(&p, &x, t);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-13,
            "T={t}: predict differs from naive softmax by {worst:e}"
        );
        for row in got.chunks(v) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            assert!(row.iter().all(|&q| q > 0.0));
        }
        let naive_loss = (0..b)
            .map(|i| -want[i * v + y[i] as usize].ln())
            .sum::<f64>()
            / b as f64;
        let loss = cpu::loss(&p, &x, &y, t);
        assert!(
            (loss - naive_loss).abs() < 1e-13,
            "T={t}: loss {loss} vs naive {naive_loss}"
        );
        assert_eq!(
            loss.to_bits(),
            cpu::loss_and_grads(&p, &x, &y, t).0.to_bits()
        );
    }
}

#[test]
fn f32_agrees_with_f64() {
    let (v, h, t, b) = (23, 16, 12, 9);
    let p64 = random_params(v, h, 0.4, 2);
    let p32 = p64.map(|x| x as f32);
    let p64 = p32.map(f64::from); // the same values in both precisions
    let (x, y) = random_batch(v, b, t, 3);
    let (l64, g64) = cpu::loss_and_grads(&p64, &x, &y, t);
    let (l32, g32) = cpu::loss_and_grads(&p32, &x, &y, t);
    let loss_err = (f64::from(l32) - l64).abs() / l64;
    println!("loss: f64 {l64}, f32 {l32}, relative error {loss_err:.2e}");
    assert!(loss_err < 1e-6);
    // Per tensor: max |g32 - g64| relative to the tensor's largest gradient.
    for ((name, a), b) in TENSOR_NAMES.iter().zip(g32.tensors()).zip(g64.tensors()) {
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = a
            .iter()
            .zip(b)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{name:24} max |g| {scale:.3e}, max abs error {err:.2e} ({:.2e} relative)",
            err / scale
        );
        assert!(
            scale > 1e-4 && err <= 1e-5 * scale,
            "{name}: f32 off by {err:e} (scale {scale:e})"
        );
    }
    let (q64, q32) = (cpu::predict(&p64, &x, t), cpu::predict(&p32, &x, t));
    let err = q32
        .iter()
        .zip(&q64)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    println!("predict: max abs error {err:.2e}");
    assert!(err < 1e-6);
}

/// `cpu::trace` (what the selftest compares kernels with) is the reference's
/// own run: the same loss and gradients bit for bit, a forward that ends in
/// the logits of the naive loops, and intermediates that obey the cell's
/// and the head's equations.
#[test]
fn trace_is_the_reference_run_laid_out_t_major() {
    let (v, h, b, t) = (9, 5, 3, 4);
    let p = random_params(v, h, 0.7, 31);
    let (x, y) = random_batch(v, b, t, 32);
    let tr = cpu::trace(&p, &x, &y, t);
    let (loss, grads) = cpu::loss_and_grads(&p, &x, &y, t);
    assert_eq!(tr.loss, loss);
    assert_eq!(tr.grads, grads);
    assert_eq!(
        (tr.gates.len(), tr.c.len(), tr.h.len(), tr.dz.len()),
        (t * b * 4 * h, t * b * h, t * b * h, t * b * 4 * h)
    );
    let close = |a: f64, e: f64, what: &str| assert!((a - e).abs() < 1e-12, "{what}: {a} vs {e}");
    let probs = softmax_rows(&naive_logits(&p, &x, t), v);
    for (i, (&a, &e)) in tr.probs.iter().zip(&probs).enumerate() {
        close(a, e, &format!("probs[{i}]"));
        let onehot = if i % v == y[i / v] as usize { 1.0 } else { 0.0 };
        close(
            tr.dlogits[i],
            (e - onehot) / b as f64,
            &format!("dlogits[{i}]"),
        );
    }
    for s in 0..t * b {
        for j in 0..h {
            let gate = |q: usize| tr.gates[s * 4 * h + q * h + j];
            let c_prev = if s < b { 0.0 } else { tr.c[(s - b) * h + j] };
            close(tr.c[s * h + j], gate(1) * c_prev + gate(0) * gate(2), "c");
            close(tr.h[s * h + j], gate(3) * tr.c[s * h + j].tanh(), "h");
        }
    }
    for bi in 0..b {
        for j in 0..h {
            let dh: f64 = (0..v)
                .map(|c| tr.dlogits[bi * v + c] * p[Tensor::DenseKernel][j * v + c])
                .sum();
            close(tr.dh_last[bi * h + j], dh, "dh_last");
        }
    }
}

#[test]
fn loss_at_init_is_about_ln_v() {
    let (v, h, t, b) = (57, 128, 60, 16);
    let p = init_params(v, h, 42);
    let (x, y) = random_batch(v, b, t, 4);
    let loss = cpu::loss(&p, &x, &y, t);
    println!("loss at init {loss}, ln V = {}", (v as f32).ln());
    assert!((loss - (v as f32).ln()).abs() < 0.1, "loss at init {loss}");
}

#[test]
fn rmsprop_one_step_by_hand() {
    // Five elements (p, ms, g) -> (ms', p') with lr 0.01, rho 0.9, eps 1e-7,
    // computed with 40-digit decimals (written here to f64 precision):
    //   ms' = 0.9 ms + 0.1 g^2;  p' = p - 0.01 g / (sqrt(ms') + 1e-7)
    let cases = [
        // p,    ms,   g,     ms',   p'
        (1.0, 0.0, 0.5, 0.025, 0.968_377_243_398_303_6),
        (-2.0, 0.04, -0.1, 0.037, -1.994_801_250_253_601),
        (0.25, 0.01, 0.0, 0.009, 0.25),
        (0.5, 0.0, 1e-9, 1e-19, 0.499_900_315_230_918_3), // eps dominates sqrt(ms')
        (3.0, 1.0, 2.0, 1.3, 2.982_458_841_152_321),
    ];
    let mut p = Params::<f64>::zeros(1, 1); // 4 + 4 + 4 + 1 + 1 = 14 scalars
    let mut ms = p.clone();
    let mut g = p.clone();
    // kernel holds cases 0..4, dense_bias case 4.
    for (i, &(p0, m0, g0, _, _)) in cases[..4].iter().enumerate() {
        (
            p[Tensor::Kernel][i],
            ms[Tensor::Kernel][i],
            g[Tensor::Kernel][i],
        ) = (p0, m0, g0);
    }
    (
        p[Tensor::DenseBias][0],
        ms[Tensor::DenseBias][0],
        g[Tensor::DenseBias][0],
    ) = (cases[4].0, cases[4].1, cases[4].2);
    let mut p32 = p.map(|x| x as f32);
    let mut ms32 = ms.map(|x| x as f32);
    RmsProp::default().step(&mut p, &mut ms, &g);
    RmsProp::default().step(&mut p32, &mut ms32, &g.map(|x| x as f32));
    for (i, &(_, _, _, want_ms, want_p)) in cases.iter().enumerate() {
        let (got_p, got_ms, got_p32) = if i < 4 {
            (
                p[Tensor::Kernel][i],
                ms[Tensor::Kernel][i],
                p32[Tensor::Kernel][i],
            )
        } else {
            (
                p[Tensor::DenseBias][0],
                ms[Tensor::DenseBias][0],
                p32[Tensor::DenseBias][0],
            )
        };
        assert!(
            (got_ms - want_ms).abs() <= 1e-15 * want_ms.abs(),
            "case {i}: ms {got_ms} vs {want_ms}"
        );
        assert!(
            (got_p - want_p).abs() <= 1e-14 * want_p.abs(),
            "case {i}: p {got_p} vs {want_p}"
        );
        assert!(
            (f64::from(got_p32) - want_p).abs() <= 2e-7 * want_p.abs(),
            "case {i}: f32 p {got_p32}"
        );
    }
    // Untouched elements (p = ms = g = 0) stay 0.
    assert_eq!(p[Tensor::Bias], vec![0.0; 4]);
    assert_eq!(ms[Tensor::RecurrentKernel], vec![0.0; 4]);
}

#[test]
fn init_follows_keras() {
    let (v, h) = (57, 128);
    let p = init_params(v, h, 42);
    let g = 4 * h;
    // recurrent_kernel [H, 4H]: orthonormal rows, U U^T = I.
    let u = &p[Tensor::RecurrentKernel];
    let mut worst = 0.0f64;
    for i in 0..h {
        for j in 0..h {
            let dot: f64 = (0..g)
                .map(|k| f64::from(u[i * g + k]) * f64::from(u[j * g + k]))
                .sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    println!("U U^T - I: max abs {worst:.2e}");
    assert!(worst < 1e-5);
    // Glorot uniform: inside (-l, l), variance l^2 / 3, flat histogram.
    for (name, w, fan_in, fan_out) in [
        ("kernel", &p[Tensor::Kernel], v, g),
        ("dense_kernel", &p[Tensor::DenseKernel], h, v),
    ] {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n;
        println!(
            "{name}: limit {limit:.4}, mean {mean:.2e}, var / (l^2/3) = {:.4}",
            var / (limit * limit / 3.0)
        );
        assert!(
            w.iter().all(|&x| f64::from(x).abs() <= limit),
            "{name}: a value outside the Glorot limit"
        );
        assert!(mean.abs() < 0.02 * limit && (var / (limit * limit / 3.0) - 1.0).abs() < 0.05);
        let mut bins = [0usize; 10];
        for &x in w.iter() {
            bins[(((f64::from(x) / limit + 1.0) * 5.0) as usize).min(9)] += 1;
        }
        assert!(
            bins.iter().all(|&c| (c as f64 / n - 0.1).abs() < 0.02),
            "{name}: histogram {bins:?}"
        );
    }
    // Bias: the forget slice is 1 (unit_forget_bias), the rest 0; dense bias 0.
    for (j, &b) in p[Tensor::Bias].iter().enumerate() {
        assert_eq!(b, if j / h == GATE_F { 1.0 } else { 0.0 }, "bias[{j}]");
    }
    assert!(p[Tensor::DenseBias].iter().all(|&b| b == 0.0));
    // Deterministic in the seed, and the seed matters.
    assert_eq!(p, init_params(v, h, 42));
    let q = init_params(v, h, 43);
    assert!(
        p[Tensor::Kernel] != q[Tensor::Kernel]
            && p[Tensor::RecurrentKernel] != q[Tensor::RecurrentKernel]
            && p[Tensor::DenseKernel] != q[Tensor::DenseKernel]
    );
}

/// Loss, gradients and predictions for one threading / chunking setting.
fn run<F: cpu::Scalar>(
    p: &Params<F>,
    x: &[u32],
    y: &[u32],
    t: usize,
    mut ws: Workspace<F>,
) -> (F, Grads<F>, F, Vec<F>) {
    let mut grads = Grads::zeros(p.vocab, p.hidden);
    let loss = cpu::loss_and_grads_into(p, x, y, t, &mut ws, &mut grads);
    let fwd = cpu::loss_with(p, x, y, t, &mut ws);
    let mut probs = vec![F::zero(); y.len() * p.vocab];
    cpu::predict_into(p, x, t, &mut ws, &mut probs);
    (loss, grads, fwd, probs)
}

fn bit_identical_for_every_split<F: cpu::Scalar + PartialEq>(p: &Params<F>) {
    let (t, b) = (9, 37);
    let (x, y) = random_batch(p.vocab, b, t, 5);
    let whole = run(p, &x, &y, t, Workspace::new().with_threads(1).with_chunk(b));
    assert!(
        whole.0 == whole.2,
        "loss_with differs from loss_and_grads_into's loss"
    );
    for (threads, chunk) in [
        (0, 0),
        (2, 0),
        (3, 0),
        (2, 5),
        (1, 1),
        (4, 7),
        (37, 0),
        (64, 0),
    ] {
        let ws = Workspace::new().with_threads(threads).with_chunk(chunk);
        let split = run(p, &x, &y, t, ws);
        assert!(
            split == whole,
            "threads {threads}, chunk {chunk}: result differs from one whole chunk"
        );
    }
    // A reused workspace (after a larger and a shorter call) gives the same bits.
    let mut ws = Workspace::new();
    let (x2, y2) = random_batch(p.vocab, 50, 11, 6);
    let _ = run(p, &x2, &y2, 11, ws.clone());
    let mut grads = Grads::zeros(p.vocab, p.hidden);
    let _ = cpu::loss_and_grads_into(p, &x2, &y2, 11, &mut ws, &mut grads);
    let _ = cpu::loss_and_grads_into(p, &x2[..33], &y2[..3], 11, &mut ws, &mut grads);
    assert!(
        cpu::loss_and_grads_into(p, &x, &y, t, &mut ws, &mut grads) == whole.0 && grads == whole.1
    );
}

#[test]
fn threads_and_chunks_do_not_change_a_bit() {
    let p = random_params(23, 16, 0.5, 7);
    bit_identical_for_every_split(&p);
    bit_identical_for_every_split(&p.map(|x| x as f32));
}

#[test]
fn threads_do_not_change_a_bit_at_full_width() {
    // H = 128 as in the Keras job: 4H = 512 > the GEMM's k-block of 256, so
    // the backward's dh product sums in two blocks.
    let (v, h, t, b) = (57, 128, 20, 40);
    let p = init_params(v, h, 3);
    let (x, y) = random_batch(v, b, t, 10);
    let whole = run(&p, &x, &y, t, Workspace::new().with_threads(1));
    for (threads, chunk) in [(2, 0), (3, 7)] {
        let split = run(
            &p,
            &x,
            &y,
            t,
            Workspace::new().with_threads(threads).with_chunk(chunk),
        );
        assert!(
            split == whole,
            "threads {threads}, chunk {chunk}: result differs"
        );
    }
}

#[test]
fn training_reduces_the_loss_of_a_batch() {
    let (v, h, t, b) = (13, 16, 8, 12);
    let mut p = init_params(v, h, 9);
    let mut ms = Params::zeros(v, h);
    let (x, y) = random_batch(v, b, t, 8);
    let mut ws = Workspace::new();
    let mut grads = Grads::zeros(v, h);
    let first = cpu::loss_and_grads_into(&p, &x, &y, t, &mut ws, &mut grads);
    for _ in 0..30 {
        cpu::loss_and_grads_into(&p, &x, &y, t, &mut ws, &mut grads);
        RmsProp::default().step(&mut p, &mut ms, &grads);
    }
    let last = cpu::loss(&p, &x, &y, t);
    println!("loss {first} -> {last} after 30 steps on one batch");
    assert!(last < 0.5 * first);
}

#[test]
#[should_panic(expected = "outside the vocabulary")]
fn class_outside_vocab_is_reported() {
    let p = Params::<f32>::zeros(3, 2);
    cpu::loss(&p, &[0, 1, 3], &[0], 3);
}

#[test]
#[should_panic(expected = "not a positive multiple of seq_len")]
fn ragged_batch_is_reported() {
    let p = Params::<f32>::zeros(3, 2);
    cpu::predict(&p, &[0, 1, 2, 1], 3);
}

#[test]
fn gather_decodes_windows_and_targets() {
    let corpus = charlstm_cuda::OneHotCorpus::from_text("abcabd", false).unwrap();
    // vocab a b c d -> 0 1 2 3; windows of 2 at starts 0 and 3.
    let (x, y) = cpu::gather(&corpus, &[0, 3], 2);
    assert_eq!(x, vec![0, 1, 0, 1]);
    assert_eq!(y, vec![2, 3]);
}
