//! The LSTM op used the way another crate would use it: its own data, its
//! own head and loss, its own optimizer, no `Trainer`.
//!
//! ```text
//! cargo run --release --example lstm_op
//! ```
//!
//! The task: a stream of random symbols from {0, 1, 2, 3}; at every step,
//! name the symbol seen DELAY steps before. Nothing in the current input
//! says it, so the network has to carry it in its state. A 2-layer LSTM
//! (dropout 0.1 between the layers) reads the symbols one-hot as a dense
//! [T, B, 4] tensor; a linear head + softmax turns every step's hidden
//! state into a guess; the loss is the mean cross-entropy over all steps
//! from DELAY on; Adam updates every weight. The loss falls from ln 4 ≈ 1.39
//! towards 0; the program fails if it has not fallen below a third of that.

#[path = "shared/op_task.rs"]
mod op_task;

use charlstm_cuda::ops::{LayerParams, Lstm, LstmInput, Mode};
use charlstm_cuda::rng::{Purpose, RngStream};
use op_task::{B, LAYERS, LossLog, Model, SYMBOLS, T, batch};

const STEPS: u32 = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lstm = Lstm::new(LAYERS, SYMBOLS, op_task::H)?.with_dropout(0.1)?;
    let mut model = Model::new(&lstm);
    let mut data = RngStream::new(2, Purpose::Shuffle, 0);
    let mut log = LossLog::new(STEPS);
    for step in 0..STEPS {
        let (sym, x) = batch(&mut data);
        let weights: Vec<_> = model.layers.iter().map(LayerParams::weights).collect();
        let mode = Mode::Train { seed: 7, step };
        let out = lstm.forward(&weights, LstmInput::dense(&x, T, B), None, None, mode)?;
        let (loss, dy, d_head_w, d_head_b) = model.head(out.y(), &sym);
        let grads = lstm.backward(&weights, out, &dy, None, None)?;
        model.update(step, &grads.layers, &d_head_w, &d_head_b);
        log.record(step, loss);
    }
    log.check()
}
