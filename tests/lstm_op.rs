//! `ops::Lstm`, the LSTM op on the caller's tensors: f64 gradient checks
//! against central differences (every input, state and weight, stacks of 1
//! to 3 layers, dense and one-hot inputs, dropout), agreement with the
//! character engine on the notebook's shape, the dropout masks, thread
//! independence, and every bad input's error.
//!
//! Loss of the gradient checks: `L = sum(Y ⊙ R) + sum(h_n ⊙ R2) + sum(c_n ⊙ R3)`
//! with random R, R2, R3, so every output and both final states carry a
//! gradient: dY = R, dh_n = R2, dc_n = R3. Tolerance as in gradcheck.rs:
//! `|analytic - numeric| <= 1e-6 * max(1, |numeric|)` with step 1e-5.

mod common;
use common::{Rng, random_batch, random_params};

use charlstm_cuda::cpu;
use charlstm_cuda::model::Tensor;
use charlstm_cuda::ops::{
    LayerParams, LayerWeights, Lstm, LstmGrads, LstmInput, LstmOutput, Mode, dropout,
};

const STEP: f64 = 1e-5;
const TOL: f64 = 1e-6;

/// Uniform in [-a, a) as f64.
fn vec64(rng: &mut Rng, n: usize, a: f64) -> Vec<f64> {
    rng.vec(n, a as f32).into_iter().map(f64::from).collect()
}

fn random_layers(lstm: &Lstm, rng: &mut Rng) -> Vec<LayerParams<f64>> {
    (0..lstm.layers())
        .map(|l| {
            let mut p = LayerParams::zeros(lstm.layer_input(l), lstm.hidden());
            for t in [&mut p.kernel, &mut p.recurrent_kernel, &mut p.bias] {
                *t = vec64(rng, t.len(), 0.6);
            }
            p
        })
        .collect()
}

fn views(layers: &[LayerParams<f64>]) -> Vec<LayerWeights<'_, f64>> {
    layers.iter().map(LayerParams::weights).collect()
}

/// Everything a gradient check varies: weights, input, initial state.
#[derive(Clone)]
struct Case {
    layers: Vec<LayerParams<f64>>,
    dense: Option<Vec<f64>>,
    classes: Vec<u32>,
    h0: Vec<f64>,
    c0: Vec<f64>,
    /// h0 and c0 passed to the op; false: `None` (the zero state, whose
    /// first step the op skips).
    given_state: bool,
    t: usize,
    b: usize,
}

impl Case {
    fn new(lstm: &Lstm, (t, b): (usize, usize), dense: bool, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let (n, i, h) = (lstm.layers(), lstm.input(), lstm.hidden());
        Case {
            layers: random_layers(lstm, &mut rng),
            dense: dense.then(|| vec64(&mut rng, t * b * i, 1.0)),
            classes: (0..t * b).map(|_| rng.range(0, i) as u32).collect(),
            h0: vec64(&mut rng, n * b * h, 0.5),
            c0: vec64(&mut rng, n * b * h, 0.5),
            given_state: true,
            t,
            b,
        }
    }

    /// The same case started from `None`, the zero state.
    fn starting_at_zero(mut self) -> Self {
        self.h0.fill(0.0);
        self.c0.fill(0.0);
        self.given_state = false;
        self
    }

    fn state(&self) -> (Option<&[f64]>, Option<&[f64]>) {
        match self.given_state {
            true => (Some(&self.h0), Some(&self.c0)),
            false => (None, None),
        }
    }

    fn input(&self) -> LstmInput<'_, f64> {
        match &self.dense {
            Some(x) => LstmInput::dense(x, self.t, self.b),
            None => LstmInput::classes(&self.classes, self.t, self.b),
        }
    }
}

