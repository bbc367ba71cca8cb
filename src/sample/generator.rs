//! The notebook's generation loop: slide a `maxlen` window over the text,
//! predict, draw, append.
//!
//! ```python
//! generated_text = text[start_index: start_index + maxlen]
//! for i in range(400):
//!     sampled = one_hot(generated_text)          # [1, maxlen, V]
//!     preds = model.predict(sampled)[0]
//!     next_char = chars[sample(preds, temperature)]
//!     generated_text += next_char
//!     generated_text = generated_text[1:]
//! ```
//!
//! Differences, all deliberate:
//! - every strategy (the notebook's four temperatures, one after the other)
//!   is one sequence of a single batch, so each step is one `predict` call of
//!   batch B = number of strategies: the shape the GPU generator runs;
//! - the window is the last `min(len, maxlen)` characters, so a seed shorter
//!   than `maxlen` works (the window grows to `maxlen`, then slides) and a
//!   longer one is cut to its last `maxlen` characters; the notebook's seed is
//!   always exactly `maxlen` long, where the two agree;
//! - the draw of character `k` of sequence `j` uses the uniform
//!   `Philox::new(seed).uniform_f32(Purpose::Sample, stream + j, k)`
//!   (`stream + j` wraps around in u32, as it does on the device), so a run
//!   is reproducible from `(seed, stream)` alone and the GPU can draw the
//!   same characters without sharing RNG state (see [`super::draw`]).
//!
//! Memory is bounded by the window: each sequence keeps a ring of its last
//! `maxlen` indices, plus its output.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use crate::corpus::Vocab;
use crate::error::{Error, Result};

use super::{Philox, Purpose, RngStream, Strategy, draw};

/// The most characters one generation request draws per sequence:
/// `generate --length`, `train --gen-length` and every generator (CPU or
/// device) refuse more. A bound for time and memory, not for the kernel
/// (whose u32 positions would allow up to 2^32 - 1 - maxlen): a million
/// characters is 1.7 times the Keras example's whole corpus; at the speeds
/// measured for the notebook's four samples at H = 128 (4 x 400 characters
/// in 15-40 ms on an H200, 4 x 20,000 in 21 s on a CPU) it takes one to two
/// minutes on the GPU and about 18 on the CPU; and each sequence is held in
/// memory (4 bytes a character, on the device and the host) until it is
/// returned. Longer
/// texts are made by continuing from the end of the last one (`--seed-text`).
pub const MAX_LENGTH: usize = 1_000_000;

/// How a generator feeds the model (`--gen-mode`).
///
/// - `Window` (the default, the notebook's way): for every new character
///   the LSTM runs from a zero state over the last `maxlen` characters
///   ([`IndexGenerator`]); `maxlen` recurrent steps a character.
/// - `Stateful` (char-rnn's way): the LSTM runs once over the whole seed
///   from a zero state, then one step per new character, carrying (h, c)
///   (`crate::stateful::StatefulModel`); one recurrent step a character. The
///   draws are the same Philox numbers as in window mode, so only the
///   probabilities differ; with a seed of exactly `maxlen` characters the
///   first character's are the same. On every backend: on a device one
///   launch of `generate_stateful_f32` (kernels/generate.cu).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GenMode {
    /// Re-run the last `maxlen` characters for every character.
    #[default]
    Window,
    /// Prime on the seed once, then one step per character.
    Stateful,
}

impl GenMode {
    /// The name `--gen-mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            GenMode::Window => "window",
            GenMode::Stateful => "stateful",
        }
    }
}

impl std::fmt::Display for GenMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GenMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "window" => Ok(GenMode::Window),
            "stateful" => Ok(GenMode::Stateful),
            other => Err(Error::InvalidArgument {
                name: "gen_mode",
                what: format!("{other:?} (expected window or stateful)"),
            }),
        }
    }
}

/// Refuses a generation length above [`MAX_LENGTH`]; `name` is the
/// parameter (or flag) that gave it.
pub fn check_length(name: &'static str, length: usize) -> Result<()> {
    if length > MAX_LENGTH {
        return Err(Error::TooLong {
            name,
            value: length,
            max: MAX_LENGTH,
        });
    }
    Ok(())
}

/// What a generator reports as it goes: the sequences so far, all of one
/// length, after every character on the CPU (one call per step of the
/// loop) and after every launch on a device (one call for the whole
/// request: the kernel draws character k from Philox counter k, so it
/// cannot continue a request that was cut). `ControlFlow::Break` ends the
/// generation there; the generator then returns the sequences as they are,
/// shorter than asked.
pub type Progress<'p> = dyn FnMut(&[Vec<u32>]) -> ControlFlow<()> + 'p;

