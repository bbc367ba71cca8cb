//! The seam between what runs a model and what computes it (DESIGN §4):
//! the [`Backend`]s and the [`Engine`] trait they implement. It sits below
//! `cpu`, `gpu`, `train` and the CLI and imports none of them; which engine
//! a `--device` opens is `crate::device`'s one decision.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::Params;
use crate::sample::{GenMode, GenerateRequest, PredictFn, Progress, no_progress};

/// Which windows a training step takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch<'a> {
    /// The next `rows` windows of the epoch order given to
    /// [`Engine::begin_epoch`]: the trainer's batches. A device engine reads
    /// them from the order it uploaded once, at a cursor it keeps, and can
    /// replay one captured graph for every full batch.
    Next(usize),
    /// These window start rows, as given (library callers, eval-like
    /// uses): uploaded with the step, never taken from the epoch order.
    Starts(&'a [u32]),
}

/// One batch of stream (truncated-BPTT) training: B streams, L steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamBatch<'a> {
    /// Corpus row (character position) of each stream's first input character: B entries.
    /// Input `x[t][b]` = class of corpus position `starts[b] + t`, target `y[t][b]` = class at `starts[b] + t + 1`, t in `0..seq_len`.
    pub starts: &'a [u32],
    /// L, the steps of this batch.
    pub seq_len: usize,
    /// false: the recurrence starts from h = c = 0 (first batch of an epoch); true: from the
    /// state the engine kept after its previous stream batch (which must have had the same B).
    pub carry: bool,
}

impl StreamBatch<'_> {
    /// The one check of a stream batch, shared by every engine: B >= 1
    /// streams of L >= 1 steps, every input and target inside a corpus of
    /// `corpus_rows` characters (stream b reads rows `starts[b]` to
    /// `starts[b] + L`, the last being step L-1's target), and, for a
    /// `carry` batch, a kept state of the same B. `kept_streams` is the B of
    /// the state the engine keeps, `None` when it keeps none (no stream
    /// batch has completed and none was set).
    pub fn check(&self, corpus_rows: usize, kept_streams: Option<usize>) -> Result<()> {
        let bad = |what: String| Error::InvalidArgument {
            name: "StreamBatch",
            what,
        };
        let (b, l) = (self.starts.len(), self.seq_len);
        if b == 0 || l == 0 {
            return Err(bad(format!(
                "{b} streams of {l} steps: a stream batch needs at least one stream and one \
                 step (give B >= 1 starts and seq_len >= 1)"
            )));
        }
        if let Some(&s) = self.starts.iter().find(|&&s| s as usize + l >= corpus_rows) {
            let fix = match corpus_rows.checked_sub(l) {
                Some(below) if below > 0 => format!(
                    "every start must be below {below}: start the stream earlier or take fewer \
                     steps"
                ),
                _ => format!("take fewer steps than the corpus' {corpus_rows} characters"),
            };
            return Err(bad(format!(
                "stream start {s} + {l} steps leaves no target inside the corpus of \
                 {corpus_rows} characters (the last target is row start + seq_len; {fix})"
            )));
        }
        match (self.carry, kept_streams) {
            (true, None) => Err(bad(format!(
                "carry: no stream batch completed before this one, so there is no state of \
                 {b} streams to carry (the first batch of an epoch starts from zeros: carry = \
                 false)"
            ))),
            (true, Some(kept)) if kept != b => Err(bad(format!(
                "carry: the kept state is of {kept} streams, this batch has {b} (a batch of \
                 another B starts afresh: carry = false)"
            ))),
            _ => Ok(()),
        }
    }
}

/// The error of an engine without stream training (the default of the
/// trait's stream methods; the CPU, sim and cuda engines all have it).
pub fn stream_unsupported(backend: Backend) -> Error {
    Error::Conflict {
        what: format!(
            "this {backend} engine has no stream mode (a loss at every step and a carried state)"
        ),
        fix: "use --mode window, or an engine with stream mode (charlstm-cuda's cpu, sim and \
              cuda engines)"
            .into(),
    }
}

/// The epoch's window order as an engine keeps it: [`Engine::begin_epoch`]
/// sets it, each [`Batch::Next`] takes the next slice.
#[derive(Clone, Debug, Default)]
pub struct EpochOrder {
    order: Vec<u32>,
    cursor: usize,
}

impl EpochOrder {
    /// A new epoch: `order`, the next batch starting at `position`.
    pub fn begin(&mut self, order: &[u32], position: usize) {
        self.order.clear();
        self.order.extend_from_slice(order);
        self.cursor = position.min(order.len());
    }

