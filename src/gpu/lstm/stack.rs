//! A stack of N LSTM layers on a device, forward and backward: the device
//! twin of [`crate::ops::Lstm`] over a one-hot first layer (the
//! char trainer's stack; `ops::Lstm`'s math and names, read its header).
//!
//! ```text
//! layer 0:      the one-hot recurrence from the corpus (today's kernels, unchanged)
//! layer l > 0:  zx = X_l @ kernel_l + bias_l      gemm_nn_f32 over all T*B rows
//!               the dense recurrence from zx      lstm_*dense_fwd_f32
//! X_{l+1}     = dropout(h_l)  (Mode::Train, p > 0, below the top only)   dropout_fwd_f32
//! ```
//!
//! Backward, top layer first: the recurrence (window form for the top
//! layer when no `dy` is given: one gradient dh_{T-1} from the head; the
//! sequence form below it, and everywhere when `dy` is given), the weight
//! gradients (`d kernel` of a dense layer as `X^T @ dz`, gemm_tn_f32), and
//! the gradient passed down, `dX = dz @ kernel^T` (gemm_nt_f32) through the
//! dropout mask of the forward (dropout_bwd_f32, recomputed from the same
//! counter).
//!
//! Written over [`GpuDevice`] and [`DevicePtr`]s only: the trainer's
//! engine is one caller; an op over a caller's own buffers can be another.
//! Every buffer is the caller's ([`StackBuffers`]); [`StackWorkspace`]
//! allocates the activations and scratch of one batch shape.

use super::wgrad::WgradLauncher;
use super::{LstmBuffers, LstmDims, LstmLauncher};
use crate::error::{Error, Result};
use crate::gpu::device::{DeviceError, DevicePtr, GpuDevice};
use crate::gpu::dropout::{DropoutLauncher, DropoutMask};
use crate::gpu::gemm::{GemmDims, GemmForm, GemmLauncher};
use crate::ops::Mode;

const F32: usize = std::mem::size_of::<f32>();

/// Sizes of a stack over one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackDims {
    /// Layers N (at least 1).
    pub layers: usize,
    /// Batch rows B.
    pub batch: usize,
    /// Time steps T.
    pub seq_len: usize,
    /// Units H of every layer.
    pub hidden: usize,
    /// Classes V of layer 0's one-hot input.
    pub vocab: usize,
}

impl StackDims {
    /// The sizes of layer `l`: layer 0 one-hot over V classes, the rest dense.
    pub fn layer(&self, l: usize) -> LstmDims {
        match l {
            0 => LstmDims {
                batch: self.batch,
                seq_len: self.seq_len,
                hidden: self.hidden,
                vocab: self.vocab,
                words_per_row: self.vocab.div_ceil(64),
            },
            _ => LstmDims::dense(self.batch, self.seq_len, self.hidden),
        }
    }

    /// Bytes of one layer's [B, H] slice of an [N, B, H] state.
    fn state_bytes(&self) -> usize {
        self.batch * self.hidden * F32
    }

    fn gemms(&self) -> [GemmDims; 3] {
        let (rows, h, g) = (self.seq_len * self.batch, self.hidden, 4 * self.hidden);
        [
            GemmDims {
                m: rows,
                n: g,
                k: h,
            }, // zx = X @ kernel + bias
            GemmDims {
                m: rows,
                n: h,
                k: g,
            }, // dX = dz @ kernel^T
            GemmDims {
                m: h,
                n: g,
                k: rows,
            }, // d kernel = X^T @ dz
        ]
    }
}

/// One layer's parameters and their gradients on the device (Keras
/// layout, [`crate::ops::LayerWeights`]): for layer 0 kernel is [V, 4H],
/// above it [H, 4H].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerPtrs {
    /// `[In_l, 4H]`.
    pub kernel: DevicePtr,
    /// `[H, 4H]`.
    pub recurrent_kernel: DevicePtr,
    /// `[4H]`.
    pub bias: DevicePtr,
    /// Gradient of `kernel`, overwritten by the backward.
    pub d_kernel: DevicePtr,
    /// Gradient of `recurrent_kernel`, overwritten.
    pub d_recurrent_kernel: DevicePtr,
    /// Gradient of `bias`, overwritten.
    pub d_bias: DevicePtr,
}

