//! A model on a device: the weights uploaded once as one flat buffer
//! ([`ParamLayout`]), next-character prediction and the notebook's sampling
//! loop, with no corpus and no optimizer state. [`super::GpuEngine`] is this
//! plus what training over a corpus needs; `crate::device::generate` uses it
//! alone to sample from a checkpoint.
//!
//! `predict` runs the training kernels unchanged: the sequences become a
//! small packed one-hot corpus (window b starts at row b * T, plus one spare
//! row the targets kernel reads), so there is one forward chain to trust.
//! `generate` is one launch for every character of every strategy, in the
//! request's mode (`generate_fwd_f32` or `generate_stateful_f32`); where
//! the window kernel's shared memory exceeds the device's, the same loop
//! (the same Philox draws) runs over `predict` (`crate::device`'s fallback
//! policy), and in stateful mode over `predict_carried` (below). A model
//! of N > 1 LSTM layers (`layers.rs`: the device stack) predicts with the
//! same chain; the generation kernel runs one layer, so a stack samples
//! over `predict` in window mode, and in stateful mode over
//! `predict_carried` (the stack from a carried state on the device, one
//! step a character) under the CPU's loop (`stateful::run_stateful`): the
//! same Philox draws, a download of B x V probabilities per character.
//!
//! Limits, checked in [`GpuModel::new`] before anything is allocated
//! ([`DeviceError::VocabTooLarge`]): `head_fwd_bwd_f32` holds a row's h,
//! logits and reduction scratch in shared memory, `(H + V + 32) * 4` bytes,
//! so V <= max_shared / 4 - H - 32 (57,952 symbols at H = 128 with sm_90's
//! 227 KiB); the LSTM kernels index rows with u32 products, so
//! 4H * max(V, H) < 2^32.

use super::batch::BatchLauncher;
use super::buffers::BatchBuffers;
use super::device::{DeviceError, DevicePtr, GpuDevice, SCRATCH_FLOATS};
use super::generate::{GenerateDims, GenerateLauncher};
use super::head::{HeadBuffers, HeadDims, HeadLauncher};
use super::lstm::stack::StackWorkspace;
use super::lstm::{LstmBuffers, LstmDims, LstmLauncher};
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::model::{ParamLayout, Params, Tensor};
use crate::ops::Mode;
use crate::sample::{GenMode, GenerateRequest, PredictFn, Progress, no_progress};

/// Weights and batch buffers on a [`GpuDevice`].
pub struct GpuModel<D: GpuDevice> {
    pub(super) device: D,
    pub(super) backend: Backend,
    pub(super) layout: ParamLayout,
    pub(super) lstm: LstmLauncher,
    pub(super) head: HeadLauncher,
    pub(super) d_params: DevicePtr,
    /// The gradients of a training step; for inference, the scratch the
    /// fused head's backward half writes (its outputs are not read).
    pub(super) d_grads: DevicePtr,
    pub(super) batch: BatchBuffers,
    /// Packed one-hot rows of `predict`'s sequences, and its capacity in rows.
    d_predict: (DevicePtr, usize),
    /// Dropout between layers in training (`Hyper::dropout`; 0 for a
    /// model that only predicts).
    pub(super) dropout: f64,
    /// N > 1 layers: the stack's activations (`layers.rs`); empty at N = 1.
    pub(super) stack_ws: StackWorkspace,
    /// A training engine's device step counter (u32) the dropout masks read
    /// (`gpu::dropout`), or NULL: the host's step in `Mode::Train`.
    pub(super) dropout_step: DevicePtr,
}

mod layers;

impl<D: GpuDevice> GpuModel<D> {
    /// Uploads `params` (checked against the kernels' limits first) and
    /// allocates a gradient buffer of the same size. `backend` only labels
    /// the model (`Sim` or `Cuda`).
    pub fn new(device: D, backend: Backend, params: &Params<f32>) -> Result<Self> {
        let layout = ParamLayout::stacked(params.vocab, params.hidden, params.layers);
        let mut model = Self::unloaded(device, backend, layout)?;
        model.load(params)?;
        Ok(model)
    }

