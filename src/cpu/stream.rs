//! Stream (truncated-BPTT) training on the CPU (DESIGN §9, char-rnn's
//! training loop): B streams, L steps, a loss at every step, the state
//! carried in from the previous batch.
//!
//! x, y: [L, B] time-major class indices (`x[t * B + b]`, the layout of
//! [`crate::ops::Lstm`]); h0, c0 and the final state: [N, B, H] for a stack
//! of N layers, layer-major ([B, H] for the notebook's one); the top
//! layer's hidden states Y and the head's rows: [L*B, H] and [L*B, V], row
//! k = t*B + b. Dropout between stacked layers is the window path's
//! (`stacked.rs`): masks keyed by `Mode::Train { seed, step }`.
//!
//! ```text
//! Y      = LSTM_N(x; h0, c0)                   the recurrence of ops::Lstm (N layers, gather input,
//!                                              dropout between layers in training)
//! p      = softmax(Y @ dense_kernel + dense_bias)                 all L*B rows
//! loss   = mean over the L*B rows of -log p[y]
//! dlogits = (p - onehot(y)) / (L*B)
//! dY     = dlogits @ dense_kernel^T            [L*B, V] @ [V, H]: a gradient at every step
//! d dense_kernel = Y^T @ dlogits;  d dense_bias = sum of the dlogits rows
//! LSTM backward with dY, no gradient at the final state, h0 and c0 constants
//! ```
//!
//! Truncation: the gradient stops at h0, c0 (the carried state is a
//! constant of this batch) and no later batch's loss flows back into it.
//! The head's softmax is the engine's (`forward::softmax_rows`), the
//! recurrence `ops::Lstm`'s: nothing here is a second copy of the math,
//! only its wiring for a loss at every step. The head runs forward and
//! backward block by block of 128 rows while a block is in cache, its
//! products on dense_kernel packed once ([`PackedB`]); d dense_kernel and
//! d dense_bias are each block's share summed in block order. Blocks are
//! fixed and split across threads whole, so the thread count changes no
//! bit. Every gradient is overwritten.

use super::Scalar;
use super::backward::sum_rows;
use super::forward::softmax_rows;
use super::packed::PackedB;
use super::scalar::View;
use super::workspace::{run_or_spawn, split_range, threads_for};
use crate::corpus::OneHotCorpus;
use crate::engine::StreamBatch;
use crate::error::{Error, Result};
use crate::model::{Grads, Params, Tensor};
use crate::ops::{LayerWeights, Lstm, LstmGrads, LstmInput, LstmOutput, Mode};

/// The buffers of a stream step, kept from one batch to the next (at
/// L = 60, B = 128 the head's rows alone are 7680 x V).
#[derive(Debug)]
pub struct StreamStep<F> {
    out: LstmOutput<F>,
    lstm_grads: LstmGrads<F>,
    probs: Vec<F>,
    row_loss: Vec<F>,
    dy: Vec<F>,
    /// Each head block's d dense_kernel and d dense_bias ([`head_blocks`]).
    ddk_parts: Vec<F>,
    ddb_parts: Vec<F>,
    threads: usize,
    dropout: f64,
    mode: Mode,
}

impl<F: Scalar> Default for StreamStep<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Scalar> StreamStep<F> {
    /// Empty buffers; threads = one per core (as the window path).
    pub fn new() -> Self {
        StreamStep {
            out: LstmOutput::new(),
            lstm_grads: LstmGrads::default(),
            probs: Vec::new(),
            row_loss: Vec::new(),
            dy: Vec::new(),
            ddk_parts: Vec::new(),
            ddb_parts: Vec::new(),
            threads: 0,
            dropout: 0.0,
            mode: Mode::Eval,
        }
    }

    /// Dropout `p` between stacked layers (`Hyper::dropout`), drawn as
    /// `mode` says from the next call on: [`Mode::Train`] with the run's
    /// seed and optimizer step, or [`Mode::Eval`] (no dropout, the default).
    pub fn set_dropout(&mut self, p: f64, mode: Mode) {
        (self.dropout, self.mode) = (p, mode);
    }

