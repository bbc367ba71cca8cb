//! The notebook's generation loop: slide a `maxlen` window over the text,
//! predict, draw, append.

use crate::corpus::Vocab;
use crate::error::Result;

use super::Strategy;

/// Anything that maps a batch of sequences to next-character probabilities.
pub trait Predict {
    /// `x` is [B, T] class indices; returns [B, V] probabilities.
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>>;
}

/// Generates text from a seed, one sequence per strategy, all in one batch.
pub struct Generator<'a, P: Predict> {
    predictor: P,
    vocab: &'a Vocab,
    maxlen: usize,
}

impl<'a, P: Predict> Generator<'a, P> {
    /// A generator over `predictor`, windows of `maxlen` characters.
    pub fn new(predictor: P, vocab: &'a Vocab, maxlen: usize) -> Self {
        Generator { predictor, vocab, maxlen }
    }

    /// `length` new characters after `seed_text` for each strategy; draws come
    /// from Philox `(seed, Purpose::Sample, stream + strategy index)`.
    pub fn generate(&mut self, seed_text: &str, length: usize, strategies: &[Strategy], seed: u64, stream: u32) -> Result<Vec<String>> {
        let _ = (&mut self.predictor, self.vocab, self.maxlen, seed_text, length, strategies, seed, stream);
        todo!()
    }
}
