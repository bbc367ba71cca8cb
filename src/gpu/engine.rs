//! The GPU trainer, written once against [`GpuDevice`] (DESIGN §3-§4), so the
//! simulator and a real GPU run every line of it. It is a [`GpuModel`] (the
//! weights, the gradients, one batch's buffers and the forward chain, which
//! `predict` and `generate` use alone) plus what training over a corpus
//! needs.
//!
//! Everything lives on the device for the whole run: the packed one-hot
//! corpus (uploaded once), the parameters, gradients and RMSprop mean squares
//! (one flat buffer each, `ParamLayout`), the activations of one batch
//! (`BatchBuffers`) and the epoch's window order (uploaded once per epoch by
//! [`Engine::begin_epoch`]). A training step is then launches only:
//!
//! 1. `batch_targets_u32`: the B targets, decoded from the corpus (after
//!    `batch_select_u32` copied the B starts, see below);
//! 2. the recurrence, reading the one-hot bits of rows `starts[b] + t`
//!    straight from the corpus: `lstm_persistent_fwd_f32` once (all T steps,
//!    weights on chip) where the shape fits, else `lstm_cell_fwd_f32` x T
//!    (see [`super::lstm::LstmPath`]);
//! 3. `head_fwd_bwd_f32` + `head_wgrad_bwd_f32`: loss (summed on the
//!    device), dh_{T-1}, the dense gradients;
//! 4. `lstm_persistent_bwd_f32` once, or `lstm_cell_bwd_f32` once and
//!    `lstm_dh_cell_bwd_f32` x (T - 1); then the weight gradients;
//! 5. with `--clip-norm`, `grad_norm_clip_f32` (one block: the global norm,
//!    then the scaling, in place); without it, nothing is launched;
//! 6. `rmsprop_update_f32` over all parameters;
//! 7. `loss_log_append_f32`: the loss sum appended to the device loss log.
//!
//! A full [`Batch::Next`] step, the trainer's common case, runs all of that
//! as one graph captured once and replayed every step (`graph.rs` says what
//! varies and what forces a recapture); other steps (given starts, the
//! partial last batch, graphs off or a device that cannot capture) launch
//! the same kernels one by one, reading their starts from the order or
//! from an upload, as eval and predict do.
//!
//! A stream batch ([`Engine::queue_train_stream`], truncated BPTT over B
//! contiguous streams with a loss at every step) runs the same kernels in
//! their sequence form from a carried state kept on the device, captured
//! as a graph of its own per B and L and replayed every batch (`stream.rs`).
//!
//! A model of N > 1 layers (`--layers`) runs the device stack in place of
//! steps 2 and 4 (`super::lstm::stack`, through `GpuModel::lstm_forward` /
//! `lstm_backward`), with the CPU engine's dropout masks (`Mode::Train`
//! keyed by `Hyper::seed` and the run's step, counted here as the CPU
//! counts it, and mirrored in a device counter the dropout kernels read,
//! which `dropout_step_advance_u32` moves on after each update), so a
//! stacked step, window or stream, is captured and replayed as one layer's is.
//!
//! Generation (the after-epoch samples) and `predict` are the model's
//! (`super::model`, which also holds the kernels' limits on V and H). The
//! whole packed corpus (`rows * ceil(V/64) * 8` bytes) is uploaded once,
//! the first allocation; one that does not fit is
//! [`DeviceError::CorpusTooLarge`] (no streaming).
//!
//! No step waits for the host: [`Engine::queue_train`] leaves the loss in
//! the device log and [`Engine::collect_losses`] reads the log back in one
//! copy (one host round trip for however many steps the trainer collects at
//! once); [`Engine::train`] is the two in a row, one round trip per step.
//! The loss sum is zeroed on the device (a memset on CUDA's stream, no
//! wait). The trainer's batches are [`Batch::Next`]: read from the order
//! uploaded by `begin_epoch` (whose windows are checked there, once), the
//! full ones replayed as the captured graph. Given starts
//! ([`Batch::Starts`], eval) are checked and uploaded with the step.

use super::batch::BatchLauncher;
use super::device::{DeviceError, DevicePtr, GpuDevice};
use super::lstm::{LstmDims, LstmLauncher};
use super::model::GpuModel;
use super::rmsprop::{GradClipLauncher, RmsPropLauncher};
use crate::corpus::OneHotCorpus;
use crate::cpu::RmsProp;
use crate::engine::{Backend, Batch, Engine, EpochOrder, LstmPath, StreamBatch};
use crate::error::{Error, Result};
use crate::model::{Hyper, ParamLayout, Params};
use crate::ops::Mode;
use crate::sample::{GenerateRequest, Progress};