    /// Where the next batch starts in the order.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The next `rows` windows: their position in the order and their
    /// starts; the cursor moves past them. Asking beyond the end of the
    /// epoch (or before `begin`) is an error.
    pub fn take(&mut self, rows: usize) -> Result<(usize, &[u32])> {
        let (pos, end) = (self.cursor, self.cursor + rows);
        if rows == 0 || end > self.order.len() {
            return Err(Error::InvalidArgument {
                name: "Batch::Next",
                what: format!(
                    "{rows} windows at position {pos} of an epoch order of {} (call \
                     begin_epoch with the epoch's order first)",
                    self.order.len()
                ),
            });
        }
        self.cursor = end;
        Ok((pos, &self.order[pos..end]))
    }
}

/// What the training loop needs from a backend. An engine owns the
/// parameters, the optimizer state and whatever buffers it needs; it is
/// created over one corpus, so a batch is window start rows: the next ones
/// of the epoch's order ([`Batch::Next`]) or given ones ([`Batch::Starts`]).
///
/// `Send`, so that a [`Trainer`](crate::Trainer) (which owns one) can be
/// moved to a worker thread; one thread drives an engine at a time
/// (`&mut self`), so none needs to be `Sync`.
pub trait Engine: Send {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// The start of an epoch (or a resume in the middle of one): its window
    /// order, the next [`Batch::Next`] starting at `position`. A device
    /// engine uploads the order here, once per epoch.
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()>;
    /// One RMSprop step on `batch` without waiting for its loss: `Some(loss)`
    /// when the engine computed it at once (the CPU), `None` when the loss is
    /// kept for [`collect_losses`](Self::collect_losses) (a device engine
    /// queues the step and the loss stays on the device, so a step costs no
    /// host wait).
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>>;
    /// One RMSprop step on `batch`; returns its mean loss (losses queued
    /// before it stay for [`collect_losses`](Self::collect_losses)). The
    /// default is for engines whose [`queue_train`](Self::queue_train)
    /// answers at once.
    fn train(&mut self, batch: Batch<'_>) -> Result<f32> {
        self.queue_train(batch)?
            .ok_or_else(|| Error::InvalidArgument {
                name: "Engine::train",
                what: "this engine defers its losses, so it must implement train itself".into(),
            })
    }
    /// [`train`](Self::train) on the windows starting at `starts`.
    fn train_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.train(Batch::Starts(starts))
    }
    /// The losses of the steps [`queue_train`](Self::queue_train) answered
    /// `None` to since the last call, oldest first (one host round trip on
    /// a device engine); the default has none.
    fn collect_losses(&mut self) -> Result<Vec<f32>> {
        Ok(Vec::new())
    }
    /// One RMSprop step on a stream batch: the loss is the mean cross-entropy over all B*L
    /// next-character targets, the gradient flows back through the L steps of this batch only
    /// (truncated BPTT; the carried initial state is a constant), clipping as in window mode;
    /// afterwards the engine keeps the final (h_L, c_L) of every stream for the next `carry`
    /// batch. Same Some/None contract as `queue_train`. The default: [`stream_unsupported`].
    fn queue_train_stream(&mut self, batch: StreamBatch<'_>) -> Result<Option<f32>> {
        let _ = batch;
        Err(stream_unsupported(self.backend()))
    }
    /// The carried state: (h, c), each [N, B, H] for N stacked layers, layer-major and
    /// row-major (layer l's stream b's unit j at `(l * B + b) * H + j`; [B, H] for one layer);
    /// empty vectors when no stream batch has run.
    fn stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        Err(stream_unsupported(self.backend()))
    }
    /// Replaces the carried state (a resume): h and c [N, B, H].
    fn set_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        let _ = (h, c);
        Err(stream_unsupported(self.backend()))
    }
    /// The optimizer steps the run has taken so far (`TrainState::step`),
    /// told before each epoch's first batch: an engine whose training draws
    /// random numbers (dropout between stacked LSTM layers) keys them by the
    /// step and counts on from it, so a resumed run draws what one never
    /// stopped would. An engine that draws none ignores it.
    fn set_step(&mut self, step: u64) -> Result<()> {
        let _ = step;
        Ok(())
    }

    /// Which kernels run the recurrence from the next step on (see
    /// [`LstmPath`]), checked against the engine's batch shape: an error
    /// names why a path cannot run it. The default (an engine with one
    /// recurrence, the CPU's) takes `Auto` only.
    fn set_lstm_path(&mut self, path: LstmPath) -> Result<()> {
        match path {
            LstmPath::Auto => Ok(()),
            other => Err(Error::InvalidArgument {
                name: "--recurrence",
                what: format!(
                    "{other} chooses device kernels, and the {} backend has one recurrence: \
                     leave it at auto, or train with --device cuda or sim",
                    self.backend()
                ),
            }),
        }
    }

    /// Mean loss of the windows starting at `starts`, without updating anything.
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32>;
    /// Next-character probabilities [B, V] for `x` = [B, seq_len] class indices.
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>>;
    /// A copy of the current weights (`&mut`: a GPU engine downloads them).
    fn params(&mut self) -> Result<Params<f32>>;
    /// A copy of the RMSprop mean squares.
    fn rmsprop_state(&mut self) -> Result<Params<f32>>;
    /// Replaces the weights and the RMSprop mean squares (a rollback).
    fn set_state(&mut self, params: &Params<f32>, rmsprop: &Params<f32>) -> Result<()>;
    /// Changes the RMSprop learning rate from the next step on.
    fn set_learning_rate(&mut self, lr: f32) -> Result<()>;
    /// The notebook's sampling loop (see [`GenerateRequest`]):
    /// [`generate_with`](Self::generate_with) with no one watching.
    fn generate(&mut self, req: &GenerateRequest) -> Result<Vec<Vec<u32>>> {
        self.generate_with(req, &mut no_progress)
    }
    /// The sampling loop in `req.mode`, telling `progress` what it has made
    /// so far, which may stop it (see [`Progress`]). The default runs window
    /// mode over [`predict`](Self::predict) and stateful mode on the CPU
    /// over [`params`](Self::params) (`crate::stateful`), reporting every
    /// character; a GPU engine runs either in one launch and reports once.
    fn generate_with(
        &mut self,
        req: &GenerateRequest,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let params = self.params()?;
        match req.mode {
            GenMode::Window => req.run_on_with(
                PredictFn(|x: &[u32], t| self.predict(x, t)),
                params.vocab,
                progress,
            ),
            GenMode::Stateful => crate::stateful::generate_stateful(&params, req, progress),
        }
    }
}

