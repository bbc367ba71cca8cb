//! Sampling: the Philox counter-based RNG, temperature re-weighting and
//! strategies, and the window-sliding [`Generator`].

mod generator;
mod philox;
mod strategy;

pub use generator::{Generator, Predict};
pub use philox::{Philox, RngStream, Purpose};
pub use strategy::{Strategy, draw, reweight};
