//! [`Lstm`]: forward and backward of a stack of N LSTM layers on the
//! caller's tensors, on the CPU.
//!
//! T = steps, B = batch rows, In = input width (the number of classes for a
//! one-hot input), H = units, N = layers, g = 4H. Every sequence is
//! time-major and row-major: element (t, b, j) of a [T, B, W] tensor is at
//! `(t * B + b) * W + j`; a state [N, B, H] is layer-major.
//!
//! Per layer l (input width In_l = In for l = 0, else H):
//!
//! ```text
//! Z_x = X_l @ kernel_l + bias_l           [T*B, In_l] @ [In_l, 4H]: one GEMM for all
//!                                         steps (a row gather for a one-hot input)
//! z_t = Z_x[t] + h_{t-1} @ recurrent_kernel_l    per step, gates i, f, c(g), o
//! i, f, o = sigmoid;  g = tanh;  c_t = f*c_{t-1} + i*g;  h_t = o*tanh(c_t)
//! X_{l+1} = dropout(h_1 .. h_T)           (layers below the top only)
//! ```
//!
//! Backward, top layer first: the recurrence ([`crate::cpu::layer`]) takes
//! dY (or the gradient of the layer above's input) at every step plus the
//! final state's gradient, and leaves dz [T*B, 4H] and the initial state's
//! gradient; then, as GEMMs over all T*B rows in one fixed order (so the
//! result does not depend on the thread count):
//!
//! ```text
//! d recurrent_kernel = [h_0 .. h_{T-1}]^T @ dz     [H, T*B] @ [T*B, 4H]
//! d kernel           = X_l^T @ dz                  (a scatter-add of dz rows by class, one-hot)
//! d bias             = sum of the dz rows
//! dX_l               = dz @ kernel_l^T             [T*B, 4H] @ [4H, In_l]  (not for one-hot)
//! ```
//!
//! Every gradient is returned freshly computed, never accumulated into the
//! caller's buffers.

use super::dropout::{self, Mode};
use crate::cpu::Scalar;
use crate::cpu::backward::{ClassLayout, scatter_rows, split_classes, sum_rows};
use crate::cpu::layer::{self, InputTerm, Shape};
use crate::cpu::scalar::{View, gemm_rows};
use crate::cpu::workspace::threads_for;
use crate::error::{Error, Result};

/// A stack of LSTM layers: sizes, dropout and threads, no weights (the
/// caller owns those and hands them to every call, as to a cuDNN op).
#[derive(Clone, Debug, PartialEq)]
pub struct Lstm {
    layers: usize,
    input: usize,
    hidden: usize,
    dropout: f64,
    threads: usize,
}

/// The input sequence of layer 0, with its declared T and B.
#[derive(Clone, Copy, Debug)]
pub struct LstmInput<'a, F> {
    data: InputData<'a, F>,
    seq_len: usize,
    batch: usize,
}

#[derive(Clone, Copy, Debug)]
enum InputData<'a, F> {
    Dense(&'a [F]),
    Classes(&'a [u32]),
}

impl<'a, F> LstmInput<'a, F> {
    /// A dense input `[T, B, In]`, time-major: `x[(t * B + b) * In + j]`.
    pub fn dense(x: &'a [F], seq_len: usize, batch: usize) -> Self {
        LstmInput {
            data: InputData::Dense(x),
            seq_len,
            batch,
        }
    }

    /// Class indices `[T, B]` (`x[t * B + b]`, each below In) standing for
    /// one-hot rows: layer 0 gathers row `x` of its kernel instead of
    /// multiplying by a one-hot matrix. [`LstmGrads::dx`] is `None` then.
    pub fn classes(x: &'a [u32], seq_len: usize, batch: usize) -> Self {
        LstmInput {
            data: InputData::Classes(x),
            seq_len,
            batch,
        }
    }
}

/// One layer's weights, borrowed, in Keras' layout (gate order i, f, c, o
/// along the 4H axis):
///
/// | tensor             | shape      | PyTorch `nn.LSTM`                      |
/// |--------------------|------------|----------------------------------------|
/// | `kernel`           | [In_l, 4H] | `weight_ih_l{l}` transposed            |
/// | `recurrent_kernel` | [H, 4H]    | `weight_hh_l{l}` transposed            |
/// | `bias`             | [4H]       | `bias_ih_l{l} + bias_hh_l{l}`          |
///
/// PyTorch's gate order i, f, g, o is the same as Keras' i, f, c, o.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a, F> {
    /// `[In_l, 4H]`, row-major.
    pub kernel: &'a [F],
    /// `[H, 4H]`, row-major.
    pub recurrent_kernel: &'a [F],
    /// `[4H]`.
    pub bias: &'a [F],
}

