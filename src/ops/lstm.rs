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
//! gradient; the weight gradients are sums over all T*B rows in one fixed
//! order (so the result does not depend on the thread count), computed a
//! few steps behind the recurrence from dz in cache where the packed kernel runs
//! ([`crate::cpu::step_grads`]), else as GEMMs after it:
//!
//! ```text
//! d recurrent_kernel = [h_0 .. h_{T-1}]^T @ dz     [H, T*B] @ [T*B, 4H]
//! d kernel           = X_l^T @ dz                  (a scatter-add of dz rows by class, one-hot)
//! d bias             = sum of the dz rows
//! dX_l               = dz @ kernel_l^T             [T*B, 4H] @ [4H, In_l]  (not for one-hot)
//! ```
//!
//! Every gradient is overwritten, never accumulated into. `forward_into` /
//! `backward_into` reuse the buffers of an earlier call (at T = 60, B = 128,
//! H = 256 one layer's gates alone are 31 MB, and fresh pages cost a
//! quarter of the time); `forward` / `backward` allocate them.

use super::check;
use super::dropout::{self, Mode};
use crate::cpu::Scalar;
use crate::cpu::backward::{
    ClassLayout, recurrent_kernel_grad, scatter_rows, split_classes, sum_rows, sum_rows_split,
};
use crate::cpu::layer::{self, InputTerm, Shape};
use crate::cpu::packed::{PackedB, gemm_cols};
use crate::cpu::scalar::View;
use crate::cpu::step_grads::{GradInput, GradTargets};
use crate::cpu::workspace::{run_or_spawn, threads_for};
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
/// | tensor             | shape        | PyTorch `nn.LSTM`               |
/// |--------------------|--------------|---------------------------------|
/// | `kernel`           | `[In_l, 4H]` | `weight_ih_l{l}` transposed     |
/// | `recurrent_kernel` | `[H, 4H]`    | `weight_hh_l{l}` transposed     |
/// | `bias`             | `[4H]`       | `bias_ih_l{l} + bias_hh_l{l}`   |
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
#[derive(Clone, Debug, Default, PartialEq)]
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
/// input). [`Lstm::forward_into`] refills one, reusing its buffers.
///
/// After [`Lstm::backward_into`] the outputs still read the forward's
/// values, but the gates hold their gradients: another backward needs
/// another forward.
#[derive(Debug)]
pub struct LstmOutput<F> {
    /// N, In, H of the Lstm that filled it; T, B of the call.
    sizes: [usize; 5],
    input: OwnedInput<F>,
    layers: Vec<LayerTape<F>>,
    h_n: Vec<F>,
    c_n: Vec<F>,
    /// A dense layer's kernel packed for the forward's steps.
    scratch: Vec<F>,
    /// A one-hot layer 0's `kernel + bias` rows (or a generation step's).
    table: Vec<F>,
    /// The backward's gradient passed down, [T*B, H], and the one the
    /// layer above passed (they swap from layer to layer).
    down: Vec<F>,
    up: Vec<F>,
    /// A recurrent_kernel packed for the recurrence's steps (`cpu::packed`).
    pack: Vec<F>,
    /// The weight gradients' panels and strips (`cpu::step_grads`).
    step_scratch: Vec<F>,
    /// Set by a backward: the gates are gradients now.
    spent: bool,
    /// The forward ran from h_0 = 0 (`h0` not given): step 0's products
    /// with h_0 are zero and skipped, forward and in d recurrent_kernel.
    h0_zero: bool,
}

impl<F> Default for LstmOutput<F> {
    fn default() -> Self {
        LstmOutput {
            sizes: [0; 5],
            input: OwnedInput::Classes(Vec::new()),
            layers: Vec::new(),
            h_n: Vec::new(),
            c_n: Vec::new(),
            scratch: Vec::new(),
            table: Vec::new(),
            down: Vec::new(),
            up: Vec::new(),
            pack: Vec::new(),
            step_scratch: Vec::new(),
            spent: true,
            h0_zero: false,
        }
    }
}

#[derive(Debug)]
enum OwnedInput<F> {
    Dense(Vec<F>),
    Classes(Vec<u32>),
}