    /// Uses at most `threads` threads (0: one per core); no result depends on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The mean loss over the L*B targets of `y` and its gradient with
    /// respect to every parameter, into `grads` (overwritten). `x`, `y`:
    /// [L, B] with B = `batch`; `h0`, `c0`: [N, B, H] (zeros when `None`).
    /// Afterwards [`h_n`](Self::h_n) and [`c_n`](Self::c_n) hold the final state.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grads_into(
        &mut self,
        params: &Params<F>,
        x: &[u32],
        y: &[u32],
        batch: usize,
        h0: Option<&[F]>,
        c0: Option<&[F]>,
        grads: &mut Grads<F>,
    ) -> Result<F> {
        let (v, h) = (params.vocab, params.hidden);
        check_rows(x, y, batch, v)?;
        if grads.layout() != params.layout() {
            return Err(Error::InvalidArgument {
                name: "grads",
                what: format!(
                    "V={} H={} with {} LSTM layer(s), the parameters are V={v} H={h} with {}",
                    grads.vocab, grads.hidden, grads.layers, params.layers
                ),
            });
        }
        let (seq_len, rows) = (x.len() / batch, x.len());
        let lstm = Lstm::new(params.layers, v, h)?
            .with_dropout(self.dropout)?
            .with_threads(self.threads);
        let weights: Vec<LayerWeights<'_, F>> =
            (0..params.layers).map(|l| params.lstm_weights(l)).collect();
        let input = LstmInput::classes(x, seq_len, batch);
        lstm.forward_into(&weights, input, h0, c0, self.mode, &mut self.out)?;

        // The head over every step's hidden state, forward and backward
        // block by block of rows while each block is in cache.
        let blocks = rows.div_ceil(HEAD_ROWS);
        let threads = threads_for(self.threads, rows).min(blocks);
        self.probs.resize(rows * v, F::zero());
        self.row_loss.resize(rows, F::zero());
        self.dy.resize(rows * h, F::zero());
        self.ddk_parts.resize(blocks * h * v, F::zero());
        self.ddb_parts.resize(blocks * v, F::zero());
        let bufs = HeadBuffers {
            probs: &mut self.probs,
            row_loss: &mut self.row_loss,
            dy: &mut self.dy,
            ddk: &mut self.ddk_parts,
            ddb: &mut self.ddb_parts,
        };
        head_blocks(params, self.out.y(), y, bufs, threads);
        let loss = self.row_loss.iter().fold(F::zero(), |a, &l| a + l) / F::of(rows as f64);
        let [.., ddk, ddb] = grads.tensors_mut();
        sum_rows(ddk, &self.ddk_parts);
        sum_rows(ddb, &self.ddb_parts);
        lstm.backward_into(
            &weights,
            &mut self.out,
            &self.dy,
            None,
            None,
            &mut self.lstm_grads,
        )?;
        super::stacked::copy_layer_grads(&self.lstm_grads, grads);
        Ok(loss)
    }

    /// The final hidden state [N, B, H] of the last step.
    pub fn h_n(&self) -> &[F] {
        self.out.h_n()
    }

    /// The final cell state [N, B, H] of the last step.
    pub fn c_n(&self) -> &[F] {
        self.out.c_n()
    }
}

/// [`StreamStep::loss_and_grads_into`] with fresh buffers: the mean loss,
/// the gradients and the final (h, c). For gradient checks (f64) and
/// callers that take one step.
#[allow(clippy::type_complexity)]
pub fn stream_loss_and_grads<F: Scalar>(
    params: &Params<F>,
    x: &[u32],
    y: &[u32],
    batch: usize,
    h0: Option<&[F]>,
    c0: Option<&[F]>,
) -> Result<(F, Grads<F>, Vec<F>, Vec<F>)> {
    let mut step = StreamStep::new();
    let mut grads = params.zeros_like();
    let loss = step.loss_and_grads_into(params, x, y, batch, h0, c0, &mut grads)?;
    Ok((loss, grads, step.h_n().to_vec(), step.c_n().to_vec()))
}

/// `x` and `y` are [L, B] class indices of the vocabulary.
fn check_rows(x: &[u32], y: &[u32], batch: usize, v: usize) -> Result<()> {
    if batch == 0 || x.is_empty() || !x.len().is_multiple_of(batch) || y.len() != x.len() {
        return Err(Error::InvalidArgument {
            name: "stream batch",
            what: format!(
                "{} inputs and {} targets do not form [L, B] with B = {batch} streams (both \
                 must hold L * B class indices, L >= 1)",
                x.len(),
                y.len()
            ),
        });
    }
    if let Some(&bad) = x.iter().chain(y).find(|&&c| c as usize >= v) {
        return Err(Error::InvalidArgument {
            name: "stream batch",
            what: format!("class index {bad} is outside the vocabulary of {v}"),
        });
    }
    Ok(())
}

/// Rows of the head taken at once: a block's hidden states, dlogits and
/// dY (64 KB, 29 KB and 64 KB at H = 128, V = 57) stay in cache from its
/// forward to its gradients. Fixed, so the sums do not depend on threads.
const HEAD_ROWS: usize = 128;

