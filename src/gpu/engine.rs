//! The GPU trainer, written once against [`GpuDevice`] (DESIGN §3-§4), so the
//! simulator and a real GPU run every line of it.
//!
//! Everything lives on the device for the whole run: the packed one-hot
//! corpus (uploaded once), the parameters, gradients and RMSprop mean squares
//! (one flat buffer each, [`ParamLayout`]), the activations of one batch
//! ([`BatchBuffers`]) and the epoch's window order (uploaded once per epoch by
//! [`Engine::begin_epoch`]). A training step is then launches only:
//!
//! 1. `head_targets_u32`: the B targets, decoded from the corpus (after
//!    `batch_select_u32` copied the B starts, see below);
//! 2. the recurrence, reading the one-hot bits of rows `starts[b] + t`
//!    straight from the corpus: `lstm_fwd_persistent_f32` once (all T steps,
//!    weights on chip) where the shape fits, else `lstm_cell_fwd_f32` x T
//!    (see [`super::lstm::LstmPath`]);
//! 3. `head_fwd_bwd_f32` + `head_wgrad_bwd_f32`: loss (summed on the
//!    device), dh_{T-1}, the dense gradients;
//! 4. `lstm_bwd_persistent_f32` once, or `lstm_cell_bwd_f32` +
//!    `lstm_dh_bwd_f32` x T; then the weight gradients;
//! 5. with `--clip-norm`, `grad_norm_clip_f32` (one block: the global norm,
//!    then the scaling, in place); without it, nothing is launched;
//! 6. `rmsprop_update_f32` over all parameters;
//! 7. `loss_log_append_f32`: the loss sum appended to the device loss log.
//!
//! A step of a full batch that is the next slice of the epoch order, the
//! common case, runs all of that as one graph captured once and replayed
//! every step (`graph.rs` says what varies and what forces a recapture);
//! other steps (off-order starts, the partial last batch, graphs off or a
//! device that cannot capture) launch the same kernels one by one, reading
//! their starts from the order or from an upload, as eval and predict do.
//!
//! Generation (the after-epoch samples) is `generate_fwd_f32`, one launch
//! for every character of every temperature, reading the same parameters;
//! where its shared memory (12V + 24H + 4 maxlen bytes) exceeds the device's,
//! the sampling loop runs over `predict` instead, one launch chain per
//! character.
//!
//! Limits, checked in [`GpuEngine::new`] before anything is allocated
//! ([`DeviceError::VocabTooLarge`]): `head_fwd_bwd_f32` holds a row's h and
//! logits in shared memory, `(H + V) * 4` bytes, so V <= max_shared / 4 - H
//! (57,984 symbols at H = 128 with sm_90's 227 KiB); the LSTM kernels index
//! rows with u32 products, so 4H * max(V, H) < 2^32. The whole packed
//! corpus (`rows * ceil(V/64) * 8` bytes) is uploaded once; one that does
//! not fit is [`DeviceError::CorpusTooLarge`] (no streaming).
//!
//! No step waits for the host: [`Engine::queue_train_batch`] leaves the
//! loss in the device log and [`Engine::collect_losses`] reads the log back
//! in one copy (one host round trip for however many steps the trainer
//! collects at once); [`Engine::train_batch`] is the two in a row, one
//! round trip per step. The loss sum is zeroed on the device (a memset on
//! CUDA's stream, no wait). Batches whose starts are not the next slice of
//! the epoch order (eval, library callers) upload their B starts.

use super::buffers::BatchBuffers;
use super::device::{DeviceError, DevicePtr, GpuDevice, SCRATCH_FLOATS};
use super::generate::{GenerateDims, GenerateLauncher};
use super::head::{HeadDims, HeadLauncher};
use super::lstm::LstmLauncher;
use super::rmsprop::{GradClipLauncher, ParamLayout, RmsPropLauncher};
use super::step::StepLauncher;
use crate::corpus::OneHotCorpus;
use crate::cpu::RmsProp;
use crate::error::{Error, Result};
use crate::model::{Hyper, Params};
use crate::sample::Strategy;
use crate::train::{Backend, Engine, generate_by_predict};

