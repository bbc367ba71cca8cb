//! Stateful generation on the CPU (`--gen-mode stateful`, char-rnn's
//! `sample.lua`): the LSTM runs once over the seed from a zero state, then
//! one step per new character, carrying (h, c); the dense head and softmax
//! read h after every step.
//!
//! B = sequences (one per strategy), H = units, V = classes, N = LSTM
//! layers. The state `h`, `c` is [N, B, H] (the layout of
//! [`crate::ops::Lstm`]'s `h_n`/`c_n`, layer-major), the probabilities
//! [B, V] row-major; the head reads the top layer's h.
//!
//! ```text
//! prime:  (h, c) = LSTM(seed, h_0 = c_0 = 0)      T = len(seed), every row the same seed
//! step k: p = softmax(h @ dense_kernel + dense_bias);  x_k = draw(p, Philox(seed, Sample, stream + j, k))
//!         (h, c) = LSTM(x_k, h, c)                 T = 1
//! ```
//!
//! The recurrence is [`crate::ops::Lstm`] (`forward_into`, reusing its
//! buffers), the head the engine's (`cpu::forward::dense_softmax`): no
//! second LSTM cell or softmax to keep in step with the first. The draws
//! are the window generator's (`crate::sample`), so the two modes differ
//! only in the probabilities. Unlike window mode, the whole seed primes the
//! state, not only its last `maxlen` characters; with a seed of exactly
//! `maxlen` characters the first character's probabilities are window
//! mode's.
//!
//! The reference of the device kernel `generate_stateful_f32`
//! (kernels/generate.cu, one launch for all strategies), which draws the
//! same characters from the same Philox numbers (tests/generate_kernel.rs).

use crate::cpu::dense_softmax;
use crate::cpu::packed::PackedB;
use crate::error::Result;
use crate::model::Params;
use crate::ops::{LayerWeights, Lstm, LstmInput, LstmOutput, Mode};
use crate::sample::{
    GenerateRequest, Philox, Progress, check_generate_args, check_length, draw_next,
};

/// The model and the carried state of B sequences.
pub struct StatefulModel<'p> {
    params: &'p Params<f32>,
    lstm: Lstm,
    /// Every layer's recurrent_kernel packed once (`cpu::packed`): a step
    /// of B = 4 rows costs less than packing it did on every call.
    packed: Vec<Vec<f32>>,
    batch: usize,
    out: LstmOutput<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    probs: Vec<f32>,
}

impl<'p> StatefulModel<'p> {
    /// B = `batch` sequences over `params`, from a zero state. Single
    /// threaded: at B = 4 one step is too small to share.
    pub fn new(params: &'p Params<f32>, batch: usize) -> Result<Self> {
        let lstm = Lstm::new(params.layers, params.vocab, params.hidden)?.with_threads(1);
        let state = params.layers * batch * params.hidden;
        let packed = (0..params.layers)
            .map(|l| {
                let mut store = Vec::new();
                let rk = params.lstm_weights(l).recurrent_kernel;
                PackedB::recurrent(rk, params.hidden, &mut store);
                store
            })
            .collect();
        Ok(StatefulModel {
            params,
            lstm,
            packed,
            batch,
            out: LstmOutput::new(),
            h: vec![0.0; state],
            c: vec![0.0; state],
            probs: vec![0.0; batch * params.vocab],
        })
    }