/// A [`Progress`] that never stops and watches nothing.
pub fn no_progress(_: &[Vec<u32>]) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// Anything that maps a batch of sequences to next-character probabilities.
pub trait Predict {
    /// `x` is [B, T] class indices, row-major, `T = seq_len` (so
    /// `B = x.len() / seq_len`); returns [B, V] probabilities, row-major.
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>>;
}

/// Lets a caller keep ownership of its model: `Generator::new(&mut model, ..)`.
impl<P: Predict + ?Sized> Predict for &mut P {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        (**self).predict(x, seq_len)
    }
}

/// The generation loop on class indices: no vocabulary needed, the form the
/// GPU generator is compared against. [`Generator`] wraps it with text.
pub struct IndexGenerator<P: Predict> {
    predictor: P,
    vocab_size: usize,
    maxlen: usize,
}

impl<P: Predict> IndexGenerator<P> {
    /// A generator over `predictor` for V = `vocab_size` classes and windows
    /// of at most `maxlen` characters.
    pub fn new(predictor: P, vocab_size: usize, maxlen: usize) -> Self {
        IndexGenerator {
            predictor,
            vocab_size,
            maxlen,
        }
    }

    /// The predictor, e.g. to inspect a test double.
    pub fn predictor(&self) -> &P {
        &self.predictor
    }

    /// Gives the predictor back.
    pub fn into_predictor(self) -> P {
        self.predictor
    }

    /// `length` new class indices after `seed_indices` for each strategy, in
    /// the order of `strategies`; see the module doc for the loop and the
    /// random numbers. `length == 0` or no strategies returns at once without
    /// calling the predictor (after validating the arguments).
    ///
    /// Errors: `maxlen == 0`, an invalid temperature, an empty seed, a seed
    /// index `>= V` (all `InvalidArgument`); the predictor's own errors; a
    /// prediction that is not B x V finite, non-negative values with a
    /// positive one in every row (`BadPrediction`).
    pub fn generate(
        &mut self,
        seed_indices: &[u32],
        length: usize,
        strategies: &[Strategy],
        seed: u64,
        stream: u32,
    ) -> Result<Vec<Vec<u32>>> {
        self.generate_with(
            seed_indices,
            length,
            strategies,
            seed,
            stream,
            &mut no_progress,
        )
    }

    /// [`generate`](Self::generate), calling `progress` after every
    /// character (see [`Progress`]): the sequences end early, all at the
    /// same length, when it breaks. A `length` above [`MAX_LENGTH`] is
    /// `Error::TooLong`.
    pub fn generate_with(
        &mut self,
        seed_indices: &[u32],
        length: usize,
        strategies: &[Strategy],
        seed: u64,
        stream: u32,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let (v, maxlen, b) = (self.vocab_size, self.maxlen, strategies.len());
        check_generate_args(v, maxlen, seed_indices, strategies)?;
        check_length("length", length)?;

        // Output grows with the characters drawn, not reserved for
        // `length`: a run stopped early holds only what it made.
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        if length == 0 || b == 0 {
            return Ok(out);
        }
        let tail = &seed_indices[seed_indices.len().saturating_sub(maxlen)..];
        let mut windows: Vec<VecDeque<u32>> = (0..b)
            .map(|_| {
                let mut w = VecDeque::with_capacity(maxlen);
                w.extend(tail.iter().copied());
                w
            })
            .collect();
        let philox = Philox::new(seed);
        let mut x = Vec::with_capacity(b * maxlen);

        for k in 0..length {
            // Every sequence has grown by the same number of characters, so
            // all windows have the same length T.
            let seq_len = windows[0].len();
            x.clear();
            for w in &windows {
                x.extend(w.iter().copied());
            }
            let probs = self.predictor.predict(&x, seq_len)?;
            draw_next(&probs, v, strategies, &philox, stream, k, &mut out)?;
            for (w, seq) in windows.iter_mut().zip(&out) {
                // The notebook's `generated_text = generated_text[1:]`, once
                // the window is full.
                if w.len() == maxlen {
                    w.pop_front();
                }
                w.extend(seq.last());
            }
            if progress(&out).is_break() {
                break;
            }
        }
        Ok(out)
    }
}