mod batch;
mod graph;
pub use graph::GraphStats;
use graph::StepGraph;

/// Steps whose losses the device log holds; a longer queue is read back
/// into host memory when the log is full (one wait per this many steps).
const LOG_CAPACITY: usize = 256;

/// What runs where, for the notice `--device sim` / `cuda` prints.
pub const GPU_PATH_NOTICE: &str = "on the device: targets, the LSTM recurrence (forward and \
     backward, one persistent launch each where H is a multiple of 8 up to 128, else one launch \
     per step), the fused head, the weight gradients, gradient clipping (with \
     --clip-norm), RMSprop and generation (one launch for all samples); a training step is one \
     CUDA graph, replayed, and losses are read back every 32 batches";

/// The epoch's window order on the device, and where the next batch starts.
struct EpochOrder {
    host: Vec<u32>,
    device: DevicePtr,
    capacity: usize,
    cursor: usize,
}

/// Training state on a [`GpuDevice`].
pub struct GpuEngine<'c, D: GpuDevice> {
    device: D,
    backend: Backend,
    corpus: &'c OneHotCorpus,
    maxlen: usize,
    layout: ParamLayout,
    optimizer: RmsProp,
    /// `Hyper::clip_norm`; `None` launches no clipping kernel.
    clip_norm: Option<f32>,
    grad_clip: GradClipLauncher,
    rmsprop: RmsPropLauncher,
    lstm: LstmLauncher,
    head: HeadLauncher,
    d_corpus: DevicePtr,
    d_params: DevicePtr,
    d_rmsprop: DevicePtr,
    d_grads: DevicePtr,
    batch: BatchBuffers,
    order: EpochOrder,
    /// Packed one-hot rows of `predict`'s sequences, and its capacity in rows.
    d_predict: (DevicePtr, usize),
    /// `Hyper::batch`: the batch size a captured step is for.
    batch_size: usize,
    step: StepLauncher,
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
}

