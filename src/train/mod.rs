//! The training loop: epochs, shuffling, callbacks, checkpoints and metrics.