/// One layer's tensors, owned: the weights a caller keeps, and the
/// gradients [`Lstm::backward`] returns ([`LayerGrads`]). Layout as in
/// [`LayerWeights`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerParams<F> {
    /// `[In_l, 4H]`.
    pub kernel: Vec<F>,
    /// `[H, 4H]`.
    pub recurrent_kernel: Vec<F>,
    /// `[4H]`.
    pub bias: Vec<F>,
}

/// The gradient of one layer's weights, laid out as the weights.
pub type LayerGrads<F> = LayerParams<F>;

impl<F: Scalar> LayerParams<F> {
    /// Zeros of the shapes of a layer reading `input` values per step with `hidden` units.
    pub fn zeros(input: usize, hidden: usize) -> Self {
        LayerParams {
            kernel: vec![F::zero(); input * 4 * hidden],
            recurrent_kernel: vec![F::zero(); hidden * 4 * hidden],
            bias: vec![F::zero(); 4 * hidden],
        }
    }

    /// The borrowed view [`Lstm::forward`] and [`Lstm::backward`] take.
    pub fn weights(&self) -> LayerWeights<'_, F> {
        LayerWeights {
            kernel: &self.kernel,
            recurrent_kernel: &self.recurrent_kernel,
            bias: &self.bias,
        }
    }
}

/// What [`Lstm::forward`] returns: the outputs, and everything the backward
/// needs (every layer's gates, states and dropout masks, and a copy of the
/// input), which [`Lstm::backward`] consumes.
#[derive(Debug)]
pub struct LstmOutput<F> {
    op: Lstm,
    seq_len: usize,
    batch: usize,
    input: OwnedInput<F>,
    layers: Vec<LayerTape<F>>,
    h_n: Vec<F>,
    c_n: Vec<F>,
}

#[derive(Debug)]
enum OwnedInput<F> {
    Dense(Vec<F>),
    Classes(Vec<u32>),
}

/// One layer's saved forward state; buffers as in [`crate::cpu::layer`].
#[derive(Debug)]
struct LayerTape<F> {
    gates: Vec<F>,
    c: Vec<F>,
    tc: Vec<F>,
    h: Vec<F>,
    /// The keep-mask of this layer's output and the dropped sequence the
    /// layer above read, when dropout was on below the top.
    dropped: Option<(Vec<bool>, Vec<F>)>,
}

impl<F> LstmOutput<F> {
    /// Hidden states of the top layer at every step, `[T, B, H]`.
    pub fn y(&self) -> &[F] {
        let top = self.layers.last().expect("an Lstm has at least one layer");
        &top.h[self.batch * self.op.hidden..]
    }

    /// The final hidden state of every layer, `[N, B, H]`.
    pub fn h_n(&self) -> &[F] {
        &self.h_n
    }

    /// The final cell state of every layer, `[N, B, H]`.
    pub fn c_n(&self) -> &[F] {
        &self.c_n
    }

    /// T and B of the call.
    pub fn seq_len_batch(&self) -> (usize, usize) {
        (self.seq_len, self.batch)
    }
}

