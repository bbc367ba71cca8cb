//! The parameters of an LSTM + Dense model (one LSTM layer or a stack of N):
//! one flat buffer and the layout that names its tensors. The CPU engine, the device buffers (which are
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
//! | `lstm_{k}.kernel`           | [H, 4H] | `i * 4H + gate * H + j` | U + (k-1) L         |
//! | `lstm_{k}.recurrent_kernel` | [H, 4H] | `i * 4H + gate * H + j` | U + (k-1) L + 4HH   |
//! | `lstm_{k}.bias`             | [4H]    | `gate * H + j`          | U + (k-1) L + 8HH   |
//!
//! The first five are the whole model with one layer (the notebook) and
//! layer 0 of a stack, at the same offsets, so a one-layer checkpoint loads
//! into this layout unchanged and a kernel reading the flat buffer finds
//! layer 0 where it always did. Layers k = 1 .. N-1 of a stack of N follow
//! `dense.bias` (U = 4HV + 4HH + 4H + HV + V, the one-layer length), L =
//! 8HH + 4H elements each, named as Keras names the k-th extra `LSTM` layer
//! of a model (`lstm_1`, `lstm_2`, ...); their input is the layer below's
//! h, so their kernel is [H, 4H]. The head (`dense.*`) reads the top
//! layer's h.
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

/// One of the three tensors of an LSTM layer above layer 0 (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    /// `lstm_{k}.kernel`, [H, 4H].
    Kernel,
    /// `lstm_{k}.recurrent_kernel`, [H, 4H].
    RecurrentKernel,
    /// `lstm_{k}.bias`, \[4H\].
    Bias,
}

impl LayerTensor {
    /// The three, in layout order.
    pub const ALL: [LayerTensor; 3] = [
        LayerTensor::Kernel,
        LayerTensor::RecurrentKernel,
        LayerTensor::Bias,
    ];

    /// The checkpoint name of this tensor of layer `layer` (>= 1):
    /// `lstm_{layer}.kernel` and so on.
    pub fn name(self, layer: usize) -> String {
        let t = match self {
            LayerTensor::Kernel => "kernel",
            LayerTensor::RecurrentKernel => "recurrent_kernel",
            LayerTensor::Bias => "bias",
        };
        format!("lstm_{layer}.{t}")
    }
}

/// Where each tensor of a V x H model of N LSTM layers lies in the flat
/// buffer (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// LSTM layers N (1: the notebook).
    pub layers: usize,
}

/// A tensor's name, shape and element range in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRange {
    /// Checkpoint name (`lstm.kernel`, `lstm_1.bias`, ...).
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Elements of the flat buffer.
    pub range: Range<usize>,
}

impl ParamLayout {
    /// The layout of a V x H model of one LSTM layer.
    pub fn new(vocab: usize, hidden: usize) -> Self {
        Self::stacked(vocab, hidden, 1)
    }

    /// The layout of a V x H model of `layers` LSTM layers (0 is taken as
    /// 1: there is always layer 0).
    pub fn stacked(vocab: usize, hidden: usize, layers: usize) -> Self {
        ParamLayout {
            vocab,
            hidden,
            layers: layers.max(1),
        }
    }

    /// Elements of one layer above layer 0: kernel, recurrent kernel, bias.
    fn upper_len(&self) -> usize {
        let h = self.hidden;
        8 * h * h + 4 * h
    }

    /// The shape of tensor `t` of layer `layer` >= 1.
    pub fn layer_shape(&self, t: LayerTensor) -> Vec<usize> {
        let h = self.hidden;
        match t {
            LayerTensor::Kernel | LayerTensor::RecurrentKernel => vec![h, 4 * h],
            LayerTensor::Bias => vec![4 * h],
        }
    }

    /// The element range of tensor `t` of layer `layer`, 1 <= layer < N.
    ///
    /// Panics outside that: the caller iterates the layers it has.
    pub fn layer_range(&self, layer: usize, t: LayerTensor) -> Range<usize> {
        assert!(
            (1..self.layers).contains(&layer),
            "layer {layer} of {}",
            self.layers
        );
        let h = self.hidden;
        let start = self.ranges()[4].end + (layer - 1) * self.upper_len();
        match t {
            LayerTensor::Kernel => start..start + 4 * h * h,
            LayerTensor::RecurrentKernel => start + 4 * h * h..start + 8 * h * h,
            LayerTensor::Bias => start + 8 * h * h..start + 8 * h * h + 4 * h,
        }
    }

