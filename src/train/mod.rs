//! The training loop: epochs, shuffling, callbacks, checkpoints and metrics.

mod builder;
mod files;
mod guard;
mod loss_queue;
mod observer;
mod trainer;

pub use builder::TrainerBuilder;
pub use guard::{Divergence, DivergenceGuard, OnDivergence};
pub use loss_queue::LOSS_READBACK_EVERY;
pub use observer::{BatchEvent, Control, EpochEvent, Observer, RollbackEvent, Sample, Silent};
pub use trainer::{
    EnginePredictor, LAST_CHECKPOINT, METRICS_FILE, RunSummary, TrainConfig, Trainer,
    epoch_checkpoint_name, sample_stream,
};