/// Generates text from a seed, one sequence per strategy, all in one batch.
pub struct Generator<'a, P: Predict> {
    inner: IndexGenerator<P>,
    vocab: &'a Vocab,
}

impl<'a, P: Predict> Generator<'a, P> {
    /// A generator over `predictor`, windows of `maxlen` characters.
    pub fn new(predictor: P, vocab: &'a Vocab, maxlen: usize) -> Self {
        Generator {
            inner: IndexGenerator::new(predictor, vocab.len(), maxlen),
            vocab,
        }
    }

    /// The vocabulary characters are encoded with.
    pub fn vocab(&self) -> &'a Vocab {
        self.vocab
    }

    /// The predictor, e.g. to inspect a test double.
    pub fn predictor(&self) -> &P {
        self.inner.predictor()
    }

    /// Gives the predictor back.
    pub fn into_predictor(self) -> P {
        self.inner.into_predictor()
    }

    /// `length` new characters after `seed_text` for each strategy (only the
    /// new characters, not the seed); draws come from Philox
    /// `(seed, Purpose::Sample, stream + strategy index)`, index = position of
    /// the new character. See [`IndexGenerator::generate`].
    ///
    /// `seed_text` must already be normalised like the corpus (lower-cased
    /// when the model was trained lower-cased): a character outside the
    /// vocabulary is `Error::UnknownChar`, an empty seed `InvalidArgument`.
    pub fn generate(
        &mut self,
        seed_text: &str,
        length: usize,
        strategies: &[Strategy],
        seed: u64,
        stream: u32,
    ) -> Result<Vec<String>> {
        let seed_indices = encode_seed(self.vocab, seed_text)?;
        let out = self
            .inner
            .generate(&seed_indices, length, strategies, seed, stream)?;
        Ok(decode(self.vocab, &out))
    }
}

/// The class indices of a (normalised) seed text: an empty seed is
/// `InvalidArgument`, a character outside `vocab` `Error::UnknownChar`.
pub fn encode_seed(vocab: &Vocab, seed_text: &str) -> Result<Vec<u32>> {
    if seed_text.is_empty() {
        return Err(empty_seed());
    }
    seed_text
        .chars()
        .map(|ch| vocab.index_of(ch).ok_or(Error::UnknownChar { ch }))
        .collect()
}

/// Generated class indices as text, one string per sequence.
pub fn decode(vocab: &Vocab, sequences: &[Vec<u32>]) -> Vec<String> {
    sequences
        .iter()
        .map(|seq| seq.iter().map(|&i| vocab.char_at(i)).collect())
        .collect()
}

/// The start (a character offset) of the seed text for the samples after
/// epoch `epoch`: the notebook's `random.randint(0, len(text) - maxlen - 1)`,
/// i.e. uniform over `0..=corpus_len - maxlen - 1`, drawn from
/// `RngStream::new(seed, Purpose::SeedText, epoch)`. The seed text is the
/// characters `[start, start + maxlen)`.
pub fn random_seed_text(corpus_len: usize, maxlen: usize, seed: u64, epoch: u32) -> Result<usize> {
    if maxlen == 0 {
        return Err(Error::InvalidArgument {
            name: "maxlen",
            what: "0 (must be at least 1)".into(),
        });
    }
    if corpus_len <= maxlen {
        return Err(Error::TextTooShort {
            chars: corpus_len,
            needed: maxlen.saturating_add(1),
        });
    }
    let choices = (corpus_len - maxlen) as u64;
    Ok(RngStream::new(seed, Purpose::SeedText, epoch).below(choices) as usize)
}

/// A prediction function (`x` = [B, seq_len] class indices -> [B, V]
/// probabilities) as a generator's predictor.
pub struct PredictFn<F>(pub F);

impl<F: FnMut(&[u32], usize) -> Result<Vec<f32>>> Predict for PredictFn<F> {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        (self.0)(x, seq_len)
    }
}

