//! The training loop: epochs, shuffling, callbacks, checkpoints and metrics.

mod builder;
mod guard;
mod loss_queue;
mod observer;
mod trainer;

pub use crate::model::{DEFAULT_SEQ_LEN, TrainMode};
pub use builder::TrainerBuilder;
pub use guard::{Divergence, DivergenceGuard, MIN_LOSS_JUMP, OnDivergence};
pub use loss_queue::LOSS_READBACK_EVERY;
pub use observer::{BatchEvent, Control, Observer, RollbackEvent, SampleEvent, Silent};
pub use trainer::{EarlyStop, EnginePredictor, RunSummary, TrainConfig, Trainer, sample_stream};