mod chain;
mod graph;
mod stream;
pub use graph::GraphStats;
use graph::StepGraph;
use stream::StreamBuffers;

/// Steps whose losses the device log holds; a longer queue is read back
/// into host memory when the log is full (one wait per this many steps).
const LOG_CAPACITY: usize = 256;

/// What runs where, for the notice `--device sim` / `cuda` prints.
pub const GPU_PATH_NOTICE: &str = "on the device: targets, the LSTM recurrence (forward and \
     backward, one persistent launch each where H is a multiple of 8 up to 128, else one launch \
     per step), the fused head, the weight gradients, gradient clipping (with \
     --clip-norm), RMSprop and generation (one launch for all samples); a training step, in \
     window or stream mode, is one CUDA graph, replayed, and losses are read back every 32 \
     batches";

/// Training state on a [`GpuDevice`]: a [`GpuModel`] (weights, batch
/// buffers, the forward chain) plus the corpus, the RMSprop state, the
/// epoch order and the captured step.
pub struct GpuEngine<'c, D: GpuDevice> {
    model: GpuModel<D>,
    corpus: &'c OneHotCorpus,
    maxlen: usize,
    optimizer: RmsProp,
    /// `Hyper::clip_norm`; `None` launches no clipping kernel.
    clip_norm: Option<f32>,
    grad_clip: GradClipLauncher,
    rmsprop: RmsPropLauncher,
    d_corpus: DevicePtr,
    d_rmsprop: DevicePtr,
    /// The epoch's order (host copy and cursor) and its upload.
    epoch: EpochOrder,
    d_order: DevicePtr,
    d_order_capacity: usize,
    /// `Hyper::batch`: the batch size a captured step is for.
    batch_size: usize,
    batch_kernels: BatchLauncher,
    /// The device cursor into the epoch order, the loss log's count and
    /// the log (`graph.rs`: `CURSOR_AT`, `COUNT_AT`, `LOG_AT`).
    d_step: DevicePtr,
    /// The device cursor's value once the queued work is done; `None`:
    /// unknown, uploaded before it is used.
    dev_cursor: Option<usize>,
    /// Steps whose loss is in the device log, not yet read back.
    logged: usize,
    /// Losses read back and not yet handed out by `collect_losses`.
    collected: Vec<f32>,
    graph: StepGraph,
    /// Stream training's carried state and row buffers (`stream.rs`).
    stream: StreamBuffers,
    /// `Hyper::seed`: the dropout masks' key (N > 1 layers).
    seed: u64,
    /// Optimizer steps the run has taken before the next batch: the
    /// dropout masks' step, as the CPU engine counts it (`Engine::set_step`,
    /// then one per training step of either mode).
    step: u64,
}

impl<'c, D: GpuDevice> GpuEngine<'c, D> {
    /// The dropout masks of the next training step (the CPU engine's).
    pub(super) fn train_mode(&self) -> Mode {
        Mode::Train {
            seed: self.seed,
            // Masks repeat after 2^32 steps, as on the CPU.
            step: self.step as u32,
        }
    }