/// What a caller hands a stack call besides the workspace: the one-hot
/// input, the weights, the states and the gradients in and out.
#[derive(Clone, Debug, Default)]
pub struct StackIo {
    /// The packed one-hot corpus layer 0 reads (rows `starts[b] + t`).
    pub corpus_words: DevicePtr,
    /// \[B\] u32 row starts.
    pub starts: DevicePtr,
    /// Every layer's weights and gradients, layer 0 first.
    pub layers: Vec<LayerPtrs>,
    /// [N, B, H] initial states, or NULL (zeros; both NULL and `dy` NULL:
    /// the window form).
    pub h0: DevicePtr,
    /// [N, B, H] initial cell states, or NULL (zeros).
    pub c0: DevicePtr,
    /// Bytes from layer l's [B, H] of `h0` / `c0` to layer l + 1's; 0:
    /// B*H f32s ([N, B, H] contiguous). Another stride lets a caller keep
    /// each layer's h and c side by side (the stream carry's [N, 2, B, H]).
    pub state_stride: usize,
    /// [T, B, H] the gradient at the top layer's every h_t, or NULL: the
    /// window form, where the top layer's slice of `dh` holds dh_{T-1}
    /// from the head.
    pub dy: DevicePtr,
    /// [N, B, H]. Sequence form: in, dh_T of every layer; out, dh_{-1}.
    /// Window form: the top layer's slice in, dh_{T-1}; all scratch after.
    pub dh: DevicePtr,
    /// [N, B, H]. Sequence form: in, dc_T; out, dc_{-1}. Window form: scratch.
    pub dc: DevicePtr,
}

/// The buffers of one stack call: each layer's [`LstmBuffers`] (layer 0
/// one-hot, the rest dense reading the shared `zx`) and the stack's own
/// scratch. Built by [`StackWorkspace::buffers`].
#[derive(Clone, Debug)]
pub struct StackBuffers {
    /// Layer l's buffers; `layers[N-1].h` [T, B, H] is the top layer's output.
    pub layers: Vec<LstmBuffers>,
    /// [T, B, H] layer l's dropped output, the input of layer l + 1 (one
    /// per layer below the top), or empty: no dropout buffers.
    pub dropped: Vec<DevicePtr>,
    /// [T, B, H] the gradient passed down (every layer's `dy` below the top).
    pub d_up: DevicePtr,
    /// [`GemmLauncher::scratch_len`] f32s for the split GEMMs, or NULL.
    pub gemm_scratch: DevicePtr,
}

/// The activations and scratch of a stack over batches of at most
/// `dims.batch` rows and `dims.seq_len` steps (t-major buffers: a smaller
/// batch uses their prefix), allocated once.
#[derive(Debug, Default)]
pub struct StackWorkspace {
    dims: Option<StackDims>,
    /// Per layer: gates [T, B, 4H], c [T, B, H], h [T, B, H], cls [T, B].
    saved: Vec<[DevicePtr; 4]>,
    dropped: Vec<DevicePtr>,
    zx: DevicePtr,
    dz: DevicePtr,
    d_up: DevicePtr,
    wgrad_scratch: DevicePtr,
    gemm_scratch: DevicePtr,
    /// [N, B, H] each: state gradients for a caller without its own.
    dh: DevicePtr,
    dc: DevicePtr,
    allocs: Vec<DevicePtr>,
}