    /// Every tensor, in layout order: the five of [`Tensor::ALL`], then
    /// each upper layer's three.
    pub fn named(&self) -> Vec<NamedRange> {
        let mut out: Vec<NamedRange> = Tensor::ALL
            .iter()
            .map(|&t| NamedRange {
                name: t.name().to_string(),
                shape: self.shape(t),
                range: self.range(t),
            })
            .collect();
        for layer in 1..self.layers {
            for t in LayerTensor::ALL {
                out.push(NamedRange {
                    name: t.name(layer),
                    shape: self.layer_shape(t),
                    range: self.layer_range(layer, t),
                });
            }
        }
        out
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

    /// Element ranges of the five tensors of layer 0 and the head, in
    /// layout order.
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

    /// Total elements, every layer's included.
    pub fn len(&self) -> usize {
        self.ranges()[4].end + (self.layers - 1) * self.upper_len()
    }

    /// True for a 0 x 0 model.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Model parameters (or gradients, or optimizer state) of an LSTM + Dense
/// model; `p[Tensor::Bias]` is one tensor, [`layer`](Self::layer) one of an
/// upper layer's, [`flat`](Self::flat) all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// LSTM layers N (1: the notebook).
    pub layers: usize,
    data: Vec<F>,
}

/// Gradients have exactly the parameters' shapes.
pub type Grads<F> = Params<F>;

impl<F> Params<F> {
    /// The layout of this model's buffer.
    pub fn layout(&self) -> ParamLayout {
        ParamLayout::stacked(self.vocab, self.hidden, self.layers)
    }

    /// Tensor `t` of layer `layer`, 1 <= layer < N (layer 0's are
    /// `self[Tensor::Kernel]` and so on).
    pub fn layer(&self, layer: usize, t: LayerTensor) -> &[F] {
        &self.data[self.layout().layer_range(layer, t)]
    }

    /// [`layer`](Self::layer), mutable.
    pub fn layer_mut(&mut self, layer: usize, t: LayerTensor) -> &mut [F] {
        let r = self.layout().layer_range(layer, t);
        &mut self.data[r]
    }

    /// Layer `layer`'s kernel, recurrent kernel and bias, layer 0 included,
    /// as [`crate::ops::Lstm`] takes them.
    pub fn lstm_weights(&self, layer: usize) -> crate::ops::LayerWeights<'_, F> {
        if layer == 0 {
            crate::ops::LayerWeights {
                kernel: &self[Tensor::Kernel],
                recurrent_kernel: &self[Tensor::RecurrentKernel],
                bias: &self[Tensor::Bias],
            }
        } else {
            crate::ops::LayerWeights {
                kernel: self.layer(layer, LayerTensor::Kernel),
                recurrent_kernel: self.layer(layer, LayerTensor::RecurrentKernel),
                bias: self.layer(layer, LayerTensor::Bias),
            }
        }
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
            layers: layout.layers,
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

    /// The five tensors of layer 0 and the head, in layout order (an upper
    /// layer's: [`layer`](Self::layer)).
    pub fn tensors(&self) -> [&[F]; 5] {
        let ranges = self.layout().ranges();
        ranges.map(|r| &self.data[r])
    }

    /// The five tensors of layer 0 and the head, mutable, in layout order.
    pub fn tensors_mut(&mut self) -> [&mut [F]; 5] {
        let [a, b, c, d, e] = self.layout().ranges().map(|r| r.len());
        let (t0, rest) = self.data.split_at_mut(a);
        let (t1, rest) = rest.split_at_mut(b);
        let (t2, rest) = rest.split_at_mut(c);
        let (t3, rest) = rest.split_at_mut(d);
        let (t4, _) = rest.split_at_mut(e);
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
    /// All-zero tensors of the right shapes, one LSTM layer.
    pub fn zeros(vocab: usize, hidden: usize) -> Self {
        Self::zeros_for(ParamLayout::new(vocab, hidden))
    }

    /// All-zero tensors of `layout`'s shapes.
    pub fn zeros_for(layout: ParamLayout) -> Self {
        Params::from_flat(layout, vec![F::default(); layout.len()])
    }

    /// All-zero tensors of this model's shapes (gradients, optimizer state).
    pub fn zeros_like(&self) -> Self {
        Self::zeros_for(self.layout())
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
        for t in self.layout().named() {
            let values = &self.data[t.range.clone()];
            let Some((i, &value)) = values.iter().enumerate().find(|(_, x)| !x.is_finite()) else {
                continue;
            };
            let index = match t.shape[..] {
                [_, cols] => format!("{}, {}", i / cols, i % cols),
                _ => i.to_string(),
            };
            return Err(crate::error::Error::NonFiniteWeights {
                origin: origin(),
                tensor: t.name,
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
