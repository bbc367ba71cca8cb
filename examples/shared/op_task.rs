//! The task, head, loss and optimizer of the `lstm_op` examples (CPU and
//! device), everything a caller of the LSTM op brings itself: a stream of
//! random symbols from {0, 1, 2, 3}; at every step, name the symbol seen
//! DELAY steps before. Nothing in the current input says it, so the
//! network has to carry it in its state. The LSTM reads the symbols
//! one-hot as a dense [T, B, 4] tensor; a linear head + softmax turns every
//! step's hidden state into a guess; the loss is the mean cross-entropy
//! over all steps from DELAY on; Adam updates every weight. The loss falls
//! from ln 4 ≈ 1.39 towards 0.

use charlstm_cuda::ops::{LayerParams, Lstm};
use charlstm_cuda::rng::{Purpose, RngStream};

pub const SYMBOLS: usize = 4;
pub const DELAY: usize = 2;
pub const T: usize = 12;
pub const B: usize = 32;
pub const H: usize = 32;
pub const LAYERS: usize = 2;

/// Adam (Kingma & Ba) over one tensor: its two moment buffers.
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    const LR: f32 = 0.01;
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    pub fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One update of `w` by gradient `g` at step `t` (1-based).
    pub fn step(&mut self, w: &mut [f32], g: &[f32], t: i32) {
        let (c1, c2) = (1.0 - Self::B1.powi(t), 1.0 - Self::B2.powi(t));
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = Self::B1 * *m + (1.0 - Self::B1) * g;
            *v = Self::B2 * *v + (1.0 - Self::B2) * g * g;
            *w -= Self::LR * (*m / c1) / ((*v / c2).sqrt() + Self::EPS);
        }
    }
}

/// The model's weights on the host: every LSTM layer's, and the head's.
pub struct Model {
    pub layers: Vec<LayerParams<f32>>,
    /// `[H, SYMBOLS]`.
    pub head_w: Vec<f32>,
    pub head_b: Vec<f32>,
    adam: Vec<Adam>,
}

impl Model {
    /// PyTorch's init: uniform in ±1/sqrt(H); forget-gate bias 1.
    pub fn new(lstm: &Lstm) -> Self {
        let mut rng = RngStream::new(1, Purpose::Init, 0);
        let mut uniform = |n: usize, a: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * a)
                .collect()
        };
        let a = 1.0 / (H as f32).sqrt();
        let layers: Vec<LayerParams<f32>> = (0..LAYERS)
            .map(|l| {
                let mut p = LayerParams::zeros(lstm.layer_input(l), H);
                p.kernel = uniform(p.kernel.len(), a);
                p.recurrent_kernel = uniform(p.recurrent_kernel.len(), a);
                p.bias[H..2 * H].fill(1.0);
                p
            })
            .collect();
        let head_w = uniform(H * SYMBOLS, a);
        let head_b = vec![0.0f32; SYMBOLS];
        let adam = layers
            .iter()
            .flat_map(|p| [p.kernel.len(), p.recurrent_kernel.len(), p.bias.len()])
            .chain([head_w.len(), head_b.len()])
            .map(Adam::new)
            .collect();
        Model {
            layers,
            head_w,
            head_b,
            adam,
        }
    }

    /// The head and loss on the LSTM's output `y` [T, B, H] at every step
    /// t >= DELAY (target = sym[t - DELAY]): the loss, dL/dy, and the
    /// head's gradients.
    pub fn head(&self, y: &[f32], sym: &[usize]) -> (f32, Vec<f32>, Vec<f32>, Vec<f32>) {
        let counted = ((T - DELAY) * B) as f32;
        let mut loss = 0.0f32;
        let mut dy = vec![0.0f32; T * B * H];
        let mut d_head_w = vec![0.0f32; H * SYMBOLS];
        let mut d_head_b = vec![0.0f32; SYMBOLS];
        for k in DELAY * B..T * B {
            let h = &y[k * H..][..H];
            let mut logits = self.head_b.clone();
            for (j, l) in logits.iter_mut().enumerate() {
                *l += (0..H)
                    .map(|u| h[u] * self.head_w[u * SYMBOLS + j])
                    .sum::<f32>();
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
                    dy[k * H + u] += dl * self.head_w[u * SYMBOLS + j];
                }
            }
        }
        (loss, dy, d_head_w, d_head_b)
    }

    /// One Adam step at training step `step` (0-based) with every layer's
    /// gradients and the head's.
    pub fn update(
        &mut self,
        step: u32,
        grads: &[LayerParams<f32>],
        d_head_w: &[f32],
        d_head_b: &[f32],
    ) {
        let t = step as i32 + 1;
        let tensors = self
            .layers
            .iter_mut()
            .zip(grads)
            .flat_map(|(p, g)| {
                [
                    (&mut p.kernel[..], &g.kernel[..]),
                    (&mut p.recurrent_kernel[..], &g.recurrent_kernel[..]),
                    (&mut p.bias[..], &g.bias[..]),
                ]
            })
            .chain([
                (&mut self.head_w[..], d_head_w),
                (&mut self.head_b[..], d_head_b),
            ]);
        for ((w, g), opt) in tensors.zip(&mut self.adam) {
            opt.step(w, g, t);
        }
    }
}

/// A fresh batch: symbols [T, B] and their one-hot rows x [T, B, SYMBOLS].
pub fn batch(data: &mut RngStream) -> (Vec<usize>, Vec<f32>) {
    let sym: Vec<usize> = (0..T * B)
        .map(|_| data.below(SYMBOLS as u64) as usize)
        .collect();
    let mut x = vec![0.0f32; T * B * SYMBOLS];
    for (k, &s) in sym.iter().enumerate() {
        x[k * SYMBOLS + s] = 1.0;
    }
    (sym, x)
}

/// Prints the loss every 30 steps; at the end, an error unless the loss
/// fell below a third of its first value.
pub struct LossLog {
    first: Option<f32>,
    last: f32,
    steps: u32,
}

impl LossLog {
    pub fn new(steps: u32) -> Self {
        LossLog {
            first: None,
            last: 0.0,
            steps,
        }
    }

    pub fn record(&mut self, step: u32, loss: f32) {
        self.first.get_or_insert(loss);
        self.last = loss;
        if step.is_multiple_of(30) || step + 1 == self.steps {
            println!("step {step:3}: loss {loss:.4}");
        }
    }

    pub fn check(&self) -> Result<(), Box<dyn std::error::Error>> {
        let (first, last) = (self.first.unwrap_or(self.last), self.last);
        println!("loss {first:.4} -> {last:.4}");
        if last > first / 3.0 {
            return Err(format!("the loss did not fall enough: {first:.4} -> {last:.4}").into());
        }
        Ok(())
    }
}