/// One layer's saved forward state; buffers as in [`crate::cpu::layer`].
#[derive(Debug, Default)]
struct LayerTape<F> {
    gates: Vec<F>,
    c: Vec<F>,
    tc: Vec<F>,
    h: Vec<F>,
    /// The keep-mask of this layer's output and the dropped sequence the
    /// layer above read; both empty when no dropout followed this layer.
    keep: Vec<bool>,
    dropped: Vec<F>,
}

impl<F> LstmOutput<F> {
    /// An empty output for [`Lstm::forward_into`] to fill.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hidden states of the top layer at every step, `[T, B, H]`.
    pub fn y(&self) -> &[F] {
        let [_, _, h, _, b] = self.sizes;
        self.layers.last().map_or(&[], |top| &top.h[b * h..])
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
        (self.sizes[3], self.sizes[4])
    }
}

/// What [`Lstm::backward`] returns; [`Lstm::backward_into`] overwrites one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LstmGrads<F> {
    /// d input `[T, B, In]` for a dense input; `None` for class indices
    /// (they have no gradient).
    pub dx: Option<Vec<F>>,
    /// d h_0 `[N, B, H]`, computed whether or not `h0` was given.
    pub dh0: Vec<F>,
    /// d c_0 `[N, B, H]`.
    pub dc0: Vec<F>,
    /// Every layer's weight gradients, layer 0 first.
    pub layers: Vec<LayerGrads<F>>,
}

/// `v` resized to `n` without keeping its values' meaning: the caller
/// overwrites every element (growing allocates once, later calls reuse).
fn sized<F: Scalar>(v: &mut Vec<F>, n: usize) -> &mut Vec<F> {
    crate::cpu::pages::resize(v, n, F::zero());
    v
}

impl Lstm {
    /// A stack of `layers` layers reading `input` values per step (the
    /// number of classes for a one-hot input) with `hidden` units each; no
    /// dropout, threads = available cores.
    pub fn new(layers: usize, input: usize, hidden: usize) -> Result<Self> {
        check::positive("lstm.layers", layers, "layers")?;
        check::positive("lstm.input", input, "input values per step")?;
        check::positive("lstm.hidden", hidden, "hidden units")?;
        check::sizes(layers, input, hidden)?;
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
    /// as each gets 16 batch rows). Results do not depend on it. On the
    /// f32 fast path the backward's threads wait for each other every few
    /// steps (they share the weight gradients' work a few steps at a time),
    /// so where they would share cores with other busy work, fewer threads
    /// can be faster.
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
        let mut out = LstmOutput::new();
        self.forward_into(weights, x, h0, c0, mode, &mut out)?;
        Ok(out)
    }

