//! Sampling: temperature re-weighting and strategies, and the
//! window-sliding [`Generator`]; the Philox counter-based RNG they draw from
//! is `crate::rng` (re-exported here).
//!
//! Every random number of generation comes from
//! `Philox::uniform_f32(Purpose::Sample, stream + j, k)` (sequence `j`,
//! character `k`), and the draw is a pure function of the probabilities and
//! that number, so the GPU generator can reproduce the CPU's output.

mod generator;
mod strategy;

pub use crate::rng::{Philox, Purpose, RngStream};
pub(crate) use generator::draw_next;
pub use generator::{
    GenMode, GenerateRequest, Generator, IndexGenerator, MAX_LENGTH, Predict, PredictFn, Progress,
    check_generate_args, check_length, decode, encode_seed, no_progress, random_seed_text,
};
pub use strategy::{Strategy, draw, reweight};
