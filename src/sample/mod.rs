//! Sampling: the Philox counter-based RNG, temperature re-weighting and
//! strategies, and the window-sliding [`Generator`].
//!
//! Every random number of generation comes from
//! `Philox::uniform_f32(Purpose::Sample, stream + j, k)` (sequence `j`,
//! character `k`), and the draw is a pure function of the probabilities and
//! that number, so the GPU generator can reproduce the CPU's output.

mod generator;
mod philox;
mod strategy;

pub use generator::{Generator, IndexGenerator, Predict, check_generate_args, random_seed_text};
pub use philox::{Philox, Purpose, RngStream};
pub use strategy::{Strategy, draw, reweight};