/// What [`head_blocks`] writes: every row's probabilities (then dlogits),
/// loss and dY, and each block's share of d dense_kernel and d dense_bias.
struct HeadBuffers<'a, F> {
    probs: &'a mut [F],
    row_loss: &'a mut [F],
    dy: &'a mut [F],
    ddk: &'a mut [F],
    ddb: &'a mut [F],
}

impl<'a, F> HeadBuffers<'a, F> {
    /// The first `rows` rows (`blocks` blocks) and the rest.
    fn split(self, rows: usize, blocks: usize, (h, v): (usize, usize)) -> (Self, Self) {
        let (p, p_rest) = self.probs.split_at_mut(rows * v);
        let (l, l_rest) = self.row_loss.split_at_mut(rows);
        let (d, d_rest) = self.dy.split_at_mut(rows * h);
        let (k, k_rest) = self.ddk.split_at_mut(blocks * h * v);
        let (b, b_rest) = self.ddb.split_at_mut(blocks * v);
        let mine = HeadBuffers {
            probs: p,
            row_loss: l,
            dy: d,
            ddk: k,
            ddb: b,
        };
        let rest = HeadBuffers {
            probs: p_rest,
            row_loss: l_rest,
            dy: d_rest,
            ddk: k_rest,
            ddb: b_rest,
        };
        (mine, rest)
    }
}

/// The head of every row of `hs` ([n, H]) with targets `y`, block by block
/// of [`HEAD_ROWS`] rows, blocks split across `threads`: the probabilities
/// (`forward::softmax_rows`) and each row's loss -log p[y], then in place
/// dlogits = (p - onehot(y)) / n, dY = dlogits @ dense_kernel^T, and the
/// block's `hs^T @ dlogits` and dlogits column sums (summed over the blocks
/// in order by the caller: d dense_kernel and d dense_bias).
fn head_blocks<F: Scalar>(
    params: &Params<F>,
    hs: &[F],
    y: &[u32],
    bufs: HeadBuffers<'_, F>,
    threads: usize,
) {
    let (h, v, n) = (params.hidden, params.vocab, y.len());
    let blocks = n.div_ceil(HEAD_ROWS);
    let inv = F::one() / F::of(n as f64);
    let dense_kernel = &params[Tensor::DenseKernel];
    // dense_kernel [H, V] and its transpose packed once for every block's
    // products (a general GEMM repacks them per call, and V = 57 columns
    // suit it poorly).
    let (mut store, mut store_t) = (Vec::new(), Vec::new());
    let wd = PackedB::new(View::new(dense_kernel, v, 1), (h, v), &mut store);
    let wd_t = PackedB::new(View::new(dense_kernel, 1, v), (v, h), &mut store_t);
    let (wd, wd_t) = (&wd, &wd_t);
    std::thread::scope(|scope| {
        let mut rest = bufs;
        for (b0, b1) in split_range(blocks, threads, 1) {
            // A split of more parts than blocks has empty ones past the end.
            let (r0, r1) = ((b0 * HEAD_ROWS).min(n), (b1 * HEAD_ROWS).min(n));
            let (mine, tail) = rest.split(r1 - r0, b1 - b0, (h, v));
            rest = tail;
            let job = move || {
                let mut packed_dlogits = Vec::new();
                let rows = (r0..r1).step_by(HEAD_ROWS).enumerate();
                for (blk, k0) in rows {
                    let k1 = (k0 + HEAD_ROWS).min(r1);
                    let (m, at) = (k1 - k0, k0 - r0);
                    let (hs, y) = (&hs[k0 * h..k1 * h], &y[k0..k1]);
                    let probs = &mut mine.probs[at * v..][..m * v];
                    let loss = &mut mine.row_loss[at..][..m];
                    wd.gemm(m, View::new(hs, h, 1), probs, v);
                    softmax_rows(params, m, probs, |k, logits, log_z| {
                        loss[k] = log_z - logits[y[k] as usize];
                    });
                    for (row, &target) in probs.chunks_exact_mut(v).zip(y) {
                        row[target as usize] = row[target as usize] - F::one();
                        row.iter_mut().for_each(|d| *d = *d * inv);
                    }
                    let dlogits = View::new(&probs[..], v, 1);
                    wd_t.gemm(m, dlogits, &mut mine.dy[at * h..][..m * h], h);
                    let ddk = &mut mine.ddk[blk * h * v..][..h * v];
                    let dl = PackedB::new(dlogits, (m, v), &mut packed_dlogits);
                    dl.gemm(h, View::new(hs, 1, h), ddk, v);
                    sum_rows(&mut mine.ddb[blk * v..][..v], probs);
                }
            };
            run_or_spawn(scope, b1 == blocks, job);
        }
    });
}