    /// Uploads the corpus, `params` and `rmsprop` once and allocates the
    /// gradients and the buffers of one `hyper.batch` x `hyper.maxlen` batch.
    pub fn new(
        device: D,
        backend: Backend,
        corpus: &'c OneHotCorpus,
        hyper: &Hyper,
        params: Params<f32>,
        rmsprop: Params<f32>,
    ) -> Result<Self> {
        let v = corpus.vocab().len();
        hyper.validate()?;
        for (name, p) in [("params", &params), ("rmsprop", &rmsprop)] {
            if (p.vocab, p.hidden, p.layers) != (v, hyper.hidden, hyper.layers) {
                return Err(Error::InvalidArgument {
                    name: "GpuEngine::new",
                    what: format!(
                        "{name} are for V = {}, H = {} with {} LSTM layer(s), but the corpus has \
                         V = {v} and hyper H = {} with {}",
                        p.vocab, p.hidden, p.layers, hyper.hidden, hyper.layers
                    ),
                });
            }
        }
        // The model first: it refuses a model the kernels cannot run before
        // anything is allocated. Built before any allocation so Drop frees
        // whatever was allocated if a later one fails; the corpus comes
        // first, so that one too large for the device says so.
        let layout = ParamLayout::stacked(v, hyper.hidden, hyper.layers);
        let mut model = GpuModel::unloaded(device, backend, layout)?;
        model.dropout = f64::from(hyper.dropout);
        let mut engine = GpuEngine {
            model,
            corpus,
            maxlen: hyper.maxlen,
            optimizer: RmsProp::from_hyper(hyper),
            clip_norm: hyper.clip_norm,
            grad_clip: GradClipLauncher::default(),
            rmsprop: RmsPropLauncher::default(),
            d_corpus: DevicePtr::NULL,
            d_rmsprop: DevicePtr::NULL,
            epoch: EpochOrder::default(),
            d_order: DevicePtr::NULL,
            d_order_capacity: 0,
            batch_size: hyper.batch,
            batch_kernels: BatchLauncher::default(),
            d_step: DevicePtr::NULL,
            dev_cursor: Some(0),
            logged: 0,
            collected: Vec::new(),
            graph: StepGraph::default(),
            stream: StreamBuffers::default(),
            seed: hyper.seed,
            step: 0,
        };
        let dev = &mut engine.model.device;
        let words: &[u8] = bytemuck::cast_slice(corpus.words());
        engine.d_corpus = match dev.alloc(words.len().max(1)) {
            Ok(p) => p,
            Err(Error::Device(DeviceError::OutOfMemory { device, free, .. })) => {
                return Err(DeviceError::CorpusTooLarge {
                    device,
                    bytes: words.len(),
                    free,
                }
                .into());
            }
            Err(e) => return Err(e),
        };
        dev.upload(engine.d_corpus, words)?;
        engine.model.load(&params)?;
        let dev = &mut engine.model.device;
        engine.d_rmsprop = dev.upload_new_f32(rmsprop.flat())?;
        engine.d_step = Self::alloc_step_state(dev)?;
        if hyper.layers > 1 && hyper.dropout > 0.0 {
            // The masks' step on the device, so a captured step draws the
            // next step's masks on every replay (zero: set_step moves it).
            let counter = dev.alloc_zeroed(std::mem::size_of::<u32>())?;
            engine.model.dropout_step = counter;
        }
        engine
            .model
            .batch
            .ensure(dev, hyper.batch, hyper.maxlen, hyper.hidden, v)?;
        Ok(engine)
    }

    /// The device underneath.
    pub fn device(&mut self) -> &mut D {
        self.model.device()
    }

    /// The gradients of the last training step, from the device.
    pub fn grads(&mut self) -> Result<Params<f32>> {
        let d_grads = self.model.d_grads;
        self.model.download_flat(d_grads)
    }

    /// Frees the training buffers (the model frees its own when dropped).
    fn free_all(&mut self) -> Result<()> {
        self.drop_step_graph()?;
        self.stream.free(&mut self.model.device)?;
        let ptrs = [self.d_step, self.d_corpus, self.d_rmsprop, self.d_order];
        for p in ptrs {
            if p != DevicePtr::NULL {
                self.model.device.free(p)?;
            }
        }
        self.d_corpus = DevicePtr::NULL;
        self.d_rmsprop = DevicePtr::NULL;
        self.d_order = DevicePtr::NULL;
        self.d_order_capacity = 0;
        self.d_step = DevicePtr::NULL;
        Ok(())
    }
}