/// One generation request: `length` new class indices after
/// `seed_indices` for each strategy, draw k of sequence j from Philox
/// `(seed, Sample, stream + j, k)`, the model fed as `mode` says (windows of
/// at most `maxlen`, [`IndexGenerator::generate`], or the whole seed once
/// and one step a character, `crate::stateful`). What every generator
/// takes: the engines, the device kernel and `device::generate`; each
/// honours `mode`, so the mode is chosen once, where the request is made.
#[derive(Clone, Copy, Debug)]
pub struct GenerateRequest<'a> {
    /// The seed text's class indices (window mode uses the last `maxlen`,
    /// stateful mode all of them).
    pub seed_indices: &'a [u32],
    /// Longest window the model sees.
    pub maxlen: usize,
    /// New indices per sequence.
    pub length: usize,
    /// One sequence per strategy.
    pub strategies: &'a [Strategy],
    /// Philox key.
    pub seed: u64,
    /// Philox stream of sequence 0.
    pub stream: u32,
    /// How the model is fed: windows (the notebook) or a carried state.
    pub mode: GenMode,
}

impl GenerateRequest<'_> {
    /// The request in window mode run by the reference loop over
    /// `predictor`, a model of `vocab` symbols (`mode` is not read: a
    /// predictor has no state to carry).
    pub fn run_on<P: Predict>(&self, predictor: P, vocab: usize) -> Result<Vec<Vec<u32>>> {
        self.run_on_with(predictor, vocab, &mut no_progress)
    }

    /// [`run_on`](Self::run_on), reporting each character to `progress`,
    /// which may stop it (see [`Progress`]).
    pub fn run_on_with<P: Predict>(
        &self,
        predictor: P,
        vocab: usize,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        IndexGenerator::new(predictor, vocab, self.maxlen).generate_with(
            self.seed_indices,
            self.length,
            self.strategies,
            self.seed,
            self.stream,
            progress,
        )
    }
}

/// The argument checks of [`IndexGenerator::generate`], shared with the GPU
/// generator (`gpu::generate`) so that both reject the same input with the
/// same error: `maxlen == 0`, an invalid temperature, an empty seed, a seed
/// index `>= vocab_size`.
pub fn check_generate_args(
    vocab_size: usize,
    maxlen: usize,
    seed_indices: &[u32],
    strategies: &[Strategy],
) -> Result<()> {
    if maxlen == 0 {
        return Err(Error::InvalidArgument {
            name: "maxlen",
            what: "0 (must be at least 1)".into(),
        });
    }
    for s in strategies {
        s.validate()?;
    }
    if seed_indices.is_empty() {
        return Err(empty_seed());
    }
    if let Some(&bad) = seed_indices.iter().find(|&&i| i as usize >= vocab_size) {
        return Err(Error::InvalidArgument {
            name: "seed_text",
            what: format!("class index {bad} is outside the vocabulary of {vocab_size} characters"),
        });
    }
    Ok(())
}

fn empty_seed() -> Error {
    Error::InvalidArgument {
        name: "seed_text",
        what: "it is empty (the model needs at least one character to continue)".into(),
    }
}

/// Character `k` of every sequence, the same in every generation mode:
/// checks `probs` [B, V] (B = `strategies.len()`), then draws sequence
/// j's from its row with the uniform Philox `(Sample, stream + j, k)` and
/// appends it to `out[j]`.
pub(crate) fn draw_next(
    probs: &[f32],
    v: usize,
    strategies: &[Strategy],
    philox: &Philox,
    stream: u32,
    k: usize,
    out: &mut [Vec<u32>],
) -> Result<()> {
    check_prediction(probs, strategies.len(), v, k)?;
    for (j, (row, &strategy)) in probs.chunks_exact(v).zip(strategies).enumerate() {
        let u = philox.uniform_f32(Purpose::Sample, stream.wrapping_add(j as u32), k as u64);
        out[j].push(draw(row, strategy, u) as u32);
    }
    Ok(())
}

/// Checks one step's prediction: B x V values, finite, non-negative, and a
/// positive value in every row (else there is nothing to draw from).
fn check_prediction(probs: &[f32], b: usize, v: usize, step: usize) -> Result<()> {
    let bad = |what: String| {
        Err(Error::BadPrediction {
            what: format!("at generated character {step}: {what}"),
        })
    };
    if v == 0 || probs.len() != b * v {
        return bad(format!(
            "expected {b} x {v} = {} probabilities, got {}",
            b * v,
            probs.len()
        ));
    }
    for (j, row) in probs.chunks_exact(v).enumerate() {
        if let Some((i, p)) = row
            .iter()
            .enumerate()
            .find(|(_, p)| !(p.is_finite() && **p >= 0.0))
        {
            return bad(format!("sequence {j}, class {i} has probability {p}"));
        }
        if !row.iter().any(|&p| p > 0.0) {
            return bad(format!(
                "sequence {j} has no class with a positive probability"
            ));
        }
    }
    Ok(())
}
