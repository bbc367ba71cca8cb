//! charlstm-cuda: a character-level LSTM language model (Keras' *Deep Learning
//! with Python* §8.1) trained on hand-written CUDA kernels, with a CPU
//! reference implementation that checks them.
//!
//! Three backends run the same job: the CPU reference (the specification),
//! the CUDA kernels on an NVIDIA GPU ([`Backend::Cuda`], driver loaded at run
//! time), and the same kernels' PTX on the CPU in a checking simulator
//! ([`sim`], [`Backend::Sim`]). `build.rs` compiles the kernels when nvcc
//! is found and otherwise embeds the ones committed in `kernels/prebuilt/`,
//! so every build has all three; a GPU machine needs only its driver.
//!
//! There are three ways to use it, and an op to build on.
//!
//! # From the command line
//!
//! The `charlstm-cuda` binary (feature `cli`, on by default; `cargo install
//! charlstm-cuda`, or `cargo run --release --` in a checkout) trains the
//! notebook's job and samples from the result:
//!
//! ```text
//! charlstm-cuda train --out runs/n --epochs 60 --device auto
//! charlstm-cuda generate --checkpoint runs/n/last.safetensors \
//!     --seed-text "the will to power" --temperature 0.5 --length 400
//! ```
//!
//! Without `--corpus FILE`, `train` uses the built-in Nietzsche text. Every
//! epoch writes a checkpoint, `metrics.jsonl` and a loss chart under
//! `--out`; `--resume` continues a run. Other subcommands: `prepare`,
//! `eval`, `selftest` (every kernel against the CPU reference), `bench`,
//! `report`, `export` / `import` (Keras, PyTorch); each `--help` ends with
//! examples.
//!
//! # Benchmarks against the CPU reference
//!
//! In a checkout, `cargo bench --bench cpu` times the CPU reference at the
//! Keras job's shapes (a training step, the forward loss, prediction and the
//! after-epoch generation) with criterion; `cargo bench --bench compare`
//! runs a training step, an epoch slice and generation on the CPU reference
//! and on the CUDA backend side by side (the CUDA row says why it is missing
//! on a machine without a GPU). [`bench`](mod@bench) is the library side of both.
//!
//! # As a library
//!
//! Train with [`Trainer::builder`], watch and steer the run with an
//! [`Observer`] (return [`Control::Stop`] to end it early), keep the
//! result as a [`Model`] to predict and generate, save it as a checkpoint,
//! or hand it to Keras or PyTorch with [`interop`]:
//!
//! ```
//! use charlstm_cuda::{Backend, Hyper, Model, OneHotCorpus, Silent, Strategy, Trainer};
//!
//! let text = "to be or not to be, that is the question. ".repeat(30);
//! let corpus = OneHotCorpus::from_text(&text, true)?;
//! let mut trainer = Trainer::builder(&corpus)
//!     .hyper(Hyper { maxlen: 12, hidden: 16, batch: 64, ..Hyper::default() })
//!     .epochs(1)
//!     .steps_per_epoch(3)
//!     .backend(Backend::Cpu)
//!     .build()?;
//! trainer.run(&mut Silent)?;
//! let model: Model = trainer.model()?;
//! let next = model.predict(&["to be or no"])?;
//! let text = model.generate("to be", 40, Strategy::Temperature(0.5), 1)?;
//! # assert_eq!(next[0].len(), corpus.vocab().len());
//! # assert_eq!(text.chars().count(), 40);
//! # Ok::<(), charlstm_cuda::Error>(())
//! ```
//!
//! `examples/train_and_generate.rs` is the same with a progress callback.
//! The library never prints: everything it has to say arrives as events,
//! return values or errors.
//!
//! # An LSTM op on your own tensors
//!
//! [`ops::Lstm`] runs forward and backward of a stack of LSTM layers on
//! the caller's slices (dense or class-index input, initial states, a
//! gradient at every step, dropout between layers), for a crate that brings
//! its own data, loss and optimizer; `examples/lstm_op.rs` trains a small
//! model that way. On a GPU, [`ops::LstmCuda`] runs it on the caller's
//! cudarc stream and `CudaSlice`s, without copies; the cudarc it is built
//! against is re-exported as [`cudarc`], so a caller names the very types
//! it takes (`charlstm_cuda::cudarc::driver::CudaSlice`) whatever cudarc
//! version its own manifest asks for.
//!
//! # Cargo features
//!
//! - `cli` (default): the `charlstm-cuda` binary and its dependencies
//!   (clap, indicatif, ctrlc). A library user can turn it off:
//!   `default-features = false`.
//! - `test-kernels`: the simulator's own test kernels, for the crate's tests.
//!
//! Without `cli`, the library still trains on every backend, generates,
//! and reads and writes checkpoints and the Keras / PyTorch formats; the
//! Keras example's corpus is always built in ([`corpus::embedded`]).

#![warn(missing_docs)]

pub mod bench;
pub mod corpus;
pub mod cpu;
pub mod device;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod inference;
pub mod interop;
pub mod io;
pub mod model;
pub mod ops;
pub mod report;
pub mod rng;
pub mod rundir;
pub mod sample;
pub mod sim;
pub mod stateful;
pub mod train;

pub use corpus::{OneHotCorpus, Streams, Vocab, Windows};
/// The cudarc this crate is built against: the types [`ops::LstmCuda`] and
/// [`gpu::CudaDevice::on_stream`] take (`Arc<CudaStream>`, `CudaSlice<f32>`).
pub use cudarc;
pub use device::Device;
pub use engine::{Backend, Engine, LstmPath, StreamBatch};
pub use error::{Error, Result};
pub use inference::Model;
pub use interop::Format;
pub use model::{Checkpoint, Grads, Hyper, Params};
pub use rundir::EpochRow;
pub use sample::{GenMode, Generator, Strategy};
pub use train::{
    BatchEvent, Control, Observer, RunSummary, Silent, TrainConfig, TrainMode, Trainer,
    TrainerBuilder,
};