impl StackWorkspace {
    /// Allocates for `dims` (with dropout buffers when `dropout`), freeing
    /// what it held; already sized for it: nothing.
    pub fn ensure<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        dims: StackDims,
        dropout: bool,
    ) -> Result<()> {
        let fits = self.dims.is_some_and(|d| {
            (d.layers, d.hidden, d.vocab) == (dims.layers, dims.hidden, dims.vocab)
                && d.batch >= dims.batch
                && d.seq_len >= dims.seq_len
        }) && (self.dropped.len() + 1 >= dims.layers || !dropout);
        if fits {
            return Ok(());
        }
        // Grown to cover both the old and the new batch, so alternating
        // shapes (window steps, stream steps, evaluation) settle on one.
        let dims = match self.dims {
            Some(d) if (d.layers, d.hidden, d.vocab) == (dims.layers, dims.hidden, dims.vocab) => {
                StackDims {
                    batch: d.batch.max(dims.batch),
                    seq_len: d.seq_len.max(dims.seq_len),
                    ..dims
                }
            }
            _ => dims,
        };
        self.free(dev)?;
        let (t, b, h) = (dims.seq_len, dims.batch, dims.hidden);
        let (state, g) = (t * b * h, 4 * h);
        let mut alloc = |n: usize, allocs: &mut Vec<DevicePtr>| -> Result<DevicePtr> {
            let p = dev.alloc_zeroed(n.max(1) * F32)?;
            allocs.push(p);
            Ok(p)
        };
        let mut allocs = Vec::new();
        for _ in 0..dims.layers {
            let saved = [
                alloc(t * b * g, &mut allocs)?,
                alloc(state, &mut allocs)?,
                alloc(state, &mut allocs)?,
                // Zeros: a dense layer's weight gradients read it at V = 0 (no class).
                alloc(t * b, &mut allocs)?,
            ];
            self.saved.push(saved);
        }
        if dropout {
            for _ in 1..dims.layers {
                self.dropped.push(alloc(state, &mut allocs)?);
            }
        }
        self.zx = alloc(t * b * g, &mut allocs)?;
        self.dz = alloc(t * b * g, &mut allocs)?;
        self.d_up = alloc(state, &mut allocs)?;
        self.dh = alloc(dims.layers * b * h, &mut allocs)?;
        self.dc = alloc(dims.layers * b * h, &mut allocs)?;
        self.wgrad_scratch = alloc(WgradLauncher::scratch_len(dims.layer(0)), &mut allocs)?;
        let gemm = dims.gemms().map(GemmLauncher::scratch_len);
        self.gemm_scratch = alloc(gemm.into_iter().max().unwrap_or(0), &mut allocs)?;
        self.allocs = allocs;
        self.dims = Some(dims);
        Ok(())
    }

    /// Frees everything it holds.
    pub fn free<D: GpuDevice>(&mut self, dev: &mut D) -> Result<()> {
        let allocs = std::mem::take(&mut self.allocs);
        *self = StackWorkspace::default();
        allocs.into_iter().try_for_each(|p| dev.free(p))
    }

    /// Every buffer it holds (what a captured graph bakes in).
    pub fn addresses(&self) -> impl Iterator<Item = DevicePtr> + '_ {
        self.allocs.iter().copied()
    }

    /// Layer l's saved hidden states [T, B, H] (the top layer's feed the head).
    pub fn h(&self, l: usize) -> DevicePtr {
        self.saved[l][2]
    }

    /// Layer l's saved cell states [T, B, H].
    pub fn c(&self, l: usize) -> DevicePtr {
        self.saved[l][1]
    }

    /// [N, B, H] state-gradient buffers ([`StackIo::dh`], [`StackIo::dc`])
    /// for a caller that keeps none of its own (the window trainer: the
    /// head writes dh_{T-1} into the top layer's slice of the first).
    pub fn state_grads(&self) -> (DevicePtr, DevicePtr) {
        (self.dh, self.dc)
    }

    /// The buffers of a call at `dims` (within what [`ensure`](Self::ensure)
    /// allocated) with the caller's `io`.
    pub fn buffers(&self, dims: StackDims, io: &StackIo) -> Result<StackBuffers> {
        let have = self
            .dims
            .ok_or_else(|| unallocated("no workspace allocated"))?;
        if (dims.layers, dims.hidden, dims.vocab) != (have.layers, have.hidden, have.vocab)
            || dims.batch > have.batch
            || dims.seq_len > have.seq_len
            || io.layers.len() != dims.layers
        {
            return Err(unallocated(&format!(
                "a call at {dims:?} with {} layers of weights, on a workspace for {have:?}",
                io.layers.len()
            )));
        }
        let n = dims.layers;
        let stride = match io.state_stride {
            0 => dims.state_bytes(),
            s => s,
        };
        let at = |p: DevicePtr, l: usize, stride: usize| match p {
            DevicePtr::NULL => DevicePtr::NULL,
            p => p.offset(l * stride),
        };
        let initial = |p: DevicePtr, l: usize| at(p, l, stride);
        let state = |p: DevicePtr, l: usize| at(p, l, dims.state_bytes());
        let layers = (0..n)
            .map(|l| {
                let [gates, c, h, cls] = self.saved[l];
                let w = io.layers[l];
                LstmBuffers {
                    corpus_words: if l == 0 {
                        io.corpus_words
                    } else {
                        DevicePtr::NULL
                    },
                    starts: if l == 0 { io.starts } else { DevicePtr::NULL },
                    kernel: w.kernel,
                    recurrent_kernel: w.recurrent_kernel,
                    bias: w.bias,
                    gates,
                    c,
                    h,
                    cls,
                    zx: if l == 0 { DevicePtr::NULL } else { self.zx },
                    h0: initial(io.h0, l),
                    c0: initial(io.c0, l),
                    dy: if l + 1 == n { io.dy } else { self.d_up },
                    dz: self.dz,
                    dh: state(io.dh, l),
                    dc: state(io.dc, l),
                    d_kernel: w.d_kernel,
                    d_recurrent_kernel: w.d_recurrent_kernel,
                    d_bias: w.d_bias,
                    wgrad_scratch: self.wgrad_scratch,
                }
            })
            .collect();
        Ok(StackBuffers {
            layers,
            dropped: self.dropped.clone(),
            d_up: self.d_up,
            gemm_scratch: self.gemm_scratch,
        })
    }
}