/// The random projections R (of Y), R2 (of h_n), R3 (of c_n).
struct Loss {
    r: Vec<f64>,
    r2: Vec<f64>,
    r3: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn loss(lstm: &Lstm, c: &Case, mode: Mode, l: &Loss) -> f64 {
    let (h0, c0) = c.state();
    let out = lstm
        .forward(&views(&c.layers), c.input(), h0, c0, mode)
        .unwrap();
    dot(out.y(), &l.r) + dot(out.h_n(), &l.r2) + dot(out.c_n(), &l.r3)
}

/// Central difference of the loss along one element that `pick` selects.
fn numeric(
    lstm: &Lstm,
    c: &Case,
    mode: Mode,
    l: &Loss,
    pick: &dyn Fn(&mut Case) -> &mut f64,
) -> f64 {
    let mut q = c.clone();
    let orig = *pick(&mut q);
    *pick(&mut q) = orig + STEP;
    let plus = loss(lstm, &q, mode, l);
    *pick(&mut q) = orig - STEP;
    let minus = loss(lstm, &q, mode, l);
    (plus - minus) / (2.0 * STEP)
}

/// Checks every element of every gradient; returns the worst scaled error.
fn gradcheck(label: &str, lstm: &Lstm, c: &Case, mode: Mode, seed: u64) -> f64 {
    let (n, h, t, b) = (lstm.layers(), lstm.hidden(), c.t, c.b);
    let mut rng = Rng(seed ^ 0x5eed);
    let l = Loss {
        r: vec64(&mut rng, t * b * h, 1.0),
        r2: vec64(&mut rng, n * b * h, 1.0),
        r3: vec64(&mut rng, n * b * h, 1.0),
    };
    let w = views(&c.layers);
    let (h0, c0) = c.state();
    let out = lstm.forward(&w, c.input(), h0, c0, mode).unwrap();
    let g = lstm
        .backward(&w, out, &l.r, Some(&l.r2), Some(&l.r3))
        .unwrap();
    assert_eq!(
        g.dx.is_some(),
        c.dense.is_some(),
        "dx only for a dense input"
    );
    let mut worst = 0.0f64;
    let mut check =
        |name: String, analytic: &[f64], pick: &dyn Fn(&mut Case, usize) -> &mut f64| {
            for (i, &a) in analytic.iter().enumerate() {
                let num = numeric(lstm, c, mode, &l, &|q| pick(q, i));
                let e = (a - num).abs() / num.abs().max(1.0);
                assert!(
                    e <= TOL,
                    "{label}: {name}[{i}]: analytic {a} vs numeric {num} (scaled error {e:.3e})"
                );
                worst = worst.max(e);
            }
        };
    if let Some(dx) = &g.dx {
        check("dx".into(), dx, &|q, i| &mut q.dense.as_mut().unwrap()[i]);
    }
    if c.given_state {
        check("dh0".into(), &g.dh0, &|q, i| &mut q.h0[i]);
        check("dc0".into(), &g.dc0, &|q, i| &mut q.c0[i]);
    } else {
        // No state to perturb: the zero state passed explicitly, which
        // runs every product, gives the same gradients.
        let out = lstm
            .forward(&w, c.input(), Some(&c.h0), Some(&c.c0), mode)
            .unwrap();
        let given = lstm
            .backward(&w, out, &l.r, Some(&l.r2), Some(&l.r3))
            .unwrap();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12);
        assert!(
            close(&g.dh0, &given.dh0) && close(&g.dc0, &given.dc0),
            "{label}: dh0, dc0"
        );
        for (k, (a, b)) in g.layers.iter().zip(&given.layers).enumerate() {
            assert!(
                close(&a.kernel, &b.kernel)
                    && close(&a.recurrent_kernel, &b.recurrent_kernel)
                    && close(&a.bias, &b.bias),
                "{label}: layer {k}'s gradients from None and from zeros"
            );
        }
    }
    for (k, lg) in g.layers.iter().enumerate() {
        check(format!("layer {k} kernel"), &lg.kernel, &|q, i| {
            &mut q.layers[k].kernel[i]
        });
        check(
            format!("layer {k} recurrent_kernel"),
            &lg.recurrent_kernel,
            &|q, i| &mut q.layers[k].recurrent_kernel[i],
        );
        check(format!("layer {k} bias"), &lg.bias, &|q, i| {
            &mut q.layers[k].bias[i]
        });
    }
    println!("{label}: max scaled error {worst:.3e}");
    worst
}

const TRAIN: Mode = Mode::Train { seed: 42, step: 3 };

#[test]
fn gradients_one_layer_dense_and_one_hot() {
    let lstm = Lstm::new(1, 5, 3).unwrap();
    gradcheck(
        "N=1 dense",
        &lstm,
        &Case::new(&lstm, (4, 3), true, 1),
        Mode::Eval,
        1,
    );
    gradcheck(
        "N=1 one-hot",
        &lstm,
        &Case::new(&lstm, (4, 3), false, 2),
        Mode::Eval,
        2,
    );
}

#[test]
fn gradients_two_and_three_layers() {
    for n in [2, 3] {
        let lstm = Lstm::new(n, 4, 3).unwrap();
        let dense = Case::new(&lstm, (4, 2), true, 10 + n as u64);
        gradcheck(&format!("N={n} dense"), &lstm, &dense, Mode::Eval, 3);
        let one_hot = Case::new(&lstm, (3, 2), false, 20 + n as u64);
        gradcheck(&format!("N={n} one-hot"), &lstm, &one_hot, Mode::Eval, 4);
    }
}