    /// A model of `layout` checked against the kernels' limits on
    /// `device`, nothing allocated yet: [`load`](Self::load) does that.
    /// The training engine allocates its corpus in between, so that a
    /// corpus too large for the device is the first allocation to fail.
    pub(super) fn unloaded(device: D, backend: Backend, layout: ParamLayout) -> Result<Self> {
        check_model_fits(&device, layout.vocab, layout.hidden)?;
        Ok(GpuModel {
            device,
            backend,
            layout,
            lstm: LstmLauncher::default(),
            head: HeadLauncher::default(),
            d_params: DevicePtr::NULL,
            d_grads: DevicePtr::NULL,
            batch: BatchBuffers::default(),
            d_predict: (DevicePtr::NULL, 0),
            dropout: 0.0,
            stack_ws: StackWorkspace::default(),
            dropout_step: DevicePtr::NULL,
        })
    }

    /// Uploads `params` and allocates the gradients (once; Drop frees them
    /// however far this got).
    pub(super) fn load(&mut self, params: &Params<f32>) -> Result<()> {
        self.check_shape("params", params)?;
        let layout = self.layout;
        self.d_params = self.device.upload_new_f32(params.flat())?;
        self.d_grads = self
            .device
            .alloc(layout.len() * std::mem::size_of::<f32>())?;
        Ok(())
    }

    /// The device underneath.
    pub fn device(&mut self) -> &mut D {
        &mut self.device
    }

    /// Which backend this is (`Sim` or `Cuda`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A copy of the weights.
    pub fn params(&mut self) -> Result<Params<f32>> {
        self.download_flat(self.d_params)
    }

    /// Replaces the weights (same V, H and layers).
    pub fn set_params(&mut self, params: &Params<f32>) -> Result<()> {
        self.check_shape("params", params)?;
        self.device.upload_f32(self.d_params, params.flat())
    }

    pub(super) fn check_shape(&self, name: &str, p: &Params<f32>) -> Result<()> {
        let l = self.layout;
        if (p.vocab, p.hidden, p.layers) == (l.vocab, l.hidden, l.layers) {
            return Ok(());
        }
        Err(Error::InvalidArgument {
            name: "GpuModel",
            what: format!(
                "{name} are for V = {}, H = {} with {} LSTM layer(s), this model holds V = {}, \
                 H = {} with {}",
                p.vocab, p.hidden, p.layers, l.vocab, l.hidden, l.layers
            ),
        })
    }

    pub(super) fn download_flat(&mut self, ptr: DevicePtr) -> Result<Params<f32>> {
        let flat = self.device.download_vec_f32(ptr, self.layout.len())?;
        Ok(Params::from_flat(self.layout, flat))
    }

    /// Device pointer of tensor `t` of a flat buffer.
    pub(super) fn tensor(&self, flat: DevicePtr, t: Tensor) -> DevicePtr {
        flat.offset(self.layout.range(t).start * std::mem::size_of::<f32>())
    }

    /// The LSTM launch's buffers over `corpus` rows from `starts`.
    pub(super) fn lstm_buffers(&self, corpus: DevicePtr, starts: DevicePtr) -> LstmBuffers {
        let (p, g, b) = (self.d_params, self.d_grads, &self.batch);
        LstmBuffers {
            corpus_words: corpus,
            starts,
            kernel: self.tensor(p, Tensor::Kernel),
            recurrent_kernel: self.tensor(p, Tensor::RecurrentKernel),
            bias: self.tensor(p, Tensor::Bias),
            gates: b.gates,
            c: b.c,
            h: b.h,
            cls: b.cls,
            dz: b.dz,
            dh: b.dh,
            dc: b.dc,
            d_kernel: self.tensor(g, Tensor::Kernel),
            d_recurrent_kernel: self.tensor(g, Tensor::RecurrentKernel),
            d_bias: self.tensor(g, Tensor::Bias),
            wgrad_scratch: b.wgrad_scratch,
            h0: DevicePtr::NULL,
            c0: DevicePtr::NULL,
            dy: DevicePtr::NULL,
            zx: DevicePtr::NULL,
        }
    }

