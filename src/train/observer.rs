//! Callbacks: how the caller (the CLI, another crate) watches and steers a run.
//! The library never prints; everything it would say arrives here.

use crate::rundir::EpochRow;

/// What an observer wants the loop to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Finish now: after a batch, a checkpoint of the partial epoch is written.
    Stop,
}

/// Sent after every batch. `#[non_exhaustive]`: fields may be added, so
/// another crate reads one but does not build one:
///
/// ```compile_fail
/// let e = charlstm_cuda::BatchEvent {
///     epoch: 1,
///     batch: 1,
///     batches: 1,
///     loss: 0.0,
///     running_loss: 0.0,
///     samples_per_s: 0.0,
/// };
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BatchEvent {
    /// Epoch in progress, 1-based.
    pub epoch: usize,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// This batch's mean loss.
    pub loss: f32,
    /// Running mean of the epoch so far, as Keras' progress bar shows it.
    pub running_loss: f64,
    /// Windows processed per second in this epoch so far.
    pub samples_per_s: f64,
}

/// Sent when the divergence guard rolled the run back. `#[non_exhaustive]`:
/// fields may be added.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct RollbackEvent {
    /// What diverged.
    pub cause: super::guard::Divergence,
    /// The epoch whose end state was restored (0: the start of the run).
    pub to_epoch: usize,
    /// The learning rate from now on (halved).
    pub lr: f32,
    /// Rollbacks so far in this run.
    pub rollbacks: usize,
}

/// Sent while the after-epoch samples are generated: once before the first
/// character, then as characters arrive (after every one on the CPU, once
/// per launch on a device).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SampleEvent {
    /// The epoch just trained (and saved), 1-based.
    pub epoch: usize,
    /// Characters generated so far, per sample.
    pub done: usize,
    /// Characters asked for, per sample (`gen_length`).
    pub length: usize,
}

/// Receives the events of a run. Every method has a do-nothing default.
pub trait Observer {
    /// After every batch.
    fn on_batch(&mut self, _event: &BatchEvent) -> Control {
        Control::Continue
    }
    /// After every epoch, with the row appended to `metrics.jsonl`.
    fn on_epoch(&mut self, _event: &EpochRow) -> Control {
        Control::Continue
    }
    /// While the after-epoch samples are generated. `Control::Stop` ends
    /// the sampling there and then the run, as a stop from
    /// [`on_epoch`](Self::on_epoch) does: the epoch is already trained and
    /// saved, and its row keeps the characters generated so far.
    fn on_sample(&mut self, _event: &SampleEvent) -> Control {
        Control::Continue
    }
    /// After the divergence guard restored the best epoch.
    fn on_rollback(&mut self, _event: &RollbackEvent) {}
}

/// An observer that watches nothing.
pub struct Silent;
impl Observer for Silent {}