/// From `None` (h_0 = c_0 = 0) the op skips step 0's products with h_0,
/// forward and in d recurrent_kernel; a single step leaves that gradient
/// exactly zero.
#[test]
fn gradients_from_the_zero_state() {
    for (n, t) in [(1, 4), (2, 3), (2, 1)] {
        let lstm = Lstm::new(n, 4, 3).unwrap();
        let dense = Case::new(&lstm, (t, 2), true, 50 + t as u64).starting_at_zero();
        gradcheck(
            &format!("N={n} T={t} dense, zero state"),
            &lstm,
            &dense,
            Mode::Eval,
            7,
        );
        let one_hot = Case::new(&lstm, (t, 3), false, 60 + t as u64).starting_at_zero();
        gradcheck(
            &format!("N={n} T={t} one-hot, zero state"),
            &lstm,
            &one_hot,
            Mode::Eval,
            8,
        );
        if t == 1 {
            let w = views(&dense.layers);
            let out = lstm
                .forward(&w, dense.input(), None, None, Mode::Eval)
                .unwrap();
            let dy = vec![1.0; dense.b * lstm.hidden()];
            let g = lstm.backward(&w, out, &dy, None, None).unwrap();
            assert!(
                g.layers
                    .iter()
                    .all(|l| l.recurrent_kernel.iter().all(|&v| v == 0.0))
            );
        }
    }
}

#[test]
fn gradients_with_dropout() {
    for n in [2, 3] {
        let lstm = Lstm::new(n, 4, 5).unwrap().with_dropout(0.4).unwrap();
        let dense = Case::new(&lstm, (4, 2), true, 30 + n as u64);
        gradcheck(
            &format!("N={n} dense, dropout 0.4"),
            &lstm,
            &dense,
            TRAIN,
            5,
        );
        let one_hot = Case::new(&lstm, (3, 3), false, 40 + n as u64);
        gradcheck(
            &format!("N={n} one-hot, dropout 0.4"),
            &lstm,
            &one_hot,
            TRAIN,
            6,
        );
        // The masks reach the gradients: they differ from the eval mode's.
        let w = views(&dense.layers);
        let dy = vec![1.0; dense.t * dense.b * lstm.hidden()];
        let grads = |mode| {
            let out = lstm.forward(&w, dense.input(), None, None, mode).unwrap();
            lstm.backward(&w, out, &dy, None, None).unwrap()
        };
        assert_ne!(
            grads(TRAIN).layers[0].kernel,
            grads(Mode::Eval).layers[0].kernel
        );
    }
}

/// The op, as one layer over one-hot characters with a dense + softmax head
/// written here, gives the character engine's loss and LSTM gradients.
#[test]
fn one_layer_with_a_softmax_head_matches_the_engine() {
    let (v, h, t, b) = (7, 5, 6, 4);
    let p = random_params(v, h, 0.5, 77);
    let (x, y) = random_batch(v, b, t, 78);
    let (engine_loss, engine_grads) = cpu::loss_and_grads(&p, &x, &y, t);

    let lstm = Lstm::new(1, v, h).unwrap();
    let w = [LayerWeights {
        kernel: &p[Tensor::Kernel],
        recurrent_kernel: &p[Tensor::RecurrentKernel],
        bias: &p[Tensor::Bias],
    }];
    // The engine's x is [B, T]; the op's classes are [T, B].
    let classes: Vec<u32> = (0..t * b).map(|k| x[(k % b) * t + k / b]).collect();
    let (dk, db) = (&p[Tensor::DenseKernel], &p[Tensor::DenseBias]);
    // Through the gradient at the last step of dY, and through dh_n: the same.
    for through_dy in [true, false] {
        let out = lstm
            .forward(
                &w,
                LstmInput::classes(&classes, t, b),
                None,
                None,
                Mode::Eval,
            )
            .unwrap();
        let h_last = out.h_n().to_vec();
        assert_eq!(
            h_last,
            out.y()[(t - 1) * b * h..],
            "h_n is the last step of y"
        );
        // Head: logits = h_T @ dense_kernel + dense_bias; mean cross-entropy.
        let mut loss = 0.0;
        let mut dh = vec![0.0; b * h];
        for r in 0..b {
            let hr = &h_last[r * h..][..h];
            let logits: Vec<f64> = (0..v)
                .map(|j| db[j] + (0..h).map(|k| hr[k] * dk[k * v + j]).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            loss += (max + z.ln() - logits[y[r] as usize]) / b as f64;
            for j in 0..v {
                let pj = (logits[j] - max).exp() / z;
                let dl = (pj - f64::from(u8::from(j == y[r] as usize))) / b as f64;
                for k in 0..h {
                    dh[r * h + k] += dl * dk[k * v + j];
                }
            }
        }
        let mut dy = vec![0.0; t * b * h];
        let grads = if through_dy {
            dy[(t - 1) * b * h..].copy_from_slice(&dh);
            lstm.backward(&w, out, &dy, None, None).unwrap()
        } else {
            lstm.backward(&w, out, &dy, Some(&dh), None).unwrap()
        };
        assert!(
            (loss - engine_loss).abs() <= 1e-12,
            "loss {loss} vs engine {engine_loss}"
        );
        let g = &grads.layers[0];
        for (name, ours, theirs) in [
            ("kernel", &g.kernel, &engine_grads[Tensor::Kernel]),
            (
                "recurrent_kernel",
                &g.recurrent_kernel,
                &engine_grads[Tensor::RecurrentKernel],
            ),
            ("bias", &g.bias, &engine_grads[Tensor::Bias]),
        ] {
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, e)) in ours.iter().zip(theirs.iter()).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-12 * e.abs().max(1.0),
                    "{name}[{i}]: op {a} vs engine {e} (through dy: {through_dy})"
                );
            }
        }
    }
}