    /// The head launch's buffers after an LSTM forward of `dims`.
    pub(super) fn head_buffers(&self, dims: LstmDims, probs: DevicePtr) -> HeadBuffers {
        let (p, g, b) = (self.d_params, self.d_grads, &self.batch);
        HeadBuffers {
            h: dims.at(self.top_h(), dims.seq_len - 1, dims.hidden),
            dense_kernel: self.tensor(p, Tensor::DenseKernel),
            dense_bias: self.tensor(p, Tensor::DenseBias),
            targets: b.targets,
            probs,
            dlogits: b.dlogits,
            dh: self.head_dh(dims.batch),
            d_dense_kernel: self.tensor(g, Tensor::DenseKernel),
            d_dense_bias: self.tensor(g, Tensor::DenseBias),
            loss_sum: b.loss,
            row_loss: DevicePtr::NULL,
        }
    }

    /// Sizes of a batch of `batch` windows of `seq_len` characters; a
    /// one-hot row is ceil(V / 64) words, the corpus's and predict's alike.
    pub(super) fn dims(&self, batch: usize, seq_len: usize) -> LstmDims {
        LstmDims {
            batch,
            seq_len,
            hidden: self.layout.hidden,
            vocab: self.layout.vocab,
            words_per_row: self.layout.vocab.div_ceil(64),
        }
    }