impl<'c, D: GpuDevice> GpuEngine<'c, D> {
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
            if (p.vocab, p.hidden) != (v, hyper.hidden) {
                return Err(Error::InvalidArgument {
                    name: "GpuEngine::new",
                    what: format!(
                        "{name} are for V = {}, H = {}, but the corpus has V = {v} and hyper H = {}",
                        p.vocab, p.hidden, hyper.hidden
                    ),
                });
            }
        }
        check_model_fits(&device, v, hyper.hidden)?;
        let layout = ParamLayout::new(v, hyper.hidden);
        // Build the engine first so Drop frees whatever was allocated if a
        // later allocation fails.
        let mut engine = GpuEngine {
            device,
            backend,
            corpus,
            maxlen: hyper.maxlen,
            layout,
            optimizer: RmsProp::from_hyper(hyper),
            clip_norm: hyper.clip_norm,
            grad_clip: GradClipLauncher::default(),
            rmsprop: RmsPropLauncher::default(),
            lstm: LstmLauncher::default(),
            head: HeadLauncher::default(),
            d_corpus: DevicePtr::NULL,
            d_params: DevicePtr::NULL,
            d_rmsprop: DevicePtr::NULL,
            d_grads: DevicePtr::NULL,
            batch: BatchBuffers::empty(),
            order: EpochOrder {
                host: Vec::new(),
                device: DevicePtr::NULL,
                capacity: 0,
                cursor: 0,
            },
            d_predict: (DevicePtr::NULL, 0),
            batch_size: hyper.batch,
            step: StepLauncher::default(),
            d_step: DevicePtr::NULL,
            dev_cursor: Some(0),
            logged: 0,
            collected: Vec::new(),
            graph: StepGraph::default(),
        };
        let dev = &mut engine.device;
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
        engine.d_params = dev.upload_new_f32(&layout.flatten(&params))?;
        engine.d_rmsprop = dev.upload_new_f32(&layout.flatten(&rmsprop))?;
        engine.d_grads = dev.alloc(layout.len() * std::mem::size_of::<f32>())?;
        engine.d_step = Self::alloc_step_state(dev)?;
        engine
            .batch
            .ensure(dev, hyper.batch, hyper.maxlen, hyper.hidden, v)?;
        Ok(engine)
    }

    /// The device underneath.
    pub fn device(&mut self) -> &mut D {
        &mut self.device
    }

    /// The gradients of the last [`Engine::train_batch`], from the device.
    pub fn grads(&mut self) -> Result<Params<f32>> {
        self.download_flat(self.d_grads)
    }

    fn download_flat(&mut self, ptr: DevicePtr) -> Result<Params<f32>> {
        let flat = self.device.download_vec_f32(ptr, self.layout.len())?;
        Ok(self.layout.unflatten(&flat))
    }

    fn free_all(&mut self) -> Result<()> {
        self.drop_step_graph()?;
        self.batch.free(&mut self.device)?;
        let ptrs = [
            self.d_step,
            self.d_corpus,
            self.d_params,
            self.d_rmsprop,
            self.d_grads,
            self.order.device,
            self.d_predict.0,
        ];
        for p in ptrs {
            if p != DevicePtr::NULL {
                self.device.free(p)?;
            }
        }
        self.d_corpus = DevicePtr::NULL;
        self.d_params = DevicePtr::NULL;
        self.d_rmsprop = DevicePtr::NULL;
        self.d_grads = DevicePtr::NULL;
        self.order.device = DevicePtr::NULL;
        self.d_predict = (DevicePtr::NULL, 0);
        self.d_step = DevicePtr::NULL;
        Ok(())
    }
}