#[test]
fn dropout_masks_keep_one_minus_p_and_repeat_by_key() {
    let (t, b, h) = (50, 40, 37); // H not a multiple of 4: the last block is partial
    for p in [0.1, 0.3, 0.5] {
        let m = dropout::mask(p, (9, 0), 0, (t, b, h)).unwrap();
        assert_eq!(m.len(), t * b * h);
        let kept = m.iter().filter(|&&k| k).count() as f64 / m.len() as f64;
        // 74,000 draws: the standard deviation of the fraction is <= 0.002.
        assert!((kept - (1.0 - p)).abs() < 0.01, "p = {p}: kept {kept}");
    }
    let m = |seed, step, layer| dropout::mask(0.5, (seed, step), layer, (t, b, h)).unwrap();
    assert_eq!(m(9, 1, 0), m(9, 1, 0), "the same key draws the same mask");
    for other in [m(10, 1, 0), m(9, 2, 0), m(9, 1, 1)] {
        assert_ne!(
            m(9, 1, 0),
            other,
            "seed, step and layer each change the mask"
        );
    }
    assert!(
        dropout::mask(0.0, (9, 0), 0, (t, b, h))
            .unwrap()
            .iter()
            .all(|&k| k)
    );
}

/// A mask too large for the counter, T * B overflowing included, is an
/// error naming the fix, not a panic or a wrapped size.
#[test]
fn oversized_dropout_masks_are_errors() {
    for (t, b, h) in [
        (usize::MAX, 2, 8),
        (1 << 20, 1 << 12, 8),
        (1, 1, usize::MAX),
    ] {
        let e = dropout::mask(0.5, (9, 0), 0, (t, b, h))
            .expect_err("too large")
            .to_string();
        assert!(
            e.contains("lstm.dropout") && e.contains("smaller calls"),
            "({t}, {b}, {h}): {e}"
        );
    }
}

/// The documented counter, spelled out with the bare Philox block.
#[test]
fn dropout_mask_follows_the_documented_counter() {
    use charlstm_cuda::rng::Philox;
    let (t, b, h, p, seed, step, layer) = (3, 2, 6, 0.3, 0xdead_beef_u64, 5u32, 1u32);
    let m = dropout::mask(p, (seed, step), layer, (t, b, h)).unwrap();
    let thr = (p * 16_777_216.0_f64).ceil() as u32;
    for tt in 0..t {
        for bb in 0..b {
            for j in 0..h {
                let block = ((tt * b + bb) * h.div_ceil(4) + j / 4) as u32;
                let word = Philox::new(seed).block([block, step, layer, 5])[j % 4];
                assert_eq!(
                    m[(tt * b + bb) * h + j],
                    word >> 8 >= thr,
                    "t {tt} b {bb} j {j}"
                );
            }
        }
    }
}