    /// Next-character probabilities [B, V] for `x` = [B, seq_len] class indices.
    pub fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        let dims = self.predict_inputs(x, seq_len)?;
        let (corpus, starts) = (self.d_predict.0, self.batch.starts);
        self.lstm_forward(corpus, starts, dims, Mode::Eval)?;
        let top = self.top_h();
        self.predict_head(dims, top)
    }

    /// [`predict`](Self::predict) from the carried state at `state`
    /// ([N, 2, B, H]: each layer's h then c, the stream carry's layout;
    /// zeros when `fresh`), which holds the state after the last step on
    /// return: stateful generation one character a call, where the
    /// one-launch kernel does not serve (a stack; a vocabulary too large
    /// for its shared memory). Any N, through the stack kernels
    /// (`gpu::lstm::stack`, which take an initial state).
    pub(super) fn predict_carried(
        &mut self,
        x: &[u32],
        seq_len: usize,
        state: DevicePtr,
        fresh: bool,
    ) -> Result<Vec<f32>> {
        let dims = self.predict_inputs(x, seq_len)?;
        let (n, b, h) = (self.layout.layers, dims.batch, dims.hidden);
        let state_bytes = b * h * std::mem::size_of::<f32>();
        self.ensure_stack(dims)?;
        let sd = self.stack_dims(dims);
        let mut io = self.stack_io(self.d_predict.0, self.batch.starts);
        if !fresh {
            (io.h0, io.c0) = (state, state.offset(state_bytes));
            io.state_stride = 2 * state_bytes;
        }
        let bufs = self.stack_ws.buffers(sd, &io)?;
        self.stack_launcher()
            .forward(&mut self.device, sd, &bufs, Mode::Eval)?;
        // Step T-1 of every layer into the state, as a stream step carries it.
        for l in 0..n {
            let h_last = dims.at(self.stack_ws.h(l), seq_len - 1, h);
            let c_last = dims.at(self.stack_ws.c(l), seq_len - 1, h);
            let dst = state.offset(l * 2 * state_bytes);
            BatchLauncher::default().carry_state(&mut self.device, h_last, c_last, b * h, dst)?;
        }
        let top = self.stack_ws.h(n - 1);
        self.predict_head(dims, top)
    }

    /// `x` ([B, seq_len] class indices) as predict's little packed one-hot
    /// corpus, its starts and targets on the device; the batch's sizes.
    fn predict_inputs(&mut self, x: &[u32], seq_len: usize) -> Result<LstmDims> {
        crate::cpu::check_sequences(x, seq_len, self.layout.vocab)?;
        let (h, v) = (self.layout.hidden, self.layout.vocab);
        let b = x.len() / seq_len;
        // The sequences become a little packed one-hot corpus of b * seq_len
        // rows plus one spare (the targets kernel reads row start + T), so
        // the training kernels run unchanged: window b starts at row b * T.
        let wpr = v.div_ceil(64);
        let rows = x.len() + 1;
        let mut words = vec![0u64; rows * wpr];
        for (r, &cls) in x.iter().enumerate() {
            words[r * wpr + cls as usize / 64] |= 1u64 << (cls % 64);
        }
        words[x.len() * wpr] = 1; // class 0: a valid dummy target
        if rows > self.d_predict.1 {
            if self.d_predict.0 != DevicePtr::NULL {
                self.device.free(self.d_predict.0)?;
                self.d_predict = (DevicePtr::NULL, 0);
            }
            self.d_predict = (self.device.alloc(words.len() * 8)?, rows);
        }
        // Queued: the probabilities' download at the end is the one wait
        // (a generation step over predict runs once a character).
        self.device
            .upload_queued(self.d_predict.0, bytemuck::cast_slice(&words))?;
        self.batch.ensure(&mut self.device, b, seq_len, h, v)?;
        let starts: Vec<u32> = (0..b).map(|i| (i * seq_len) as u32).collect();
        self.device
            .upload_queued(self.batch.starts, bytemuck::cast_slice(&starts))?;
        self.device
            .zero(self.batch.loss, std::mem::size_of::<f32>())?;
        let hd = self.head_dims(b);
        BatchLauncher::default().targets(
            &mut self.device,
            self.d_predict.0,
            wpr,
            self.batch.starts,
            seq_len,
            hd,
            self.batch.targets,
        )?;
        Ok(self.dims(b, seq_len))
    }

    /// The head over the last step of `top` (the top layer's hidden states
    /// [T, B, H]) after a forward of `dims`: the probabilities [B, V].
    fn predict_head(&mut self, dims: LstmDims, top: DevicePtr) -> Result<Vec<f32>> {
        let hd = self.head_dims(dims.batch);
        // The head's gradient outputs land in the gradient buffer: scratch
        // for inference, and a training step overwrites it before use.
        let mut head_bufs = self.head_buffers(dims, self.batch.probs);
        head_bufs.h = dims.at(top, dims.seq_len - 1, dims.hidden);
        self.head.fwd_bwd(&mut self.device, hd, &head_bufs, 1.0)?;
        self.device
            .download_vec_f32(self.batch.probs, dims.batch * self.layout.vocab)
    }

    fn head_dims(&self, batch: usize) -> HeadDims {
        HeadDims {
            batch,
            hidden: self.layout.hidden,
            vocab: self.layout.vocab,
        }
    }

    /// The sampling loop in `req.mode` (see `Engine::generate`): one launch
    /// of the generation kernel, or in window mode the same loop over
    /// [`predict`](Self::predict) where that kernel's shared memory does not
    /// fit the device (stateful mode is then an error).
    pub fn generate(&mut self, req: &GenerateRequest) -> Result<Vec<Vec<u32>>> {
        self.generate_with(req, &mut no_progress)
    }

    /// [`generate`](Self::generate), telling `progress` what it has made:
    /// once after the launch, or after every character on the fallback
    /// loop, which then stops where `progress` breaks (see [`Progress`]).
    pub fn generate_with(
        &mut self,
        req: &GenerateRequest,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let dims = GenerateDims {
            mode: req.mode,
            vocab: self.layout.vocab,
            hidden: self.layout.hidden,
            maxlen: req.maxlen,
            tail_len: req.maxlen,
            sequences: req.strategies.len(),
            length: req.length,
        };
        let (needed, limit) = (
            GenerateLauncher::shared_bytes(dims),
            self.device.max_shared_bytes(),
        );
        if self.layout.layers > 1 || needed > limit as usize {
            // The one-launch kernel runs one layer, and keeps a block's
            // whole model state in shared memory: a stack, or a vocabulary
            // too large for that, samples with the same loop (the same
            // Philox draws) over predict (window mode; its head kernel fits,
            // `new` checked it) or predict_carried (stateful mode).
            let v = self.layout.vocab;
            return match req.mode {
                GenMode::Window => {
                    req.run_on_with(PredictFn(|x: &[u32], t| self.predict(x, t)), v, progress)
                }
                GenMode::Stateful => self.generate_stepped(req, progress),
            };
        }
        let out = GenerateLauncher::default().generate(
            &mut self.device,
            self.d_params,
            self.layout,
            req,
        )?;
        // Done either way: a break has nothing left to stop.
        let _ = progress(&out);
        Ok(out)
    }

    /// Stateful generation without the one-launch kernel: the CPU's loop
    /// (`stateful::run_stateful`, the same Philox draws) over
    /// [`predict_carried`](Self::predict_carried), one character a call.
    fn generate_stepped(
        &mut self,
        req: &GenerateRequest,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let v = self.layout.vocab;
        if !crate::stateful::check_stateful(v, req)? {
            return Ok(vec![Vec::new(); req.strategies.len()]);
        }
        let mut stepper = DeviceStepper::new(self, req.strategies.len())?;
        let out = crate::stateful::run_stateful(&mut stepper, v, req, progress);
        stepper.free()?;
        out
    }

    /// Frees every buffer (the model is unusable afterwards).
    pub(super) fn free_all(&mut self) -> Result<()> {
        self.batch.free(&mut self.device)?;
        self.stack_ws.free(&mut self.device)?;
        for p in [
            self.d_params,
            self.d_grads,
            self.d_predict.0,
            self.dropout_step,
        ] {
            if p != DevicePtr::NULL {
                self.device.free(p)?;
            }
        }
        self.d_params = DevicePtr::NULL;
        self.d_grads = DevicePtr::NULL;
        self.d_predict = (DevicePtr::NULL, 0);
        self.dropout_step = DevicePtr::NULL;
        Ok(())
    }
}

