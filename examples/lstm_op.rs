//! The LSTM op used the way another crate would use it: its own data, its
//! own head and loss, its own optimizer, no `Trainer`.
//!
//! ```text
//! cargo run --release --example lstm_op
//! ```
//!
//! The task: a stream of random symbols from {0, 1, 2, 3}; at every step,
//! name the symbol seen DELAY steps before. Nothing in the current input
//! says it, so the network has to carry it in its state. A 2-layer LSTM
//! (dropout 0.1 between the layers) reads the symbols one-hot as a dense
//! [T, B, 4] tensor; a linear head + softmax turns every step's hidden
//! state into a guess; the loss is the mean cross-entropy over all steps
//! from DELAY on; Adam updates every weight. The loss falls from ln 4 ≈ 1.39
//! towards 0; the program fails if it has not fallen below a third of that.

use charlstm_cuda::ops::{LayerParams, Lstm, LstmInput, Mode};
use charlstm_cuda::rng::{Purpose, RngStream};

const SYMBOLS: usize = 4;
const DELAY: usize = 2;
const T: usize = 12;
const B: usize = 32;
const H: usize = 32;
const LAYERS: usize = 2;
const STEPS: u32 = 300;

/// Adam (Kingma & Ba) over one tensor: its two moment buffers.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    const LR: f32 = 0.01;
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One update of `w` by gradient `g` at step `t` (1-based).
    fn step(&mut self, w: &mut [f32], g: &[f32], t: i32) {
        let (c1, c2) = (1.0 - Self::B1.powi(t), 1.0 - Self::B2.powi(t));
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = Self::B1 * *m + (1.0 - Self::B1) * g;
            *v = Self::B2 * *v + (1.0 - Self::B2) * g * g;
            *w -= Self::LR * (*m / c1) / ((*v / c2).sqrt() + Self::EPS);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lstm = Lstm::new(LAYERS, SYMBOLS, H)?.with_dropout(0.1)?;
    let mut rng = RngStream::new(1, Purpose::Init, 0);
    let mut uniform = |n: usize, a: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * a)
            .collect()
    };
    // PyTorch's init: uniform in ±1/sqrt(H); forget-gate bias 1.
    let a = 1.0 / (H as f32).sqrt();
    let mut layers: Vec<LayerParams<f32>> = (0..LAYERS)
        .map(|l| {
            let mut p = LayerParams::zeros(lstm.layer_input(l), H);
            p.kernel = uniform(p.kernel.len(), a);
            p.recurrent_kernel = uniform(p.recurrent_kernel.len(), a);
            p.bias[H..2 * H].fill(1.0);
            p
        })
        .collect();
    let mut head_w = uniform(H * SYMBOLS, a); // [H, SYMBOLS]
    let mut head_b = vec![0.0f32; SYMBOLS];
    let mut adam: Vec<Adam> = layers
        .iter()
        .flat_map(|p| [p.kernel.len(), p.recurrent_kernel.len(), p.bias.len()])
        .chain([head_w.len(), head_b.len()])
        .map(Adam::new)
        .collect();

    let mut data = RngStream::new(2, Purpose::Shuffle, 0);
    let (mut first, mut last) = (None, 0.0);
    for step in 0..STEPS {
        // A fresh batch: symbols [T, B], one-hot x [T, B, SYMBOLS].
        let sym: Vec<usize> = (0..T * B)
            .map(|_| data.below(SYMBOLS as u64) as usize)
            .collect();
        let mut x = vec![0.0f32; T * B * SYMBOLS];
        for (k, &s) in sym.iter().enumerate() {
            x[k * SYMBOLS + s] = 1.0;
        }
        let weights: Vec<_> = layers.iter().map(LayerParams::weights).collect();
        let mode = Mode::Train { seed: 7, step };
        let out = lstm.forward(&weights, LstmInput::dense(&x, T, B), None, None, mode)?;

        // Head and loss at every step t >= DELAY: target = sym[t - DELAY].
        let y = out.y();
        let counted = ((T - DELAY) * B) as f32;
        let mut loss = 0.0f32;
        let mut dy = vec![0.0f32; T * B * H];
        let mut d_head_w = vec![0.0f32; H * SYMBOLS];
        let mut d_head_b = vec![0.0f32; SYMBOLS];
        for k in DELAY * B..T * B {
            let h = &y[k * H..][..H];
            let mut logits = head_b.clone();
            for (j, l) in logits.iter_mut().enumerate() {
                *l += (0..H).map(|u| h[u] * head_w[u * SYMBOLS + j]).sum::<f32>();
            }
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            let target = sym[k - DELAY * B];
            loss += (max + z.ln() - logits[target]) / counted;
            for (j, &l) in logits.iter().enumerate() {
                let dl = ((l - max).exp() / z - f32::from(u8::from(j == target))) / counted;
                d_head_b[j] += dl;
                for u in 0..H {
                    d_head_w[u * SYMBOLS + j] += h[u] * dl;
                    dy[k * H + u] += dl * head_w[u * SYMBOLS + j];
                }
            }
        }
        let grads = lstm.backward(&weights, out, &dy, None, None)?;

        let t = step as i32 + 1;
        let tensors = layers
            .iter_mut()
            .zip(&grads.layers)
            .flat_map(|(p, g)| {
                [
                    (&mut p.kernel, &g.kernel),
                    (&mut p.recurrent_kernel, &g.recurrent_kernel),
                    (&mut p.bias, &g.bias),
                ]
            })
            .chain([(&mut head_w, &d_head_w), (&mut head_b, &d_head_b)]);
        for ((w, g), opt) in tensors.zip(&mut adam) {
            opt.step(w, g, t);
        }

        first.get_or_insert(loss);
        last = loss;
        if step % 30 == 0 || step + 1 == STEPS {
            println!("step {step:3}: loss {loss:.4}");
        }
    }
    let first = first.unwrap_or(last);
    println!("loss {first:.4} -> {last:.4}");
    if last > first / 3.0 {
        return Err(format!("the loss did not fall enough: {first:.4} -> {last:.4}").into());
    }
    Ok(())
}