fn unallocated(what: &str) -> Error {
    DeviceError::BadArguments {
        kernel: "lstm stack",
        what: format!("{what}: call StackWorkspace::ensure for the batch first"),
    }
    .into()
}

/// The launchers of a stack, and its dropout probability between layers.
#[derive(Clone, Copy, Debug, Default)]
pub struct StackLauncher {
    /// The recurrence and its weight gradients (persistent or per step).
    pub lstm: LstmLauncher,
    /// The dense products.
    pub gemm: GemmLauncher,
    /// The dropout kernels.
    pub dropout: DropoutLauncher,
    /// The probability of dropping a unit between layers, in [0, 1)
    /// (used in [`Mode::Train`] only).
    pub p: f64,
    /// A device u32 holding the masks' step, or NULL: [`Mode::Train`]'s
    /// `step`. Read when the kernels run (a captured step's replays draw
    /// each step's masks; the caller advances it).
    pub step_at: DevicePtr,
}

impl StackLauncher {
    /// The mask of layer `l`'s output in `mode`, or `None`: no dropout.
    fn mask(&self, mode: Mode, l: usize) -> Option<DropoutMask> {
        match mode {
            Mode::Train { seed, step } if self.p > 0.0 => Some(DropoutMask {
                p: self.p,
                seed,
                step,
                step_at: self.step_at,
                layer: l as u32,
            }),
            _ => None,
        }
    }

    /// What layer `l + 1` reads: layer l's output, dropped in training.
    fn input_of(&self, bufs: &StackBuffers, mode: Mode, l: usize) -> DevicePtr {
        match self.mask(mode, l) {
            Some(_) => bufs.dropped[l],
            None => bufs.layers[l].h,
        }
    }

