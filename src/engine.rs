//! The seam between what runs a model and what computes it (DESIGN §4):
//! the [`Backend`]s and the [`Engine`] trait they implement. It sits below
//! `cpu`, `gpu`, `train` and the CLI and imports none of them; which engine
//! a `--device` opens is `crate::device`'s one decision.

use std::fmt;

use crate::error::Result;
use crate::model::Params;
use crate::sample::{IndexGenerator, Predict, Strategy};

/// A prediction function as the generator's predictor.
struct PredictFn<F>(F);

impl<F: FnMut(&[u32], usize) -> Result<Vec<f32>>> Predict for PredictFn<F> {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        (self.0)(x, seq_len)
    }
}

/// What the training loop needs from a backend. An engine owns the
/// parameters, the optimizer state and whatever buffers it needs; it is
/// created over one corpus, so a batch is just its window start rows.
pub trait Engine {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// The trainer calls this at the start of an epoch (and when resuming in
    /// the middle of one) with the epoch's window order; the batches that
    /// follow are consecutive slices of `order` from `position`. A device
    /// engine uploads the order here once instead of every batch's starts.
    /// Engines that have nothing to upload ignore it.
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        let _ = (order, position);
        Ok(())
    }
    /// One RMSprop step on the windows starting at `starts`; returns their mean loss.
    fn train_batch(&mut self, starts: &[u32]) -> Result<f32>;
    /// [`train_batch`](Self::train_batch) without waiting for its loss:
    /// `Some(loss)` when the engine computed it at once (the default, which
    /// calls `train_batch`), `None` when the loss is kept for
    /// [`collect_losses`](Self::collect_losses). A device engine queues the
    /// step and its loss stays on the device, so a step costs no host wait.
    fn queue_train_batch(&mut self, starts: &[u32]) -> Result<Option<f32>> {
        self.train_batch(starts).map(Some)
    }
    /// The losses of the steps [`queue_train_batch`](Self::queue_train_batch)
    /// answered `None` to since the last call, oldest first (one host round
    /// trip on a device engine); the default has none.
    fn collect_losses(&mut self) -> Result<Vec<f32>> {
        Ok(Vec::new())
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
    /// The notebook's sampling loop: `length` new class indices after
    /// `seed_indices` for each strategy, windows of at most `maxlen`, draw k
    /// of sequence j from Philox `(seed, Sample, stream + j, k)` (see
    /// [`IndexGenerator::generate`]). The default runs that loop over
    /// [`predict`](Self::predict); a GPU engine runs it in one launch.
    fn generate(
        &mut self,
        seed_indices: &[u32],
        maxlen: usize,
        length: usize,
        strategies: &[Strategy],
        seed: u64,
        stream: u32,
    ) -> Result<Vec<Vec<u32>>> {
        let v = self.params()?.vocab;
        generate_by_predict_with(
            |x, seq_len| self.predict(x, seq_len),
            v,
            seed_indices,
            maxlen,
            length,
            strategies,
            seed,
            stream,
        )
    }
}

/// The sampling loop of [`Engine::generate`] over any prediction function
/// (`x` = [B, seq_len] class indices -> [B, V] probabilities), one call per
/// character, for a model of `vocab` symbols: what the default `generate`
/// does, and what a device falls back to when its one-launch kernel does
/// not fit.
#[allow(clippy::too_many_arguments)]
pub fn generate_by_predict_with(
    predict: impl FnMut(&[u32], usize) -> Result<Vec<f32>>,
    vocab: usize,
    seed_indices: &[u32],
    maxlen: usize,
    length: usize,
    strategies: &[Strategy],
    seed: u64,
    stream: u32,
) -> Result<Vec<Vec<u32>>> {
    IndexGenerator::new(PredictFn(predict), vocab, maxlen).generate(
        seed_indices,
        length,
        strategies,
        seed,
        stream,
    )
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