    /// [`forward`](Self::forward) into `out`, reusing its buffers (an
    /// output of any earlier call, or [`LstmOutput::new`]).
    pub fn forward_into<F: Scalar>(
        &self,
        weights: &[LayerWeights<'_, F>],
        x: LstmInput<'_, F>,
        h0: Option<&[F]>,
        c0: Option<&[F]>,
        mode: Mode,
        out: &mut LstmOutput<F>,
    ) -> Result<()> {
        self.forward_packed(weights, None, x, (h0, c0), mode, out)
    }

    /// [`forward_into`](Self::forward_into) with every layer's
    /// recurrent_kernel already packed (`packed[l]` of `weights[l]`) by a
    /// caller that runs many calls on unchanged weights; `None`: packed
    /// here, once per call.
    pub(crate) fn forward_packed<F: Scalar>(
        &self,
        weights: &[LayerWeights<'_, F>],
        packed: Option<&[PackedB<'_, F>]>,
        x: LstmInput<'_, F>,
        (h0, c0): (Option<&[F]>, Option<&[F]>),
        mode: Mode,
        out: &mut LstmOutput<F>,
    ) -> Result<()> {
        let (t, b, h, g) = (x.seq_len, x.batch, self.hidden, 4 * self.hidden);
        check::positive("x", t, "steps (T)")?;
        check::positive("x", b, "batch rows (B)")?;
        check::fits(self, (t, b))?;
        check::weights(self, weights)?;
        match x.data {
            InputData::Dense(d) => {
                let i = self.input;
                let shape = || format!("[T, B, In] = [{t}, {b}, {i}]");
                check::len("x", d.len(), shape, t * b * i)?;
            }
            InputData::Classes(c) => check::classes(self, c, (t, b))?,
        }
        check::state(self, "h0", h0, b)?;
        check::state(self, "c0", c0, b)?;
        // Every check passed: from here on `out` is overwritten, and holds
        // no forward until the end.
        out.sizes = [self.layers, self.input, h, t, b];
        out.spent = true;
        out.h0_zero = h0.is_none();
        match (x.data, &mut out.input) {
            (InputData::Dense(d), OwnedInput::Dense(v)) => copy_into(v, d),
            (InputData::Classes(c), OwnedInput::Classes(v)) => copy_into(v, c),
            (InputData::Dense(d), slot) => *slot = OwnedInput::Dense(d.to_vec()),
            (InputData::Classes(c), slot) => *slot = OwnedInput::Classes(c.to_vec()),
        }
        let masks = match mode {
            Mode::Train { seed, step } if self.dropout > 0.0 => Some((seed, step)),
            _ => None,
        };
        let threads = threads_for(self.threads, b);
        let scale = F::one() / (F::one() - F::of(self.dropout));
        let (shape, state) = (Shape { t, b, h }, b * h);
        out.layers.resize_with(self.layers, LayerTape::default);
        // The class table, the dense kernel's panels and the recurrent
        // kernel's each have a buffer of their own, kept from call to call.
        let (input, tapes, scratch, table, pack) = (
            &out.input,
            &mut out.layers,
            &mut out.scratch,
            &mut out.table,
            &mut out.pack,
        );
        for (l, w) in weights.iter().enumerate() {
            let (below, rest) = tapes.split_at_mut(l);
            let tape = &mut rest[0];
            sized(&mut tape.gates, t * b * g);
            sized(&mut tape.c, (t + 1) * state);
            sized(&mut tape.tc, t * state);
            sized(&mut tape.h, (t + 1) * state);
            for (slot, given) in [(&mut tape.h, h0), (&mut tape.c, c0)] {
                match given {
                    Some(s) => slot[..state].copy_from_slice(&s[l * state..][..state]),
                    None => slot[..state].fill(F::zero()),
                }
            }
            let x_l = match (l, input) {
                (0, OwnedInput::Dense(d)) => Some(&d[..]),
                (0, OwnedInput::Classes(_)) => None,
                _ => Some(layer_output(&below[l - 1], state)),
            };
            let input_term = match (x_l, input) {
                (Some(x_l), _) => {
                    let width = self.layer_input(l);
                    InputTerm::Step {
                        x: x_l,
                        width,
                        kernel: PackedB::new(View::new(w.kernel, g, 1), (width, g), scratch),
                        bias: w.bias,
                    }
                }
                (None, OwnedInput::Classes(classes)) if classes.len() < self.input => {
                    // Fewer rows than classes (a generation step): each
                    // row's `kernel + bias` directly, not the whole table.
                    table.clear();
                    for &c in classes {
                        table.extend(class_row(w, g, c as usize));
                    }
                    InputTerm::Dense(&table[..])
                }
                (None, OwnedInput::Classes(classes)) => {
                    gather_table(w, g, table);
                    InputTerm::Gather {
                        xb: &table[..],
                        classes,
                    }
                }
                (None, OwnedInput::Dense(_)) => unreachable!("layer 0 reads a dense input"),
            };
            let own;
            let rk = match packed {
                Some(p) => &p[l],
                None => {
                    own = PackedB::recurrent(w.recurrent_kernel, h, pack);
                    &own
                }
            };
            layer::forward(
                rk,
                input_term,
                &mut tape.gates,
                &mut tape.c,
                &mut tape.tc,
                &mut tape.h,
                (shape, h0.is_none()),
                threads,
            );
            tape.keep.clear();
            tape.dropped.clear();
            if let Some(key) = masks
                && l + 1 < self.layers
            {
                tape.keep = dropout::mask(self.dropout, key, l as u32, (t, b, h))?;
                let kept = tape.h[state..].iter().zip(&tape.keep);
                let dropped = kept.map(|(&v, &k)| if k { v * scale } else { F::zero() });
                tape.dropped.extend(dropped);
            }
        }
        out.h_n.clear();
        out.c_n.clear();
        for tape in &out.layers {
            out.h_n.extend_from_slice(&tape.h[t * state..]);
            out.c_n.extend_from_slice(&tape.c[t * state..]);
        }
        out.spent = false;
        Ok(())
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
        mut out: LstmOutput<F>,
        dy: &[F],
        dh_n: Option<&[F]>,
        dc_n: Option<&[F]>,
    ) -> Result<LstmGrads<F>> {
        let mut grads = LstmGrads::default();
        self.backward_into(weights, &mut out, dy, dh_n, dc_n, &mut grads)?;
        Ok(grads)
    }

    /// [`backward`](Self::backward) into `grads` (overwritten; its buffers
    /// reused), leaving `out`'s buffers for the next
    /// [`forward_into`](Self::forward_into).
    pub fn backward_into<F: Scalar>(
        &self,
        weights: &[LayerWeights<'_, F>],
        out: &mut LstmOutput<F>,
        dy: &[F],
        dh_n: Option<&[F]>,
        dc_n: Option<&[F]>,
        grads: &mut LstmGrads<F>,
    ) -> Result<()> {
        let [n, i0, h, t, b] = out.sizes;
        if out.spent {
            return Err(Error::InvalidArgument {
                name: "out",
                what: "holds no forward to differentiate (empty, or its backward already ran: \
                       the gates are gradients now); run forward again first"
                    .into(),
            });
        }
        if (n, i0, h) != (self.layers, self.input, self.hidden) {
            return Err(Error::InvalidArgument {
                name: "out",
                what: format!(
                    "the output of an Lstm of N = {n}, In = {i0}, H = {h}, given to one of N = \
                     {}, In = {}, H = {}; pass the output of this Lstm's forward",
                    self.layers, self.input, self.hidden
                ),
            });
        }
        check::weights(self, weights)?;
        check::len(
            "dy",
            dy.len(),
            || format!("[T, B, H] = [{t}, {b}, {h}]"),
            t * b * h,
        )?;
        check::state(self, "dh_n", dh_n, b)?;
        check::state(self, "dc_n", dc_n, b)?;
        out.spent = true;
        let (g, k) = (4 * h, t * b);
        let threads = threads_for(self.threads, b);
        let scale = F::one() / (F::one() - F::of(self.dropout));
        let (shape, state) = (Shape { t, b, h }, b * h);
        for (buf, given) in [(&mut grads.dh0, dh_n), (&mut grads.dc0, dc_n)] {
            match given {
                Some(s) => copy_into(buf, s),
                None => sized(buf, n * state).fill(F::zero()),
            }
        }
        grads.layers.resize_with(n, LayerParams::default);
        let dense = matches!(out.input, OwnedInput::Dense(_));
        if !dense {
            grads.dx = None;
        }
        let h0_zero = out.h0_zero;
        let (input, tapes, pack, scratch) =
            (&out.input, &mut out.layers, &mut out.pack, &mut out.scratch);
        let step_scratch = &mut out.step_scratch;
        let (down, up) = (&mut out.down, &mut out.up);
        for l in (0..n).rev() {
            let w = &weights[l];
            let (below, rest) = tapes.split_at_mut(l);
            let tape = &mut rest[0];
            // What the layer above passed down is this layer's `up`.
            std::mem::swap(down, up);
            let d_up = if l + 1 == n { dy } else { &up[..] };
            let i = self.layer_input(l);
            // dX_l = dz @ kernel^T, step by step in the recurrence: the
            // input gradient, or the one passed down.
            let dx = match (l, dense) {
                (0, false) => None,
                (0, true) => Some(grads.dx.get_or_insert_with(Vec::new)),
                _ => Some(&mut *down),
            }
            .map(|d_in| {
                let kernel_t = PackedB::new(View::new(w.kernel, 1, g), (g, i), scratch);
                (kernel_t, &mut sized(d_in, k * i)[..])
            });
            let lg = &mut grads.layers[l];
            let targets = GradTargets {
                h: &tape.h,
                h0_zero,
                input: match (l, input) {
                    (0, OwnedInput::Dense(d)) => GradInput::Dense { x: d, width: i },
                    (0, OwnedInput::Classes(classes)) => GradInput::Classes(classes),
                    _ => GradInput::Dense {
                        x: layer_output(&below[l - 1], state),
                        width: i,
                    },
                },
                d_rk: sized(&mut lg.recurrent_kernel, h * g),
                d_kernel: sized(&mut lg.kernel, i * g),
                d_bias: sized(&mut lg.bias, g),
            };
            // Where the packed kernel runs, the weight gradients are
            // computed inside the backward, a few steps behind it, from dz in
            // cache (`cpu::step_grads`); elsewhere after it.
            let (in_step, after) = if F::packed_kernel() {
                (Some((targets, &mut *step_scratch)), None)
            } else {
                (None, Some(targets))
            };
            layer::backward(
                w.recurrent_kernel,
                pack,
                &mut tape.gates,
                &tape.c,
                &tape.tc,
                d_up,
                (
                    &mut grads.dh0[l * state..][..state],
                    &mut grads.dc0[l * state..][..state],
                ),
                dx,
                in_step,
                shape,
                threads,
            );
            if let Some(targets) = after {
                weight_grads_after(targets, &tape.gates, (k, b, h), threads);
            }
            if l > 0 && !below[l - 1].keep.is_empty() {
                for (d, &kept) in down.iter_mut().zip(&below[l - 1].keep) {
                    *d = if kept { *d * scale } else { F::zero() };
                }
            }
        }
        Ok(())
    }
}

/// A layer's weight gradients from dz [T*B, 4H] after its backward,
/// through `matrixmultiply`: where the packed kernel does not run (f64,
/// CPUs without AVX-512F).
fn weight_grads_after<F: Scalar>(
    t: GradTargets<'_, F>,
    dz: &[F],
    (k, b, h): (usize, usize, usize),
    threads: usize,
) {
    let g = 4 * h;
    recurrent_kernel_grad(threads, (t.h, dz), (k, b, h), t.h0_zero, t.d_rk);
    match t.input {
        GradInput::Classes(classes) => {
            let i = t.d_kernel.len() / g;
            scatter_by_class(t.d_kernel, classes, b, dz, (i, g), threads);
            // Every dz row went to exactly one row of d kernel.
            sum_rows(t.d_bias, t.d_kernel);
        }
        GradInput::Dense { x, width } => {
            gemm_cols(
                threads,
                (width, k, g),
                View::new(x, 1, width),
                View::new(dz, g, 1),
                t.d_kernel,
            );
            sum_rows_split(threads, t.d_bias, dz);
        }
    }
}

/// `v` becomes a copy of `src`, reusing its allocation.
fn copy_into<T: Copy>(v: &mut Vec<T>, src: &[T]) {
    v.clear();
    v.extend_from_slice(src);
}

/// The sequence a layer hands up, [T, B, H]: its hidden states, or their
/// dropped copy.
fn layer_output<F>(tape: &LayerTape<F>, state: usize) -> &[F] {
    if tape.keep.is_empty() {
        &tape.h[state..]
    } else {
        &tape.dropped
    }
}

/// `kernel + bias`, one row per class: what a one-hot row times the kernel is.
fn gather_table<F: Scalar>(w: &LayerWeights<'_, F>, g: usize, xb: &mut Vec<F>) {
    xb.clear();
    for c in 0..w.kernel.len() / g {
        xb.extend(class_row(w, g, c));
    }
}

/// The input term of a one-hot row of class `c`: kernel row c + bias.
fn class_row<'w, F: Scalar>(
    w: &'w LayerWeights<'_, F>,
    g: usize,
    c: usize,
) -> impl Iterator<Item = F> + 'w {
    let row = &w.kernel[c * g..][..g];
    row.iter().zip(w.bias).map(|(&k, &b)| k + b)
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
            let job = move || scatter_rows(mine, v0..v1, classes, at, dz, g);
            run_or_spawn(scope, ti + 1 == threads, job);
        }
    });
}