/// In training, the layer above reads `h ⊙ mask / (1 - p)` of the
/// documented mask, and nothing else is dropped; in eval nothing is.
#[test]
fn dropout_sits_between_layers_only_and_is_off_in_eval() {
    let (t, b, i, h, p) = (5, 3, 4, 6, 0.5);
    let stacked = Lstm::new(2, i, h)
        .unwrap()
        .with_dropout(p)
        .unwrap()
        .with_threads(1);
    let c = Case::new(&stacked, (t, b), true, 50);
    let w = views(&c.layers);
    let x = c.input();
    let run = |lstm: &Lstm, w: &[LayerWeights<'_, f64>], x: LstmInput<'_, f64>, mode| {
        let out = lstm.forward(w, x, None, None, mode).unwrap();
        (out.y().to_vec(), out.h_n().to_vec(), out.c_n().to_vec())
    };
    let (y, h_n, c_n) = run(&stacked, &w, x, TRAIN);
    // The same stack by hand: layer 0, the mask, layer 1 on the dropped sequence.
    let one = |input| Lstm::new(1, input, h).unwrap().with_threads(1);
    let (y0, h0n, c0n) = run(&one(i), &w[..1], x, Mode::Eval);
    let Mode::Train { seed, step } = TRAIN else {
        unreachable!()
    };
    let keep = dropout::mask(p, (seed, step), 0, (t, b, h)).unwrap();
    let dropped: Vec<f64> = y0
        .iter()
        .zip(&keep)
        .map(|(&v, &k)| if k { v / (1.0 - p) } else { 0.0 })
        .collect();
    let (y1, h1n, c1n) = run(
        &one(h),
        &w[1..],
        LstmInput::dense(&dropped, t, b),
        Mode::Eval,
    );
    assert_eq!(y, y1, "the top layer's output is not dropped");
    assert_eq!(h_n, [h0n, h1n].concat(), "final states are not dropped");
    assert_eq!(c_n, [c0n, c1n].concat());
    // Eval: no mask at all, the same as p = 0.
    let no_dropout = Lstm::new(2, i, h).unwrap().with_threads(1);
    assert_eq!(
        run(&stacked, &w, x, Mode::Eval),
        run(&no_dropout, &w, x, TRAIN)
    );
    assert_ne!(run(&stacked, &w, x, Mode::Eval).0, y);
    // One layer has nothing between layers to drop.
    let single = Lstm::new(1, i, h).unwrap().with_dropout(p).unwrap();
    assert_eq!(
        run(&single, &w[..1], x, TRAIN),
        run(&single, &w[..1], x, Mode::Eval)
    );
    // A new step draws new masks.
    assert_ne!(
        run(
            &stacked,
            &w,
            x,
            Mode::Train {
                seed,
                step: step + 1
            }
        )
        .0,
        y
    );
}

/// Rows split across threads, GEMMs split by output rows: not one bit moves.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (t, b, i, h) = (7, 40, 9, 12);
    let base = Lstm::new(2, i, h).unwrap().with_dropout(0.2).unwrap();
    let c = Case::new(&base, (t, b), true, 60);
    let layers32 = map_layers(&c.layers, |&v| v as f32);
    let w: Vec<_> = layers32.iter().map(LayerParams::weights).collect();
    let x: Vec<f32> = c
        .dense
        .as_ref()
        .unwrap()
        .iter()
        .map(|&v| v as f32)
        .collect();
    let classes = &c.classes;
    let dy: Vec<f32> = (0..t * b * h).map(|k| (k as f32 * 0.1).sin()).collect();
    let run = |threads, dense: bool| {
        let lstm = base.clone().with_threads(threads);
        let input = if dense {
            LstmInput::dense(&x, t, b)
        } else {
            LstmInput::classes(classes, t, b)
        };
        let out = lstm.forward(&w, input, None, None, TRAIN).unwrap();
        let y = out.y().to_vec();
        let g = lstm.backward(&w, out, &dy, None, None).unwrap();
        (y, g.dx, g.dh0, g.layers)
    };
    for dense in [true, false] {
        let one = run(1, dense);
        for threads in [2, 3, 5] {
            assert!(
                run(threads, dense) == one,
                "threads {threads}, dense {dense}"
            );
        }
    }
}

/// `forward_into` / `backward_into` over buffers of earlier calls of other
/// shapes and inputs give what fresh ones give, bit for bit.
#[test]
fn reused_buffers_give_the_results_of_fresh_ones() {
    let lstm = Lstm::new(3, 4, 5).unwrap().with_dropout(0.3).unwrap();
    let (mut out, mut grads) = (LstmOutput::new(), LstmGrads::default());
    for (k, (t, b, dense, mode)) in [
        (6, 4, true, TRAIN),
        (3, 2, false, TRAIN),
        (5, 3, true, Mode::Eval),
        (2, 5, false, Mode::Eval),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Case::new(&lstm, (t, b), dense, 80 + k as u64);
        let w = views(&c.layers);
        let dy = vec64(&mut Rng(k as u64), t * b * 5, 1.0);
        let (h0, c0) = (Some(&c.h0[..]), (k % 2 == 0).then_some(&c.c0[..]));
        lstm.forward_into(&w, c.input(), h0, c0, mode, &mut out)
            .unwrap();
        let fresh = lstm.forward(&w, c.input(), h0, c0, mode).unwrap();
        assert_eq!(
            (out.y(), out.h_n(), out.c_n()),
            (fresh.y(), fresh.h_n(), fresh.c_n())
        );
        lstm.backward_into(&w, &mut out, &dy, None, h0, &mut grads)
            .unwrap();
        assert_eq!(
            grads,
            lstm.backward(&w, fresh, &dy, None, h0).unwrap(),
            "case {k}"
        );
        // The outputs still read the forward; a second backward is refused.
        assert_eq!(out.seq_len_batch(), (t, b));
        let again = lstm.backward_into(&w, &mut out, &dy, None, None, &mut grads);
        assert!(again.unwrap_err().to_string().contains("run forward again"));
    }
}