/// Stateful generation of a stack on the device: the carried state of B
/// sequences in one device buffer, each step one `predict_carried`.
struct DeviceStepper<'m, D: GpuDevice> {
    model: &'m mut GpuModel<D>,
    batch: usize,
    state: DevicePtr,
    probs: Vec<f32>,
}

impl<'m, D: GpuDevice> DeviceStepper<'m, D> {
    fn new(model: &'m mut GpuModel<D>, batch: usize) -> Result<Self> {
        let floats = 2 * model.layout.layers * batch * model.layout.hidden;
        let state = model.device.alloc(floats * std::mem::size_of::<f32>())?;
        Ok(DeviceStepper {
            model,
            batch,
            state,
            probs: Vec::new(),
        })
    }

    fn free(self) -> Result<()> {
        self.model.device.free(self.state)
    }
}

impl<D: GpuDevice> crate::stateful::Stepper for DeviceStepper<'_, D> {
    fn prime(&mut self, seed: &[u32]) -> Result<&[f32]> {
        // [B, T]: every sequence reads the whole seed.
        let x: Vec<u32> = (0..self.batch).flat_map(|_| seed.iter().copied()).collect();
        self.probs = self
            .model
            .predict_carried(&x, seed.len(), self.state, true)?;
        Ok(&self.probs)
    }

    fn step(&mut self, next: &[u32]) -> Result<&[f32]> {
        self.probs = self.model.predict_carried(next, 1, self.state, false)?;
        Ok(&self.probs)
    }
}

impl<D: GpuDevice> Drop for GpuModel<D> {
    fn drop(&mut self) {
        // Nothing to report to at drop time; the device reclaims on exit anyway.
        let _ = self.free_all();
    }
}

/// Refuses, before anything is allocated, a model the kernels cannot run on
/// `dev` (see the module docs): the head's shared memory and the LSTM
/// kernels' u32 row products.
fn check_model_fits<D: GpuDevice>(dev: &D, vocab: usize, hidden: usize) -> Result<()> {
    let too_large = |what: String| DeviceError::VocabTooLarge {
        device: dev.name(),
        vocab,
        hidden,
        what,
    };
    let limit = dev.max_shared_bytes();
    // The batch size does not enter the head's shared memory.
    let head = HeadLauncher::shared_bytes(HeadDims {
        batch: 1,
        hidden,
        vocab,
    });
    if head > limit as usize {
        let f32s = std::mem::size_of::<f32>();
        return Err(too_large(format!(
            "head_fwd_bwd_f32 keeps a row's h and logits and a {SCRATCH_FLOATS}-float scratch \
             in shared memory, (H + V + {SCRATCH_FLOATS}) x {f32s} = {head} bytes, and the \
             device allows {limit} bytes per block: at most {} symbols at {hidden} units",
            (limit as usize / f32s).saturating_sub(hidden + SCRATCH_FLOATS)
        ))
        .into());
    }
    let product = 4u64 * hidden as u64 * vocab.max(hidden) as u64;
    if product > u64::from(u32::MAX) {
        return Err(too_large(format!(
            "the LSTM kernels index parameter rows with 32-bit products, and 4H x max(V, H) = \
             {product} exceeds {}",
            u32::MAX
        ))
        .into());
    }
    Ok(())
}