/// The mean loss of the windows at `starts` on `engine`, `batch` windows
/// to an [`Engine::eval_batch`], each batch's mean weighted by its windows:
/// the mean over every window, summed in f64 in the order given, so the
/// same starts give the same number on every call. `each(k, loss)` sees
/// batch `k`'s (0-based) loss as it arrives and may end the walk with an
/// error (a progress bar, a refusal of NaN). `batch` must be at least 1;
/// no starts give 0.
pub fn mean_loss(
    engine: &mut dyn Engine,
    starts: &[u32],
    batch: usize,
    each: &mut dyn FnMut(usize, f32) -> Result<()>,
) -> Result<f64> {
    if starts.is_empty() {
        return Ok(0.0);
    }
    let mut sum = 0.0f64;
    for (k, chunk) in starts.chunks(batch).enumerate() {
        let loss = engine.eval_batch(chunk)?;
        each(k, loss)?;
        sum += f64::from(loss) * chunk.len() as f64;
    }
    Ok(sum / starts.len() as f64)
}

/// Which device kernels run the LSTM recurrence (`--recurrence`). A choice
/// of speed, never of results: every path sums in the same order, so a
/// training run gives the same bits on each (the kernels' bit-identity
/// tests hold them to it). The CPU engine has one recurrence and takes
/// only `Auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LstmPath {
    /// The persistent kernels where the shape fits (`PersistentPlan::new`
    /// in `gpu::lstm`: H <= 128 today), else the per-step kernels.
    #[default]
    Auto,
    /// The per-step kernels: T launches forward, T backward.
    PerStep,
    /// The persistent kernels, or an error naming why the shape does not fit.
    Persistent,
    /// The forward and the backward recurrence as one launch each on a
    /// thread-block cluster per group of rows (`gpu::lstm::cluster`:
    /// Hopper, H a multiple of 64 up to 256 at 8 rows a cluster), or an
    /// error naming why the shape does not fit. Not chosen by `Auto` until
    /// it has run on a GPU.
    Cluster,
}

impl LstmPath {
    /// Every path, in the order `--recurrence` lists them.
    pub const ALL: [LstmPath; 4] = [
        LstmPath::Auto,
        LstmPath::PerStep,
        LstmPath::Persistent,
        LstmPath::Cluster,
    ];

    /// The name users type after `--recurrence`.
    pub fn name(self) -> &'static str {
        match self {
            LstmPath::Auto => "auto",
            LstmPath::PerStep => "per-step",
            LstmPath::Persistent => "persistent",
            LstmPath::Cluster => "cluster",
        }
    }
}

impl fmt::Display for LstmPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LstmPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LstmPath::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                name: "--recurrence",
                what: format!("{s:?} (expected auto, per-step, persistent or cluster)"),
            })
    }
}

/// The compute backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The CPU reference.
    Cpu,
    /// The CUDA kernels on an NVIDIA GPU.
    Cuda,
    /// The CUDA kernels on the PTX simulator.
    Sim,
}

impl Backend {
    /// The name users type after `--device`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Sim => "sim",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
