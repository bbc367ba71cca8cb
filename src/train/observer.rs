//! Callbacks: how the caller (the CLI, another crate) watches and steers a run.
//! The library never prints; everything it would say arrives here.

use std::path::PathBuf;

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

/// One generated sample.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    /// Sampling temperature.
    pub temperature: f64,
    /// The seed text (one window of the corpus).
    pub seed: String,
    /// The generated characters (without the seed).
    pub text: String,
}

/// Sent after every epoch, once its checkpoint is on disk.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochEvent {
    /// Epoch just completed, 1-based.
    pub epoch: usize,
    /// Epochs planned.
    pub epochs: usize,
    /// Running-mean loss of the epoch.
    pub loss: f64,
    /// Wall time of the epoch's training (sampling excluded).
    pub seconds: f64,
    /// Windows per second.
    pub samples_per_s: f64,
    /// Batches in the epoch.
    pub batches: usize,
    /// Optimizer steps in the whole run so far.
    pub step: u64,
    /// The epoch's checkpoint, when an output directory was given.
    pub checkpoint: Option<PathBuf>,
    /// Seconds spent generating the samples.
    pub sample_seconds: f64,
    /// The after-epoch samples (empty with `gen_length` 0).
    pub samples: Vec<Sample>,
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
    /// After every epoch.
    fn on_epoch(&mut self, _event: &EpochEvent) -> Control {
        Control::Continue
    }
    /// After the divergence guard restored the best epoch.
    fn on_rollback(&mut self, _event: &RollbackEvent) {}
}

/// An observer that watches nothing.
pub struct Silent;
impl Observer for Silent {}
