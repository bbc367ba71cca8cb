//! The parameters of one LSTM + Dense model: one flat buffer and the layout
//! that names its five tensors. The CPU engine, the device buffers (which are
//! this buffer uploaded as is), checkpoints and interop all index it through
//! [`Tensor`], so the layout below is written once.
//!
//! Keras layout, gate order i, f, c, o; back to back in this order:
//!
//! | tensor                  | shape   | row-major index         | offset (elements)   |
//! |-------------------------|---------|-------------------------|---------------------|
//! | `lstm.kernel`           | [V, 4H] | `v * 4H + gate * H + j` | 0                   |
//! | `lstm.recurrent_kernel` | [H, 4H] | `k * 4H + gate * H + j` | 4HV                 |
//! | `lstm.bias`             | [4H]    | `gate * H + j`          | 4HV + 4HH           |
//! | `dense.kernel`          | [H, V]  | `j * V + v`             | 4HV + 4HH + 4H      |
//! | `dense.bias`            | [V]     | `v`                     | 4HV + 4HH + 4H + HV |
//!
//! The same type holds gradients ([`Grads`]) and RMSprop mean squares.

use std::ops::{Index, IndexMut, Range};

/// One of the five tensors, in layout order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tensor {
    /// `lstm.kernel`, [V, 4H].
    Kernel,
    /// `lstm.recurrent_kernel`, [H, 4H].
    RecurrentKernel,
    /// `lstm.bias`, \[4H\].
    Bias,
    /// `dense.kernel`, [H, V].
    DenseKernel,
    /// `dense.bias`, \[V\].
    DenseBias,
}

impl Tensor {
    /// The five, in layout order.
    pub const ALL: [Tensor; 5] = [
        Tensor::Kernel,
        Tensor::RecurrentKernel,
        Tensor::Bias,
        Tensor::DenseKernel,
        Tensor::DenseBias,
    ];

    /// The Keras weight name (checkpoints and interop use it).
    pub const fn name(self) -> &'static str {
        TENSOR_NAMES[self as usize]
    }
}

/// Names of the tensors, in layout order.
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

/// Where each tensor of a V x H model lies in the flat buffer (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
}

impl ParamLayout {
    /// The layout of a V x H model.
    pub fn new(vocab: usize, hidden: usize) -> Self {
        ParamLayout { vocab, hidden }
    }

    /// The shape of tensor `t`.
    pub fn shape(&self, t: Tensor) -> Vec<usize> {
        let (v, h) = (self.vocab, self.hidden);
        match t {
            Tensor::Kernel => vec![v, 4 * h],
            Tensor::RecurrentKernel => vec![h, 4 * h],
            Tensor::Bias => vec![4 * h],
            Tensor::DenseKernel => vec![h, v],
            Tensor::DenseBias => vec![v],
        }
    }

    /// Element ranges of the tensors, in layout order.
    pub fn ranges(&self) -> [Range<usize>; 5] {
        let mut start = 0;
        Tensor::ALL.map(|t| {
            let r = start..start + self.shape(t).iter().product::<usize>();
            start = r.end;
            r
        })
    }

    /// The element range of tensor `t`.
    pub fn range(&self, t: Tensor) -> Range<usize> {
        self.ranges()[t as usize].clone()
    }

    /// Total elements.
    pub fn len(&self) -> usize {
        self.ranges()[4].end
    }

    /// True for a 0 x 0 model.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Model parameters (or gradients, or optimizer state) of one LSTM + Dense
/// model; `p[Tensor::Bias]` is one tensor, [`flat`](Self::flat) all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    data: Vec<F>,
}

/// Gradients have exactly the parameters' shapes.
pub type Grads<F> = Params<F>;

impl<F> Params<F> {
    /// The layout of this model's buffer.
    pub fn layout(&self) -> ParamLayout {
        ParamLayout::new(self.vocab, self.hidden)
    }

    /// The tensors back to back, in layout order (what a device holds).
    pub fn flat(&self) -> &[F] {
        &self.data
    }

