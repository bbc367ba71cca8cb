//! The training loop: epochs, shuffling, callbacks, checkpoints and metrics.

mod builder;
mod deferred;
mod files;
mod guard;
mod observer;
mod trainer;

pub use builder::TrainerBuilder;
pub use deferred::LOSS_READBACK_EVERY;
pub use guard::{Divergence, DivergenceGuard, OnDivergence};
pub use observer::{BatchEvent, Control, EpochEvent, Observer, RollbackEvent, Sample, Silent};
pub use trainer::{
    EnginePredictor, LAST_CHECKPOINT, METRICS_FILE, RunSummary, TrainConfig, Trainer,
    epoch_checkpoint_name, sample_stream,
};