/// The f32 path (the vectorised activations, sgemm) stays close to the f64
/// reference: the same call in both, y and every gradient.
#[test]
fn f32_agrees_with_f64() {
    let lstm = Lstm::new(2, 6, 8).unwrap().with_dropout(0.25).unwrap();
    let c = Case::new(&lstm, (9, 5), true, 90);
    let w64 = views(&c.layers);
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let l32 = map_layers(&c.layers, |&x| x as f32);
    let w32: Vec<_> = l32.iter().map(LayerParams::weights).collect();
    let (x64, h0, c0) = (c.dense.clone().unwrap(), &c.h0, &c.c0);
    let dy = vec64(&mut Rng(91), 9 * 5 * 8, 1.0);
    let (x32, h32, c32, dy32) = (to32(&x64), to32(h0), to32(c0), to32(&dy));
    let out64 = lstm
        .forward(
            &w64,
            LstmInput::dense(&x64, 9, 5),
            Some(h0),
            Some(c0),
            TRAIN,
        )
        .unwrap();
    let out32 = lstm
        .forward(
            &w32,
            LstmInput::dense(&x32, 9, 5),
            Some(&h32),
            Some(&c32),
            TRAIN,
        )
        .unwrap();
    let close = |name: &str, a: &[f32], b: &[f64]| close_within(1e-5, name, a, b);
    close("y", out32.y(), out64.y());
    close("c_n", out32.c_n(), out64.c_n());
    let g64 = lstm.backward(&w64, out64, &dy, None, None).unwrap();
    let g32 = lstm.backward(&w32, out32, &dy32, None, None).unwrap();
    close("dx", g32.dx.as_ref().unwrap(), g64.dx.as_ref().unwrap());
    grads_within(1e-5, "", &g32, &g64);
}