impl<D: GpuDevice> Engine for GpuEngine<'_, D> {
    fn backend(&self) -> Backend {
        self.model.backend
    }

    /// Checks every window of `order` once (each window and its target
    /// inside the corpus), uploads it and puts the device cursor at
    /// `position`.
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.check_starts(order)?;
        let dev = &mut self.model.device;
        if order.len() > self.d_order_capacity {
            if self.d_order != DevicePtr::NULL {
                dev.free(self.d_order)?;
                self.d_order = DevicePtr::NULL;
                self.d_order_capacity = 0;
            }
            self.d_order = dev.alloc(std::mem::size_of_val(order).max(1))?;
            self.d_order_capacity = order.len();
        }
        dev.upload_u32(self.d_order, order)?;
        self.epoch.begin(order, position);
        // The captured step reads the order at the device's cursor.
        let cursor = self.epoch.cursor();
        dev.upload_u32(self.d_step.offset(graph::CURSOR_AT), &[cursor as u32])?;
        self.dev_cursor = Some(cursor);
        Ok(())
    }

    fn train(&mut self, batch: Batch<'_>) -> Result<f32> {
        if batch == Batch::Starts(&[]) {
            return Ok(0.0);
        }
        self.queue_train(batch)?;
        self.drain_log()?;
        Ok(self
            .collected
            .pop()
            .expect("the step just queued was read back"))
    }

    /// The step, its loss left in the device log: for the next full batch
    /// of the epoch the captured graph, else the launches one by one,
    /// reading the starts from the uploaded order or from an upload of
    /// their own.
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        match batch {
            Batch::Starts([]) => return Ok(Some(0.0)),
            Batch::Next(rows) => {
                let (pos, _) = self.epoch.take(rows)?;
                self.ensure_batch(rows)?;
                if self.graph_eligible(rows) {
                    self.graph_step(pos, rows)?;
                } else {
                    let d_starts = self.d_order.offset(pos * std::mem::size_of::<u32>());
                    self.step_at(d_starts, rows)?;
                }
            }
            Batch::Starts(starts) => {
                self.ensure_batch(starts.len())?;
                let d_starts = self.upload_starts(starts)?;
                self.step_at(d_starts, starts.len())?;
            }
        }
        self.logged += 1;
        if self.logged == LOG_CAPACITY {
            self.drain_log()?;
        }
        Ok(None)
    }

    fn collect_losses(&mut self) -> Result<Vec<f32>> {
        self.drain_log()?;
        Ok(std::mem::take(&mut self.collected))
    }

    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        if starts.is_empty() {
            return Ok(0.0);
        }
        // The head's backward half runs too (it is fused); its outputs are
        // scratch here and the parameters are untouched.
        self.forward_head(starts)?;
        self.read_loss()
    }

    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        self.model.predict(x, seq_len)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.model.params()
    }

    fn rmsprop_state(&mut self) -> Result<Params<f32>> {
        let d_rmsprop = self.d_rmsprop;
        self.model.download_flat(d_rmsprop)
    }

    fn set_state(&mut self, params: &Params<f32>, rmsprop: &Params<f32>) -> Result<()> {
        self.model.check_shape("rmsprop", rmsprop)?;
        self.model.set_params(params)?;
        self.model.device.upload_f32(self.d_rmsprop, rmsprop.flat())
    }

    fn set_step(&mut self, step: u64) -> Result<()> {
        self.step = step;
        match self.model.dropout_step {
            DevicePtr::NULL => Ok(()),
            // Masks repeat after 2^32 steps, as on the CPU.
            at => self.model.device.upload_u32(at, &[step as u32]),
        }
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.optimizer.lr = f64::from(lr);
        Ok(())
    }

    /// Checked at the window batch's shape, layer 0's and (a stack) a dense
    /// layer's; a stream batch's L is checked when it comes. The path is in
    /// the captured step's key, so the next step captures it anew.
    fn set_lstm_path(&mut self, path: LstmPath) -> Result<()> {
        let lstm = LstmLauncher {
            path,
            ..self.model.lstm
        };
        let layer0 = self.model.dims(self.batch_size, self.maxlen);
        let dense = LstmDims::dense(self.batch_size, self.maxlen, layer0.hidden);
        let shapes = if self.model.layers() > 1 {
            &[layer0, dense][..]
        } else {
            &[layer0][..]
        };
        let dev = &self.model.device;
        for &dims in shapes {
            if let Err(why) = lstm.check_fits(dev, dims) {
                return Err(Error::InvalidArgument {
                    name: "--recurrence",
                    what: format!(
                        "{path} cannot run B = {}, T = {}, H = {} on {}: {why}; auto runs every \
                         shape the kernels take",
                        dims.batch,
                        dims.seq_len,
                        dims.hidden,
                        dev.name()
                    ),
                });
            }
        }
        self.model.lstm = lstm;
        Ok(())
    }

    /// The stream step (`stream.rs`), its loss left in the device log.
    fn queue_train_stream(&mut self, batch: StreamBatch<'_>) -> Result<Option<f32>> {
        self.stream_step(batch)?;
        self.logged += 1;
        if self.logged == LOG_CAPACITY {
            self.drain_log()?;
        }
        Ok(None)
    }

    fn stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.download_stream_state()
    }

    fn set_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        self.upload_stream_state(h, c)
    }

    fn generate_with(
        &mut self,
        req: &GenerateRequest,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        self.model.generate_with(req, progress)
    }
}

impl<D: GpuDevice> Drop for GpuEngine<'_, D> {
    fn drop(&mut self) {
        // Nothing to report to at drop time; the device reclaims on exit anyway.
        let _ = self.free_all();
    }
}
