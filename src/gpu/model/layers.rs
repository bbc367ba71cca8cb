//! The model's LSTM of N layers: one layer runs the notebook's path as it
//! always has (`LstmLauncher` over `BatchBuffers`, bit for bit); N > 1 the
//! device stack (`gpu::lstm::stack`) over the same flat parameter and
//! gradient buffers, which follow `ParamLayout::stacked` (layer 0 and the
//! head at today's offsets, `lstm_{k}.*` after them), so RMSprop and
//! clipping run over the whole flat vector unchanged. The head reads the
//! top layer's last h and writes dh_{T-1} into the top layer's slice of the
//! stack's state gradient.

use super::GpuModel;
use crate::error::Result;
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::lstm::LstmDims;
use crate::gpu::lstm::stack::{LayerPtrs, StackDims, StackIo, StackLauncher};
use crate::model::{LayerTensor, Tensor};
use crate::ops::Mode;

const F32: usize = std::mem::size_of::<f32>();

impl<D: GpuDevice> GpuModel<D> {
    /// LSTM layers N.
    pub fn layers(&self) -> usize {
        self.layout.layers
    }

    /// The stack's sizes for a batch of `dims` (layer 0's).
    pub(in crate::gpu) fn stack_dims(&self, dims: LstmDims) -> StackDims {
        StackDims {
            layers: self.layout.layers,
            batch: dims.batch,
            seq_len: dims.seq_len,
            hidden: dims.hidden,
            vocab: dims.vocab,
        }
    }

    /// The stack's launchers: the model's recurrence launcher and dropout.
    pub(in crate::gpu) fn stack_launcher(&self) -> StackLauncher {
        StackLauncher {
            lstm: self.lstm,
            p: self.dropout,
            step_at: self.dropout_step,
            ..StackLauncher::default()
        }
    }

    /// Layer `l`'s weights and gradients in the flat buffers.
    fn layer_ptrs(&self, l: usize) -> LayerPtrs {
        let (p, g) = (self.d_params, self.d_grads);
        let at = |flat: DevicePtr, t: LayerTensor| -> DevicePtr {
            let start = match (l, t) {
                (0, LayerTensor::Kernel) => self.layout.range(Tensor::Kernel).start,
                (0, LayerTensor::RecurrentKernel) => {
                    self.layout.range(Tensor::RecurrentKernel).start
                }
                (0, LayerTensor::Bias) => self.layout.range(Tensor::Bias).start,
                (l, t) => self.layout.layer_range(l, t).start,
            };
            flat.offset(start * F32)
        };
        LayerPtrs {
            kernel: at(p, LayerTensor::Kernel),
            recurrent_kernel: at(p, LayerTensor::RecurrentKernel),
            bias: at(p, LayerTensor::Bias),
            d_kernel: at(g, LayerTensor::Kernel),
            d_recurrent_kernel: at(g, LayerTensor::RecurrentKernel),
            d_bias: at(g, LayerTensor::Bias),
        }
    }

    /// The stack's inputs and outputs in the window form: the corpus rows
    /// from `starts`, every layer's weights, zero initial state, the
    /// workspace's state gradients.
    pub(in crate::gpu) fn stack_io(&self, corpus: DevicePtr, starts: DevicePtr) -> StackIo {
        let (dh, dc) = self.stack_ws.state_grads();
        StackIo {
            corpus_words: corpus,
            starts,
            layers: (0..self.layout.layers)
                .map(|l| self.layer_ptrs(l))
                .collect(),
            dh,
            dc,
            ..StackIo::default()
        }
    }

    /// Room for a stack batch of `dims` (dropout buffers when the model
    /// drops units in training).
    pub(in crate::gpu) fn ensure_stack(&mut self, dims: LstmDims) -> Result<()> {
        let sd = self.stack_dims(dims);
        self.stack_ws
            .ensure(&mut self.device, sd, self.dropout > 0.0)
    }

    /// The forward over corpus rows `starts[b] + t` in `mode` (dropout in
    /// [`Mode::Train`] only): one layer as always, N through the stack.
    pub(in crate::gpu) fn lstm_forward(
        &mut self,
        corpus: DevicePtr,
        starts: DevicePtr,
        dims: LstmDims,
        mode: Mode,
    ) -> Result<()> {
        if self.layout.layers == 1 {
            let bufs = self.lstm_buffers(corpus, starts);
            return self.lstm.forward(&mut self.device, dims, &bufs);
        }
        self.ensure_stack(dims)?;
        let sd = self.stack_dims(dims);
        let bufs = self.stack_ws.buffers(sd, &self.stack_io(corpus, starts))?;
        self.stack_launcher()
            .forward(&mut self.device, sd, &bufs, mode)
    }

    /// The backward of [`lstm_forward`](Self::lstm_forward) (same `dims`
    /// and `mode`) from the head's dh_{T-1}: every LSTM gradient into the
    /// gradient buffer.
    pub(in crate::gpu) fn lstm_backward(&mut self, dims: LstmDims, mode: Mode) -> Result<()> {
        if self.layout.layers == 1 {
            // backward reads only h, cls, gates, c, dz, dh, dc and writes
            // grads: the corpus and starts are not needed again.
            let bufs = self.lstm_buffers(DevicePtr::NULL, DevicePtr::NULL);
            return self.lstm.backward(&mut self.device, dims, &bufs);
        }
        let sd = self.stack_dims(dims);
        let io = self.stack_io(DevicePtr::NULL, DevicePtr::NULL);
        let bufs = self.stack_ws.buffers(sd, &io)?;
        self.stack_launcher()
            .backward(&mut self.device, sd, &bufs, mode)
    }

    /// The top layer's hidden states [T, B, H] (the head's input).
    pub(in crate::gpu) fn top_h(&self) -> DevicePtr {
        match self.layout.layers {
            1 => self.batch.h,
            n => self.stack_ws.h(n - 1),
        }
    }

    /// Layer `l`'s cell states [T, B, H].
    pub(in crate::gpu) fn layer_c(&self, l: usize) -> DevicePtr {
        match self.layout.layers {
            1 => self.batch.c,
            _ => self.stack_ws.c(l),
        }
    }

    /// Layer `l`'s hidden states [T, B, H].
    pub(in crate::gpu) fn layer_h(&self, l: usize) -> DevicePtr {
        match self.layout.layers {
            1 => self.batch.h,
            _ => self.stack_ws.h(l),
        }
    }

    /// Where the head writes dh_{T-1} [B, H]: the top layer's slice of the
    /// stack's state gradient (N > 1).
    pub(in crate::gpu) fn head_dh(&self, batch: usize) -> DevicePtr {
        match self.layout.layers {
            1 => self.batch.dh,
            n => {
                let (dh, _) = self.stack_ws.state_grads();
                dh.offset((n - 1) * batch * self.layout.hidden * F32)
            }
        }
    }
}