    fn check(&self, dims: StackDims, bufs: &StackBuffers, mode: Mode) -> Result<()> {
        crate::ops::dropout::check_call(self.p, dims.seq_len * dims.batch, dims.hidden)?;
        let bad = |what: String| -> Result<()> {
            Err(DeviceError::BadArguments {
                kernel: "lstm stack",
                what,
            }
            .into())
        };
        if dims.layers == 0 || bufs.layers.len() != dims.layers {
            return bad(format!(
                "{} layers of buffers for a stack of N = {}",
                bufs.layers.len(),
                dims.layers
            ));
        }
        if self.mask(mode, 0).is_some() && dims.layers > 1 && bufs.dropped.len() + 1 < dims.layers {
            return bad(
                "dropout in training needs a dropped-output buffer per layer below the top \
                        (StackWorkspace::ensure with dropout)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The forward of every layer, bottom up, in `mode` (dropout masks of
    /// [`Mode::Train`]'s key): overwrites each layer's `gates`, `c`, `h`
    /// (layer 0 also `cls`), the shared `zx` and the dropped outputs.
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: StackDims,
        bufs: &StackBuffers,
        mode: Mode,
    ) -> Result<()> {
        self.check(dims, bufs, mode)?;
        let rows = dims.seq_len * dims.batch;
        let [zx_dims, ..] = dims.gemms();
        for (l, lb) in bufs.layers.iter().enumerate() {
            if l > 0 {
                let x = self.input_of(bufs, mode, l - 1);
                let operands = (x, lb.kernel, lb.bias);
                self.gemm.run(
                    dev,
                    GemmForm::NN,
                    zx_dims,
                    operands,
                    lb.zx,
                    bufs.gemm_scratch,
                )?;
            }
            self.lstm.forward(dev, dims.layer(l), lb)?;
            if let Some(mask) = self.mask(mode, l)
                && l + 1 < dims.layers
            {
                self.dropout
                    .forward(dev, mask, (rows, dims.hidden), lb.h, bufs.dropped[l])?;
            }
        }
        Ok(())
    }

    /// The backward of the forward run with the same `bufs` and `mode`,
    /// top layer first: every layer's weight gradients (overwritten), and
    /// in the sequence form dh_{-1}, dc_{-1} of every layer in `dh`, `dc`
    /// (see [`StackIo`]). In the window form (the top layer's `dy` NULL)
    /// the layers below the top start from dh_T = dc_T = 0 (their `dh`,
    /// `dc` slices are zeroed first).
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: StackDims,
        bufs: &StackBuffers,
        mode: Mode,
    ) -> Result<()> {
        self.check(dims, bufs, mode)?;
        let n = dims.layers;
        let window = bufs.layers[n - 1].dy == DevicePtr::NULL;
        if window {
            for lb in &bufs.layers[..n - 1] {
                dev.zero(lb.dh, dims.state_bytes())?;
                dev.zero(lb.dc, dims.state_bytes())?;
            }
        }
        let rows = dims.seq_len * dims.batch;
        let [_, dx_dims, dk_dims] = dims.gemms();
        for l in (0..n).rev() {
            let lb = &bufs.layers[l];
            self.lstm.backward(dev, dims.layer(l), lb)?;
            if l == 0 {
                break;
            }
            let x = self.input_of(bufs, mode, l - 1);
            let scratch = bufs.gemm_scratch;
            let operands = (x, lb.dz, DevicePtr::NULL);
            self.gemm
                .run(dev, GemmForm::TN, dk_dims, operands, lb.d_kernel, scratch)?;
            let operands = (lb.dz, lb.kernel, DevicePtr::NULL);
            self.gemm
                .run(dev, GemmForm::NT, dx_dims, operands, bufs.d_up, scratch)?;
            if let Some(mask) = self.mask(mode, l - 1) {
                let shape = (rows, dims.hidden);
                self.dropout
                    .backward(dev, mask, shape, bufs.d_up, bufs.d_up)?;
            }
        }
        Ok(())
    }
}