/// What [`Lstm::backward`] returns.
#[derive(Clone, Debug)]
pub struct LstmGrads<F> {
    /// d input `[T, B, In]` for a dense input; `None` for class indices
    /// (they have no gradient).
    pub dx: Option<Vec<F>>,
    /// d h_0 `[N, B, H]` (zero rows where no initial state was given still
    /// say what one would receive).
    pub dh0: Vec<F>,
    /// d c_0 `[N, B, H]`.
    pub dc0: Vec<F>,
    /// Every layer's weight gradients, layer 0 first.
    pub layers: Vec<LayerGrads<F>>,
}

/// A slice whose length does not match its declared shape.
fn shape_error(name: impl Into<String>, shape: String, got: usize, want: usize) -> Error {
    Error::Shape {
        name: name.into(),
        shape,
        got,
        want,
    }
}

fn check_len(name: &str, got: usize, shape: impl FnOnce() -> String, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(shape_error(name, shape(), got, want))
    }
}

impl Lstm {
    /// A stack of `layers` layers reading `input` values per step (the
    /// number of classes for a one-hot input) with `hidden` units each; no
    /// dropout, threads = available cores.
    pub fn new(layers: usize, input: usize, hidden: usize) -> Result<Self> {
        for (name, value, what) in [
            ("lstm.layers", layers, "layers"),
            ("lstm.input", input, "input values per step"),
            ("lstm.hidden", hidden, "hidden units"),
        ] {
            if value == 0 {
                return Err(Error::InvalidArgument {
                    name,
                    what: format!("0 {what}; an LSTM stack needs at least 1"),
                });
            }
        }
        Ok(Lstm {
            layers,
            input,
            hidden,
            dropout: 0.0,
            threads: 0,
        })
    }

    /// Dropout probability `p` in [0, 1) on the output of every layer but
    /// the top one, in [`Mode::Train`] only ([`crate::ops::dropout`]).
    pub fn with_dropout(mut self, p: f64) -> Result<Self> {
        dropout::check_p(p)?;
        self.dropout = p;
        Ok(self)
    }

    /// Uses at most `threads` threads (0 = one per available core, as long
    /// as each gets 16 batch rows). Results do not depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// N.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// In, layer 0's input width.
    pub fn input(&self) -> usize {
        self.input
    }

    /// H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The dropout probability between layers.
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Input width of layer `l`: In for layer 0, H above it.
    pub fn layer_input(&self, l: usize) -> usize {
        if l == 0 { self.input } else { self.hidden }
    }

