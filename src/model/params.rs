//! The five parameter tensors, in Keras layout and gate order i, f, c, o.
//!
//! | tensor                  | shape   | row-major index          |
//! |-------------------------|---------|--------------------------|
//! | `lstm.kernel`           | [V, 4H] | `v * 4H + gate * H + j`  |
//! | `lstm.recurrent_kernel` | [H, 4H] | `k * 4H + gate * H + j`  |
//! | `lstm.bias`             | [4H]    | `gate * H + j`           |
//! | `dense.kernel`          | [H, V]  | `j * V + v`              |
//! | `dense.bias`            | [V]     | `v`                      |
//!
//! The same struct holds gradients ([`Grads`]) and RMSprop mean squares.

/// Names of the tensors, in the order [`Params::tensors`] yields them.
pub const TENSOR_NAMES: [&str; 5] = [
    "lstm.kernel",
    "lstm.recurrent_kernel",
    "lstm.bias",
    "dense.kernel",
    "dense.bias",
];

/// Gate slices of the 4H axis, Keras order.
pub const GATE_I: usize = 0;
/// Forget gate slice index.
pub const GATE_F: usize = 1;
/// Candidate (cell) slice index.
pub const GATE_C: usize = 2;
/// Output gate slice index.
pub const GATE_O: usize = 3;

/// Model parameters (or gradients, or optimizer state) of one LSTM + Dense model.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// `lstm.kernel`, [V, 4H].
    pub kernel: Vec<F>,
    /// `lstm.recurrent_kernel`, [H, 4H].
    pub recurrent_kernel: Vec<F>,
    /// `lstm.bias`, [4H].
    pub bias: Vec<F>,
    /// `dense.kernel`, [H, V].
    pub dense_kernel: Vec<F>,
    /// `dense.bias`, [V].
    pub dense_bias: Vec<F>,
}

/// Gradients have exactly the parameters' shapes.
pub type Grads<F> = Params<F>;

impl<F: Copy + Default> Params<F> {
    /// All-zero tensors of the right shapes.
    pub fn zeros(vocab: usize, hidden: usize) -> Self {
        let g = 4 * hidden;
        Params {
            vocab,
            hidden,
            kernel: vec![F::default(); vocab * g],
            recurrent_kernel: vec![F::default(); hidden * g],
            bias: vec![F::default(); g],
            dense_kernel: vec![F::default(); hidden * vocab],
            dense_bias: vec![F::default(); vocab],
        }
    }

    /// Shapes of the tensors, in [`TENSOR_NAMES`] order.
    pub fn shapes(&self) -> [Vec<usize>; 5] {
        Self::shapes_for(self.vocab, self.hidden)
    }

    /// Shapes of the tensors for `V = vocab`, `H = hidden`, in [`TENSOR_NAMES`] order.
    pub fn shapes_for(vocab: usize, hidden: usize) -> [Vec<usize>; 5] {
        let (v, h) = (vocab, hidden);
        [
            vec![v, 4 * h],
            vec![h, 4 * h],
            vec![4 * h],
            vec![h, v],
            vec![v],
        ]
    }

    /// The tensors, in [`TENSOR_NAMES`] order.
    pub fn tensors(&self) -> [&[F]; 5] {
        [
            &self.kernel,
            &self.recurrent_kernel,
            &self.bias,
            &self.dense_kernel,
            &self.dense_bias,
        ]
    }

    /// The tensors, mutable, in [`TENSOR_NAMES`] order.
    pub fn tensors_mut(&mut self) -> [&mut Vec<F>; 5] {
        [
            &mut self.kernel,
            &mut self.recurrent_kernel,
            &mut self.bias,
            &mut self.dense_kernel,
            &mut self.dense_bias,
        ]
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.tensors().iter().map(|t| t.len()).sum()
    }

    /// True when there are no scalars (V = 0 and H = 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts every element, e.g. f32 -> f64 for gradient checks.
    pub fn map<G: Copy + Default>(&self, f: impl Fn(F) -> G) -> Params<G> {
        let conv = |t: &[F]| t.iter().map(|&x| f(x)).collect::<Vec<G>>();
        Params {
            vocab: self.vocab,
            hidden: self.hidden,
            kernel: conv(&self.kernel),
            recurrent_kernel: conv(&self.recurrent_kernel),
            bias: conv(&self.bias),
            dense_kernel: conv(&self.dense_kernel),
            dense_bias: conv(&self.dense_bias),
        }
    }
}