/// What a [`super::CpuEngine`] keeps for stream training: the step's
/// buffers, the gathered batch and the carried state [B, H].
#[derive(Debug, Default)]
pub(super) struct StreamCarry {
    step: StreamStep<f32>,
    x: Vec<u32>,
    y: Vec<u32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

impl StreamCarry {
    /// [`StreamStep::set_dropout`] for the next batch.
    pub(super) fn set_dropout(&mut self, p: f64, mode: Mode) {
        self.step.set_dropout(p, mode);
    }

    /// The loss and gradients of `batch` (into `grads`), starting from the
    /// carried state or zeros; the final state is kept for the next batch.
    pub(super) fn loss_and_grads(
        &mut self,
        corpus: &OneHotCorpus,
        params: &Params<f32>,
        batch: StreamBatch<'_>,
        grads: &mut Grads<f32>,
    ) -> Result<f32> {
        // The state of every layer: [N, B, H].
        let (b, l, h) = (
            batch.starts.len(),
            batch.seq_len,
            params.layers * params.hidden,
        );
        let kept = (!self.h.is_empty()).then(|| self.h.len() / h.max(1));
        batch.check(corpus.rows(), kept)?;
        self.x.clear();
        self.y.clear();
        for t in 0..l {
            for &s in batch.starts {
                self.x.push(corpus.class_at(s as usize + t));
                self.y.push(corpus.class_at(s as usize + t + 1));
            }
        }
        let (h0, c0) = match batch.carry {
            true => (Some(&self.h[..]), Some(&self.c[..])),
            false => (None, None),
        };
        let loss = self
            .step
            .loss_and_grads_into(params, &self.x, &self.y, b, h0, c0, grads)?;
        self.h.clear();
        self.h.extend_from_slice(self.step.h_n());
        self.c.clear();
        self.c.extend_from_slice(self.step.c_n());
        Ok(loss)
    }

    /// The carried (h, c), empty before the first stream batch.
    pub(super) fn state(&self) -> (Vec<f32>, Vec<f32>) {
        (self.h.clone(), self.c.clone())
    }

    /// Replaces the carried state: `h` and `c` [N, B, H] for some B >= 1,
    /// `layers` = N, `hidden` = H.
    pub(super) fn set_state(
        &mut self,
        h: &[f32],
        c: &[f32],
        (layers, hidden): (usize, usize),
    ) -> Result<()> {
        let row = layers * hidden;
        if h.is_empty() || h.len() != c.len() || !h.len().is_multiple_of(row) {
            return Err(Error::InvalidArgument {
                name: "stream state",
                what: format!(
                    "h holds {} values and c {}: both must be [N, B, H] with N = {layers} \
                     layer(s), H = {hidden}, B >= 1",
                    h.len(),
                    c.len()
                ),
            });
        }
        self.h.clear();
        self.h.extend_from_slice(h);
        self.c.clear();
        self.c.extend_from_slice(c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head's rows do not depend on how they are split.
    #[test]
    fn threads_change_no_bit() {
        let (v, h, l, b) = (7, 5, 6, 4);
        let mut p: Params<f32> = Params::zeros(v, h);
        p.flat_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, w)| *w = ((i as f32) * 0.71).sin() * 0.4);
        let x: Vec<u32> = (0..l * b).map(|i| (i * 5 % v) as u32).collect();
        let y: Vec<u32> = (0..l * b).map(|i| (i * 3 % v) as u32).collect();
        let run = |threads| {
            let mut s = StreamStep::new().with_threads(threads);
            let mut g = Grads::zeros(v, h);
            let loss = s
                .loss_and_grads_into(&p, &x, &y, b, None, None, &mut g)
                .unwrap();
            (loss, g, s.h_n().to_vec())
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let p: Params<f32> = Params::zeros(3, 2);
        let mut g = Grads::zeros(3, 2);
        let mut s = StreamStep::new();
        let err = s.loss_and_grads_into(&p, &[0, 1, 2], &[0, 1], 1, None, None, &mut g);
        assert!(err.unwrap_err().to_string().contains("do not form [L, B]"));
        let err = s.loss_and_grads_into(&p, &[0, 3], &[0, 1], 2, None, None, &mut g);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("outside the vocabulary")
        );
    }
}
