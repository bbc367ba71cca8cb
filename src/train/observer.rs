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

/// Sent after every batch.
#[derive(Clone, Debug)]
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

/// Sent when the divergence guard rolled the run back.
#[derive(Clone, Debug, serde::Serialize)]
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
    /// After the divergence guard restored the best epoch.
    fn on_rollback(&mut self, _event: &RollbackEvent) {}
}

/// An observer that watches nothing.
pub struct Silent;
impl Observer for Silent {}