    /// The flat buffer, mutable.
    pub fn flat_mut(&mut self) -> &mut [F] {
        &mut self.data
    }

    /// Parameters over a flat buffer of `layout.len()` elements.
    ///
    /// Panics on another length: the caller sized the buffer from `layout`.
    pub fn from_flat(layout: ParamLayout, data: Vec<F>) -> Self {
        assert_eq!(data.len(), layout.len(), "Params::from_flat: wrong length");
        Params {
            vocab: layout.vocab,
            hidden: layout.hidden,
            data,
        }
    }

    /// Shapes of the tensors, in layout order.
    pub fn shapes(&self) -> [Vec<usize>; 5] {
        Self::shapes_for(self.vocab, self.hidden)
    }

    /// Shapes of the tensors for `V = vocab`, `H = hidden`, in layout order.
    pub fn shapes_for(vocab: usize, hidden: usize) -> [Vec<usize>; 5] {
        let l = ParamLayout::new(vocab, hidden);
        Tensor::ALL.map(|t| l.shape(t))
    }

    /// The tensors, in layout order.
    pub fn tensors(&self) -> [&[F]; 5] {
        let ranges = self.layout().ranges();
        ranges.map(|r| &self.data[r])
    }

    /// The tensors, mutable, in layout order.
    pub fn tensors_mut(&mut self) -> [&mut [F]; 5] {
        let [a, b, c, d, e] = self.layout().ranges().map(|r| r.len());
        let (t0, rest) = self.data.split_at_mut(a);
        let (t1, rest) = rest.split_at_mut(b);
        let (t2, rest) = rest.split_at_mut(c);
        let (t3, t4) = rest.split_at_mut(d);
        debug_assert_eq!(t4.len(), e);
        [t0, t1, t2, t3, t4]
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no scalars (V = 0 and H = 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<F: Copy + Default> Params<F> {
    /// All-zero tensors of the right shapes.
    pub fn zeros(vocab: usize, hidden: usize) -> Self {
        let layout = ParamLayout::new(vocab, hidden);
        Params::from_flat(layout, vec![F::default(); layout.len()])
    }

    /// Converts every element, e.g. f32 -> f64 for gradient checks.
    pub fn map<G>(&self, f: impl Fn(F) -> G) -> Params<G> {
        Params::from_flat(self.layout(), self.data.iter().map(|&x| f(x)).collect())
    }
}

impl Params<f32> {
    /// Refuses weights holding NaN or infinity, naming the first one (in
    /// layout order) and `origin` (the checkpoint, or "the model"). The one
    /// check every way a model comes in goes through (a checkpoint read,
    /// a [`Model`](crate::Model) made), so no backend meets such weights:
    /// the CPU would report a bad prediction, a device would sample from
    /// garbage.
    pub fn check_finite(&self, origin: impl FnOnce() -> String) -> crate::error::Result<()> {
        let layout = self.layout();
        for t in Tensor::ALL {
            let Some((i, &value)) = self[t].iter().enumerate().find(|(_, x)| !x.is_finite()) else {
                continue;
            };
            let index = match layout.shape(t)[..] {
                [_, cols] => format!("{}, {}", i / cols, i % cols),
                _ => i.to_string(),
            };
            return Err(crate::error::Error::NonFiniteWeights {
                origin: origin(),
                tensor: t.name(),
                index,
                value,
            });
        }
        Ok(())
    }
}

impl<F> AsMut<[F]> for Params<F> {
    fn as_mut(&mut self) -> &mut [F] {
        &mut self.data
    }
}

impl<F> Index<Tensor> for Params<F> {
    type Output = [F];
    fn index(&self, t: Tensor) -> &[F] {
        &self.data[self.layout().range(t)]
    }
}

impl<F> IndexMut<Tensor> for Params<F> {
    fn index_mut(&mut self, t: Tensor) -> &mut [F] {
        let r = self.layout().range(t);
        &mut self.data[r]
    }
}
