//! charlstm-cuda: a character-level LSTM language model (Keras' *Deep Learning
//! with Python* §8.1) trained on hand-written CUDA kernels, with a CPU
//! reference implementation that checks them.

pub mod bench;
pub mod corpus;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod io;
pub mod model;
pub mod report;
pub mod sample;
pub mod sim;
pub mod train;

pub use corpus::{OneHotCorpus, Vocab, Windows};
pub use error::{Error, Result};
pub use model::{Checkpoint, Grads, Hyper, Params};
pub use sample::{Generator, Strategy};