    /// Checks every layer's weights against the stack's sizes.
    fn check_weights<F>(&self, weights: &[LayerWeights<'_, F>]) -> Result<()> {
        if weights.len() != self.layers {
            return Err(Error::InvalidArgument {
                name: "weights",
                what: format!(
                    "{} layers' weights for an Lstm of {} layers; pass one LayerWeights per \
                     layer, layer 0 first",
                    weights.len(),
                    self.layers
                ),
            });
        }
        let (h, g) = (self.hidden, 4 * self.hidden);
        for (l, w) in weights.iter().enumerate() {
            let (i, dim) = (self.layer_input(l), if l == 0 { "In" } else { "H" });
            let name = |t: &str| format!("weights[{l}].{t}");
            check_len(
                &name("kernel"),
                w.kernel.len(),
                || format!("[{dim}, 4H] = [{i}, {g}]"),
                i * g,
            )?;
            check_len(
                &name("recurrent_kernel"),
                w.recurrent_kernel.len(),
                || format!("[H, 4H] = [{h}, {g}]"),
                h * g,
            )?;
            check_len(&name("bias"), w.bias.len(), || format!("[4H] = [{g}]"), g)?;
        }
        Ok(())
    }

    /// Checks an optional state `[N, B, H]`.
    fn check_state<F>(&self, name: &str, s: Option<&[F]>, batch: usize) -> Result<()> {
        let (n, h) = (self.layers, self.hidden);
        match s {
            None => Ok(()),
            Some(s) => check_len(
                name,
                s.len(),
                || format!("[N, B, H] = [{n}, {batch}, {h}]"),
                n * batch * h,
            ),
        }
    }

    /// Forward over the whole sequence. `h0`, `c0`: the initial states
    /// `[N, B, H]` (zero when `None`). In [`Mode::Train`] with dropout > 0,
    /// the masks of that mode's key are drawn and kept for the backward.
    pub fn forward<F: Scalar>(
        &self,
        weights: &[LayerWeights<'_, F>],
        x: LstmInput<'_, F>,
        h0: Option<&[F]>,
        c0: Option<&[F]>,
        mode: Mode,
    ) -> Result<LstmOutput<F>> {
        let (t, b, h, g) = (x.seq_len, x.batch, self.hidden, 4 * self.hidden);
        if t == 0 || b == 0 {
            return Err(Error::InvalidArgument {
                name: "x",
                what: format!(
                    "a sequence of T = {t} steps of B = {b} rows; both must be at least 1"
                ),
            });
        }
        self.check_weights(weights)?;
        let input = match x.data {
            InputData::Dense(d) => {
                let i = self.input;
                check_len(
                    "x",
                    d.len(),
                    || format!("[T, B, In] = [{t}, {b}, {i}]"),
                    t * b * i,
                )?;
                OwnedInput::Dense(d.to_vec())
            }
            InputData::Classes(c) => {
                check_len("x", c.len(), || format!("[T, B] = [{t}, {b}]"), t * b)?;
                if let Some(k) = c.iter().position(|&v| v as usize >= self.input) {
                    return Err(Error::InvalidArgument {
                        name: "x",
                        what: format!(
                            "class {} at t = {}, b = {} is not below In = {}, the number of \
                             classes the Lstm was made for; pass indices in 0..{} or make the \
                             Lstm with a larger input",
                            c[k],
                            k / b,
                            k % b,
                            self.input,
                            self.input
                        ),
                    });
                }
                OwnedInput::Classes(c.to_vec())
            }
        };
        self.check_state("h0", h0, b)?;
        self.check_state("c0", c0, b)?;
        let masks = match mode {
            Mode::Train { seed, step } if self.dropout > 0.0 => Some((seed, step)),
            _ => None,
        };
        let threads = threads_for(self.threads, b);
        let scale = F::one() / (F::one() - F::of(self.dropout));
        let shape = Shape { t, b, h };
        let state = b * h;
        let mut layers: Vec<LayerTape<F>> = Vec::with_capacity(self.layers);
        for (l, w) in weights.iter().enumerate() {
            let mut tape = LayerTape {
                gates: vec![F::zero(); t * b * g],
                c: vec![F::zero(); (t + 1) * state],
                tc: vec![F::zero(); t * state],
                h: vec![F::zero(); (t + 1) * state],
                dropped: None,
            };
            if let Some(h0) = h0 {
                tape.h[..state].copy_from_slice(&h0[l * state..][..state]);
            }
            if let Some(c0) = c0 {
                tape.c[..state].copy_from_slice(&c0[l * state..][..state]);
            }
            let below = match l {
                0 => match &input {
                    OwnedInput::Dense(d) => Some(&d[..]),
                    OwnedInput::Classes(_) => None,
                },
                _ => Some(layer_output(&layers[l - 1], state)),
            };
            let term: Vec<F>;
            let input_term = match (below, &input) {
                (Some(xl), _) => {
                    term = input_gemm(xl, w, (t * b, self.layer_input(l), g), threads);
                    InputTerm::Dense(&term)
                }
                (None, OwnedInput::Classes(classes)) => {
                    term = gather_table(w, g);
                    InputTerm::Gather { xb: &term, classes }
                }
                (None, OwnedInput::Dense(_)) => unreachable!("a dense input is always Some"),
            };
            layer::forward(
                w.recurrent_kernel,
                input_term,
                &mut tape.gates,
                &mut tape.c,
                &mut tape.tc,
                &mut tape.h,
                shape,
                threads,
            );
            if let Some(key) = masks
                && l + 1 < self.layers
            {
                let keep = dropout::mask(self.dropout, key, l as u32, (t, b, h))?;
                let out = &tape.h[state..];
                let dropped = out.iter().zip(&keep);
                let dropped = dropped.map(|(&v, &k)| if k { v * scale } else { F::zero() });
                let dropped = dropped.collect();
                tape.dropped = Some((keep, dropped));
            }
            layers.push(tape);
        }
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for tape in &layers {
            h_n.extend_from_slice(&tape.h[t * state..]);
            c_n.extend_from_slice(&tape.c[t * state..]);
        }
        Ok(LstmOutput {
            op: self.clone(),
            seq_len: t,
            batch: b,
            input,
            layers,
            h_n,
            c_n,
        })
    }

    /// Backward of the call that returned `out`, with the same `weights`.
    ///
    /// `dy`: the gradient of the loss at the top layer's output `[T, B, H]`
    /// (zeros where a step has none); `dh_n`, `dc_n`: at the final states
    /// `[N, B, H]` (zero when `None`). Returns dX (dense input only), dh_0,
    /// dc_0 and every layer's weight gradients.
    pub fn backward<F: Scalar>(
        &self,
        weights: &[LayerWeights<'_, F>],
        out: LstmOutput<F>,
        dy: &[F],
        dh_n: Option<&[F]>,
        dc_n: Option<&[F]>,
    ) -> Result<LstmGrads<F>> {
        if out.op.layers != self.layers
            || out.op.input != self.input
            || out.op.hidden != self.hidden
        {
            return Err(Error::InvalidArgument {
                name: "out",
                what: format!(
                    "the output of an Lstm of N = {}, In = {}, H = {}, given to one of N = {}, \
                     In = {}, H = {}; pass the output of this Lstm's forward",
                    out.op.layers,
                    out.op.input,
                    out.op.hidden,
                    self.layers,
                    self.input,
                    self.hidden
                ),
            });
        }
        self.check_weights(weights)?;
        let (t, b, h, g) = (out.seq_len, out.batch, self.hidden, 4 * self.hidden);
        check_len(
            "dy",
            dy.len(),
            || format!("[T, B, H] = [{t}, {b}, {h}]"),
            t * b * h,
        )?;
        self.check_state("dh_n", dh_n, b)?;
        self.check_state("dc_n", dc_n, b)?;
        let threads = threads_for(self.threads, b);
        let scale = F::one() / (F::one() - F::of(self.dropout));
        let (shape, state) = (Shape { t, b, h }, b * h);
        let zeros = || vec![F::zero(); self.layers * state];
        let mut dh0 = dh_n.map_or_else(zeros, <[F]>::to_vec);
        let mut dc0 = dc_n.map_or_else(zeros, <[F]>::to_vec);
        let LstmOutput {
            input, mut layers, ..
        } = out;
        let mut grads = Vec::with_capacity(self.layers);
        let mut dx = None;
        let mut from_above: Vec<F> = Vec::new();
        for l in (0..self.layers).rev() {
            let w = &weights[l];
            let d_up = if l + 1 == self.layers {
                dy
            } else {
                &from_above[..]
            };
            let (below, above) = layers.split_at_mut(l);
            let tape = &mut above[0];
            layer::backward(
                w.recurrent_kernel,
                &mut tape.gates,
                &tape.c,
                &tape.tc,
                d_up,
                &mut dh0[l * state..][..state],
                &mut dc0[l * state..][..state],
                shape,
                threads,
            );
            let dz = &tape.gates;
            let k = t * b;
            let i = self.layer_input(l);
            let mut lg = LayerGrads::zeros(i, h);
            gemm_rows(
                threads,
                (h, k, g),
                View::new(&tape.h, 1, h),
                View::new(dz, g, 1),
                F::zero(),
                &mut lg.recurrent_kernel,
            );
            let x_l = match (l, &input) {
                (0, OwnedInput::Dense(d)) => Some(&d[..]),
                (0, OwnedInput::Classes(_)) => None,
                _ => Some(layer_output(&below[l - 1], state)),
            };
            match (x_l, &input) {
                (Some(x_l), _) => {
                    gemm_rows(
                        threads,
                        (i, k, g),
                        View::new(x_l, 1, i),
                        View::new(dz, g, 1),
                        F::zero(),
                        &mut lg.kernel,
                    );
                    sum_rows(&mut lg.bias, dz);
                    let mut d_in = vec![F::zero(); k * i];
                    gemm_rows(
                        threads,
                        (k, g, i),
                        View::new(dz, g, 1),
                        View::new(w.kernel, 1, g),
                        F::zero(),
                        &mut d_in,
                    );
                    if l == 0 {
                        dx = Some(d_in);
                    } else {
                        if let Some((keep, _)) = &below[l - 1].dropped {
                            for (d, &kept) in d_in.iter_mut().zip(keep) {
                                *d = if kept { *d * scale } else { F::zero() };
                            }
                        }
                        from_above = d_in;
                    }
                }
                (None, OwnedInput::Classes(classes)) => {
                    scatter_by_class(&mut lg.kernel, classes, b, dz, (i, g), threads);
                    // Every dz row went to exactly one row of d kernel.
                    sum_rows(&mut lg.bias, &lg.kernel);
                }
                (None, OwnedInput::Dense(_)) => unreachable!("a dense input is always Some"),
            }
            grads.push(lg);
        }
        grads.reverse();
        Ok(LstmGrads {
            dx,
            dh0,
            dc0,
            layers: grads,
        })
    }
}

/// The sequence a layer hands up, [T, B, H]: its hidden states, or their
/// dropped copy.
fn layer_output<F>(tape: &LayerTape<F>, state: usize) -> &[F] {
    match &tape.dropped {
        Some((_, dropped)) => dropped,
        None => &tape.h[state..],
    }
}

/// `X @ kernel + bias` for all `rows` = T*B rows at once, [T*B, 4H].
fn input_gemm<F: Scalar>(
    x: &[F],
    w: &LayerWeights<'_, F>,
    (rows, i, g): (usize, usize, usize),
    threads: usize,
) -> Vec<F> {
    let mut z: Vec<F> = w.bias.iter().copied().cycle().take(rows * g).collect();
    gemm_rows(
        threads,
        (rows, i, g),
        View::new(x, i, 1),
        View::new(w.kernel, g, 1),
        F::one(),
        &mut z,
    );
    z
}

/// `kernel + bias`, one row per class: what a one-hot row times the kernel is.
fn gather_table<F: Scalar>(w: &LayerWeights<'_, F>, g: usize) -> Vec<F> {
    w.kernel
        .chunks_exact(g)
        .flat_map(|row| row.iter().zip(w.bias).map(|(&k, &b)| k + b))
        .collect()
}

/// `dk[c] = sum of the dz rows whose class is c`, classes [T, B]; threads
/// own class ranges holding about equal shares of the rows.
fn scatter_by_class<F: Scalar>(
    dk: &mut [F],
    classes: &[u32],
    batch: usize,
    dz: &[F],
    (v, g): (usize, usize),
    threads: usize,
) {
    let at = ClassLayout {
        batch,
        b_stride: 1,
        t_stride: batch,
    };
    std::thread::scope(|scope| {
        let mut rest = dk;
        for (ti, (v0, v1)) in split_classes(classes, v, threads).enumerate() {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut((v1 - v0) * g);
            rest = tail;
            let mut job = move || scatter_rows(mine, v0..v1, classes, at, dz, g);
            if ti + 1 == threads {
                job()
            } else {
                scope.spawn(job);
            }
        }
    });
}