impl<D: GpuDevice> Engine for GpuEngine<'_, D> {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        let o = &mut self.order;
        if order.len() > o.capacity {
            if o.device != DevicePtr::NULL {
                self.device.free(o.device)?;
                o.device = DevicePtr::NULL;
                o.capacity = 0;
            }
            o.device = self.device.alloc(std::mem::size_of_val(order).max(1))?;
            o.capacity = order.len();
        }
        self.device.upload_u32(o.device, order)?;
        o.host.clear();
        o.host.extend_from_slice(order);
        o.cursor = position.min(order.len());
        // The captured step reads the order at the device's cursor.
        let cursor = o.cursor;
        self.device
            .upload_u32(self.d_step.offset(graph::CURSOR_AT), &[cursor as u32])?;
        self.dev_cursor = Some(cursor);
        Ok(())
    }

    fn train_batch(&mut self, starts: &[u32]) -> Result<f32> {
        if starts.is_empty() {
            return Ok(0.0);
        }
        self.queue_train_batch(starts)?;
        self.drain_log()?;
        Ok(self
            .collected
            .pop()
            .expect("the step just queued was read back"))
    }

    /// The step, its loss left in the device log: the captured graph for an
    /// in-order full batch, else the launches one by one.
    fn queue_train_batch(&mut self, starts: &[u32]) -> Result<Option<f32>> {
        if starts.is_empty() {
            return Ok(Some(0.0));
        }
        self.check_starts(starts)?;
        self.ensure_batch(starts.len())?;
        let in_order = match self.graph_eligible(starts.len()) {
            true => self.take_in_order(starts),
            false => None,
        };
        match in_order {
            Some(pos) => self.graph_step(pos, starts.len())?,
            None => {
                let d_starts = self.starts_on_device(starts)?;
                let dims = self.forward_head_at(d_starts, starts.len())?;
                self.backward_update(dims)?;
                self.append_loss()?;
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
        crate::cpu::check_sequences(x, seq_len, self.layout.vocab)?;
        let (h, v) = (self.layout.hidden, self.layout.vocab);
        let b = x.len() / seq_len;
        // The sequences become a little packed one-hot corpus of b * seq_len
        // rows plus one spare (the targets kernel reads row start + T), so
        // the training kernels run unchanged: window b starts at row b * T.
        let wpr = self.corpus.words_per_row();
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
        self.device
            .upload(self.d_predict.0, bytemuck::cast_slice(&words))?;
        self.batch.ensure(&mut self.device, b, seq_len, h, v)?;
        let starts: Vec<u32> = (0..b).map(|i| (i * seq_len) as u32).collect();
        self.device.upload_u32(self.batch.starts, &starts)?;
        self.device
            .zero(self.batch.loss, std::mem::size_of::<f32>())?;
        let dims = self.dims(b, seq_len);
        let hd = HeadDims {
            batch: b,
            hidden: h,
            vocab: v,
        };
        self.head.targets(
            &mut self.device,
            self.d_predict.0,
            wpr,
            self.batch.starts,
            seq_len,
            hd,
            self.batch.targets,
        )?;
        let bufs = self.lstm_buffers(self.d_predict.0, self.batch.starts);
        self.lstm.forward(&mut self.device, dims, &bufs)?;
        // The head's gradient outputs land in the gradient buffer, which the
        // next train_batch overwrites before use.
        let head_bufs = self.head_buffers(dims, self.batch.probs);
        self.head.fwd_bwd(&mut self.device, hd, &head_bufs, 1.0)?;
        self.device.download_vec_f32(self.batch.probs, b * v)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.download_flat(self.d_params)
    }

    fn rmsprop_state(&mut self) -> Result<Params<f32>> {
        self.download_flat(self.d_rmsprop)
    }

    fn set_state(&mut self, params: &Params<f32>, rmsprop: &Params<f32>) -> Result<()> {
        let l = self.layout;
        for (name, p) in [("params", params), ("rmsprop", rmsprop)] {
            if (p.vocab, p.hidden) != (l.vocab, l.hidden) {
                return Err(Error::InvalidArgument {
                    name: "GpuEngine::set_state",
                    what: format!(
                        "{name} are for V = {}, H = {}, this engine holds V = {}, H = {}",
                        p.vocab, p.hidden, l.vocab, l.hidden
                    ),
                });
            }
        }
        self.device.upload_f32(self.d_params, &l.flatten(params))?;
        self.device.upload_f32(self.d_rmsprop, &l.flatten(rmsprop))
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.optimizer.lr = f64::from(lr);
        Ok(())
    }

    fn generate(
        &mut self,
        seed_indices: &[u32],
        maxlen: usize,
        length: usize,
        strategies: &[Strategy],
        seed: u64,
        stream: u32,
    ) -> Result<Vec<Vec<u32>>> {
        let dims = GenerateDims {
            vocab: self.layout.vocab,
            hidden: self.layout.hidden,
            maxlen,
            tail_len: maxlen,
            sequences: strategies.len(),
            length,
        };
        if GenerateLauncher::shared_bytes(dims) > self.device.max_shared_bytes() as usize {
            // The one-launch kernel keeps a block's whole model state in
            // shared memory; too large here, so the same loop (the same
            // Philox draws) runs over predict, whose head kernel fits (new
            // checked it).
            let v = self.layout.vocab;
            return generate_by_predict(
                self,
                v,
                seed_indices,
                maxlen,
                length,
                strategies,
                seed,
                stream,
            );
        }
        GenerateLauncher::default().generate(
            &mut self.device,
            self.d_params,
            self.layout,
            maxlen,
            seed_indices,
            length,
            strategies,
            seed,
            stream,
        )
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

impl<D: GpuDevice> Drop for GpuEngine<'_, D> {
    fn drop(&mut self) {
        // Nothing to report to at drop time; the device reclaims on exit anyway.
        let _ = self.free_all();
    }
}