    fn weights(&self) -> Vec<LayerWeights<'p, f32>> {
        let p = self.params;
        (0..p.layers).map(|l| p.lstm_weights(l)).collect()
    }

    /// Runs every sequence over `seed` from a zero state; returns the
    /// next-character probabilities [B, V].
    pub fn prime(&mut self, seed: &[u32]) -> Result<&[f32]> {
        let b = self.batch;
        // Time-major [T, B]: every row reads the same seed.
        let x: Vec<u32> = seed
            .iter()
            .flat_map(|&ch| std::iter::repeat_n(ch, b))
            .collect();
        self.run(&x, seed.len(), false)
    }

    /// One step from the carried state: sequence j reads `next[j]`;
    /// returns the probabilities [B, V] of the character after it.
    pub fn step(&mut self, next: &[u32]) -> Result<&[f32]> {
        self.run(next, 1, true)
    }

    /// The carried hidden state [N, B, H].
    pub fn h(&self) -> &[f32] {
        &self.h
    }

    fn run(&mut self, x: &[u32], t: usize, carried: bool) -> Result<&[f32]> {
        let weights = self.weights();
        let input = LstmInput::classes(x, t, self.batch);
        let (h0, c0) = match carried {
            true => (Some(&self.h[..]), Some(&self.c[..])),
            false => (None, None),
        };
        let packed: Vec<PackedB<'_, f32>> = (0..self.params.layers)
            .map(|l| {
                let rk = self.params.lstm_weights(l).recurrent_kernel;
                PackedB::recurrent_prepacked(rk, self.params.hidden, &self.packed[l])
            })
            .collect();
        let (state, mode) = ((h0, c0), Mode::Eval);
        self.lstm
            .forward_packed(&weights, Some(&packed), input, state, mode, &mut self.out)?;
        self.h.copy_from_slice(self.out.h_n());
        self.c.copy_from_slice(self.out.c_n());
        let top = (self.params.layers - 1) * self.batch * self.params.hidden;
        dense_softmax(
            self.params,
            &self.h[top..],
            self.batch,
            &mut self.probs,
            |_, _, _| {},
        );
        Ok(&self.probs)
    }
}

/// `req` generated in stateful mode: the whole of `req.seed_indices` primes
/// the state (`req.maxlen` is only checked), then one step per character;
/// draw k of sequence j is Philox `(seed, Sample, stream + j, k)`, as in
/// window mode. `progress` sees the sequences after every character and
/// may stop them. The same argument checks and errors as
/// [`crate::sample::IndexGenerator::generate`].
pub fn generate_stateful(
    params: &Params<f32>,
    req: &GenerateRequest,
    progress: &mut Progress<'_>,
) -> Result<Vec<Vec<u32>>> {
    let (v, b) = (params.vocab, req.strategies.len());
    if !check_stateful(v, req)? {
        return Ok(vec![Vec::new(); b]);
    }
    let mut model = StatefulModel::new(params, b)?;
    run_stateful(&mut model, v, req, progress)
}

/// Checks `req` for a model of `vocab` classes as [`generate_stateful`]
/// does, before a caller builds its [`Stepper`]; false when there is
/// nothing to draw (no characters, or no strategies).
pub fn check_stateful(vocab: usize, req: &GenerateRequest) -> Result<bool> {
    check_generate_args(vocab, req.maxlen, req.seed_indices, req.strategies)?;
    check_length("length", req.length)?;
    Ok(req.length > 0 && !req.strategies.is_empty())
}

/// What stateful generation needs of a model: the probabilities [B, V]
/// after priming B sequences with the seed from a zero state, then after
/// each step of one character per sequence from the carried state.
pub trait Stepper {
    /// Runs every sequence over `seed` from a zero state.
    fn prime(&mut self, seed: &[u32]) -> Result<&[f32]>;
    /// One step: sequence j reads `next[j]`.
    fn step(&mut self, next: &[u32]) -> Result<&[f32]>;
}

impl Stepper for StatefulModel<'_> {
    fn prime(&mut self, seed: &[u32]) -> Result<&[f32]> {
        StatefulModel::prime(self, seed)
    }
    fn step(&mut self, next: &[u32]) -> Result<&[f32]> {
        StatefulModel::step(self, next)
    }
}

/// The stateful sampling loop over any [`Stepper`] of B =
/// `req.strategies.len()` sequences and `vocab` classes (the CPU model, or
/// a device stack's): the draws are [`generate_stateful`]'s, so two models
/// with the same probabilities draw the same characters. `req` is checked
/// by the caller.
pub fn run_stateful(
    model: &mut dyn Stepper,
    vocab: usize,
    req: &GenerateRequest,
    progress: &mut Progress<'_>,
) -> Result<Vec<Vec<u32>>> {
    let b = req.strategies.len();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    if req.length == 0 || b == 0 {
        return Ok(out);
    }
    let philox = Philox::new(req.seed);
    let mut next = vec![0u32; b];
    let mut probs = model.prime(req.seed_indices)?;
    for k in 0..req.length {
        draw_next(
            probs,
            vocab,
            req.strategies,
            &philox,
            req.stream,
            k,
            &mut out,
        )?;
        if progress(&out).is_break() || k + 1 == req.length {
            break;
        }
        for (n, seq) in next.iter_mut().zip(&out) {
            *n = *seq.last().expect("a character was just drawn");
        }
        probs = model.step(&next)?;
    }
    Ok(out)
}