/// Every malformed call is an error that names the argument and the fix.
#[test]
fn bad_inputs_get_clear_errors() {
    let msg = |e: charlstm_cuda::Error| format!("{e} / {}", e.hint());
    let expect = |r: Result<Lstm, charlstm_cuda::Error>, words: &[&str]| {
        let m = msg(r.expect_err("must be refused"));
        for w in words {
            assert!(m.contains(w), "{m:?} lacks {w:?}");
        }
    };
    expect(
        Lstm::new(0, 4, 3),
        &["lstm.layers", "0 layers", "at least 1", "e.g. 2"],
    );
    expect(Lstm::new(1, 0, 3), &["lstm.input", "at least 1"]);
    expect(Lstm::new(1, 4, 0), &["lstm.hidden", "at least 1"]);
    expect(
        Lstm::new(2, 4, usize::MAX / 4),
        &["lstm.hidden", "address space"],
    );
    for p in [-0.1, 1.0, 1.5, f64::NAN] {
        expect(
            Lstm::new(2, 4, 3).unwrap().with_dropout(p),
            &["lstm.dropout", "[0, 1)"],
        );
    }
    assert!(dropout::mask(1.0, (0, 0), 0, (1, 1, 1)).is_err());

    let (t, b, i, h) = (3, 2, 4, 5);
    let lstm = Lstm::new(2, i, h).unwrap();
    let c = Case::new(&lstm, (t, b), true, 70);
    let w = views(&c.layers);
    let x = c.dense.clone().unwrap();
    let fwd = |w: &[LayerWeights<'_, f64>], x: LstmInput<'_, f64>, h0, c0| {
        lstm.forward(w, x, h0, c0, Mode::Eval)
            .map(|_| ())
            .map_err(msg)
            .unwrap_err()
    };
    let has = |m: String, words: &[&str]| {
        for word in words {
            assert!(m.contains(word), "{m:?} lacks {word:?}");
        }
    };
    let dense = LstmInput::dense(&x, t, b);
    has(
        fwd(&w[..1], dense, None, None),
        &["weights", "1 layers' weights", "2 layers"],
    );
    let mut bad = w.clone();
    bad[1].kernel = &c.layers[1].kernel[1..];
    has(
        fwd(&bad, dense, None, None),
        &[
            "weights[1].kernel holds 99 values",
            "[H, 4H] = [5, 20] needs 100",
            "row-major",
        ],
    );
    let mut bad = w.clone();
    bad[0].recurrent_kernel = &c.layers[0].kernel;
    has(
        fwd(&bad, dense, None, None),
        &["weights[0].recurrent_kernel", "[H, 4H]"],
    );
    let mut bad = w.clone();
    bad[0].bias = &c.layers[0].bias[..4];
    has(
        fwd(&bad, dense, None, None),
        &["weights[0].bias holds 4", "[4H] = [20]"],
    );
    has(
        fwd(&w, LstmInput::dense(&x[1..], t, b), None, None),
        &["x holds 23 values", "[T, B, In] = [3, 2, 4] needs 24"],
    );
    has(
        fwd(&w, LstmInput::dense(&x, 0, b), None, None),
        &["0 steps (T)", "at least 1"],
    );
    has(
        fwd(&w, LstmInput::dense(&x, t, 0), None, None),
        &["0 batch rows (B)"],
    );
    has(
        fwd(&w, LstmInput::dense(&x, usize::MAX / 2, b), None, None),
        &["overflow the address space", "smaller calls"],
    );
    has(
        fwd(&w, LstmInput::classes(&[0, 1, 2], t, b), None, None),
        &["x holds 3 values", "[T, B] = [3, 2] needs 6"],
    );
    has(
        fwd(
            &w,
            LstmInput::classes(&[0, 1, 2, 3, 4, 0], t, b),
            None,
            None,
        ),
        &["class 4 at t = 2, b = 0", "In = 4"],
    );
    has(
        fwd(&w, dense, Some(&c.h0[1..]), None),
        &["h0 holds 19", "[N, B, H] = [2, 2, 5]"],
    );
    has(fwd(&w, dense, None, Some(&[0.0])), &["c0 holds 1"]);

    let dy = vec![0.0; t * b * h];
    let bwd = |dy: &[f64], dh: Option<&[f64]>, dc: Option<&[f64]>| {
        let out = lstm.forward(&w, dense, None, None, Mode::Eval).unwrap();
        lstm.backward(&w, out, dy, dh, dc)
            .map(|_| ())
            .map_err(msg)
            .unwrap_err()
    };
    has(
        bwd(&dy[1..], None, None),
        &["dy holds 29", "[T, B, H] = [3, 2, 5] needs 30"],
    );
    has(bwd(&dy, Some(&dy), None), &["dh_n holds 30", "needs 20"]);
    has(bwd(&dy, None, Some(&dy[..2])), &["dc_n holds 2"]);
    let other = Lstm::new(1, i, h).unwrap();
    let out = other
        .forward(&w[..1], dense, None, None, Mode::Eval)
        .unwrap();
    has(
        msg(lstm
            .backward(&w, out, &dy, None, None)
            .map(|_| ())
            .unwrap_err()),
        &["output of an Lstm of N = 1", "this Lstm's forward"],
    );
}

/// The f32 op (its products through `cpu::packed`'s AVX-512 kernel where
/// the CPU has it, and weight gradients split by columns) against the f64
/// op (the crate's dgemm) on the same dense 2-layer case: H = 40 leaves a
/// partial panel of 32 columns, B = 36 rows split across threads into
/// partial tiles of 8 rows.
#[test]
fn f32_agrees_with_f64_through_the_packed_products() {
    let (t, b, i, h) = (5, 36, 24, 40);
    let mut rng = Rng(41);
    let lstm = Lstm::new(2, i, h).expect("sizes").with_threads(2);
    let (layers, layers64) = random_f32_layers(&lstm, &mut rng);
    let x = rng.vec(t * b * i, 1.0);
    let dy = rng.vec(t * b * h, 1.0);
    let w32: Vec<LayerWeights<'_, f32>> = layers.iter().map(|p| p.weights()).collect();
    let w64: Vec<LayerWeights<'_, f64>> = layers64.iter().map(|p| p.weights()).collect();
    let (x64, dy64) = (wide(&x), wide(&dy));
    let out32 = lstm
        .forward(&w32, LstmInput::dense(&x, t, b), None, None, Mode::Eval)
        .expect("forward f32");
    let out64 = lstm
        .forward(&w64, LstmInput::dense(&x64, t, b), None, None, Mode::Eval)
        .expect("forward f64");
    assert_close("y", out32.y(), out64.y());
    assert_close("h_n", out32.h_n(), out64.h_n());
    let g32 = lstm
        .backward(&w32, out32, &dy, None, None)
        .expect("backward f32");
    let g64 = lstm
        .backward(&w64, out64, &dy64, None, None)
        .expect("backward f64");
    assert_close(
        "dx",
        g32.dx.as_deref().expect("dx"),
        g64.dx.as_deref().expect("dx"),
    );
    grads_within(1e-4, "", &g32, &g64);
}

/// The weight gradients of the f32 op, computed inside the backward a step
/// behind it where the packed kernel runs (`cpu::step_grads`: the one-hot
/// layer's scatter and every bias included), against the f64 op's, taken
/// after the backward: a one-hot first layer under a dense one, from a
/// given state and from zero, on 2 and 3 threads (the third owns no
/// columns of the [40 x 160] gradients' 32-column panels, but rows).
#[test]
fn f32_one_hot_weight_gradients_agree_with_f64() {
    let (t, b, v, h) = (6, 36, 11, 40);
    let mut rng = Rng(43);
    let (layers, layers64) = random_f32_layers(&Lstm::new(2, v, h).expect("sizes"), &mut rng);
    let classes: Vec<u32> = (0..t * b).map(|k| ((k * 7 + k / 5) % v) as u32).collect();
    let dy = rng.vec(t * b * h, 1.0);
    let h0 = rng.vec(2 * b * h, 0.5);
    let w32: Vec<LayerWeights<'_, f32>> = layers.iter().map(|p| p.weights()).collect();
    let w64: Vec<LayerWeights<'_, f64>> = layers64.iter().map(|p| p.weights()).collect();
    let (dy64, h064) = (wide(&dy), wide(&h0));
    for (threads, from_state) in [(2, false), (2, true), (3, true)] {
        let lstm = Lstm::new(2, v, h).expect("sizes").with_threads(threads);
        let (s32, s64) = if from_state {
            (Some(&h0[..]), Some(&h064[..]))
        } else {
            (None, None)
        };
        let out32 = lstm
            .forward(&w32, LstmInput::classes(&classes, t, b), s32, None, TRAIN)
            .expect("forward f32");
        let out64 = lstm
            .forward(&w64, LstmInput::classes(&classes, t, b), s64, None, TRAIN)
            .expect("forward f64");
        let g32 = lstm
            .backward(&w32, out32, &dy, None, None)
            .expect("backward f32");
        let g64 = lstm
            .backward(&w64, out64, &dy64, None, None)
            .expect("backward f64");
        let label = format!("{threads} threads, from a state: {from_state}, ");
        grads_within(1e-4, &label, &g32, &g64);
    }
}

/// Random weights of `lstm`'s layers in f32 (uniform in +-0.3), and the
/// same values in f64.
fn random_f32_layers(lstm: &Lstm, rng: &mut Rng) -> (Vec<LayerParams<f32>>, Vec<LayerParams<f64>>) {
    let h = lstm.hidden();
    let layers: Vec<LayerParams<f32>> = (0..lstm.layers())
        .map(|l| LayerParams {
            kernel: rng.vec(lstm.layer_input(l) * 4 * h, 0.3),
            recurrent_kernel: rng.vec(h * 4 * h, 0.3),
            bias: rng.vec(4 * h, 0.3),
        })
        .collect();
    let layers64 = map_layers(&layers, |&a| f64::from(a));
    (layers, layers64)
}

/// Every weight of `layers` through `f` (f64 to f32 or back).
fn map_layers<A, B>(layers: &[LayerParams<A>], f: impl Fn(&A) -> B) -> Vec<LayerParams<B>> {
    let map = |v: &[A]| v.iter().map(&f).collect();
    layers
        .iter()
        .map(|l| LayerParams {
            kernel: map(&l.kernel),
            recurrent_kernel: map(&l.recurrent_kernel),
            bias: map(&l.bias),
        })
        .collect()
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// f32 results within 1e-4 of the f64 ones, relative to max(1, max |f64|).
fn assert_close(what: &str, a: &[f32], e: &[f64]) {
    close_within(1e-4, what, a, e);
}

/// f32 results within `tol` of the f64 ones, relative to max(1, max |f64|).
fn close_within(tol: f64, what: &str, a: &[f32], e: &[f64]) {
    assert_eq!(a.len(), e.len(), "{what}");
    let scale = e.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(e)
        .map(|(&a, &e)| (f64::from(a) - e).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= tol * scale,
        "{what}: f32 off by {worst:.2e} (scale {scale:.2e})"
    );
}

/// [`close_within`] for dh0, dc0 and every layer's weight gradients.
fn grads_within(tol: f64, label: &str, g32: &LstmGrads<f32>, g64: &LstmGrads<f64>) {
    let close = |what: &str, a: &[f32], e: &[f64]| {
        close_within(tol, &format!("{label}{what}"), a, e);
    };
    close("dh0", &g32.dh0, &g64.dh0);
    close("dc0", &g32.dc0, &g64.dc0);
    for (l, (a, e)) in g32.layers.iter().zip(&g64.layers).enumerate() {
        close(&format!("layer {l} kernel"), &a.kernel, &e.kernel);
        close(
            &format!("layer {l} recurrent_kernel"),
            &a.recurrent_kernel,
            &e.recurrent_kernel,
        );
        close(&format!("layer {l} bias"), &a.bias, &e.bias);
    }
}
