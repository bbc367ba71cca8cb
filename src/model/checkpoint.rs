//! Checkpoints as safetensors files.

use super::{Hyper, Params};

/// Where a run stands, saved so that `--resume` continues it exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
}

/// Everything a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The vocabulary symbols, index order.
    pub vocab: Vec<char>,
    /// Hyper-parameters of the run.
    pub hyper: Hyper,
    /// Model weights.
    pub params: Params<f32>,
    /// RMSprop mean squares.
    pub rmsprop: Params<f32>,
    /// Progress of the run.
    pub state: TrainState,
}
