//! Dropout between stacked LSTM layers, as `torch.nn.LSTM(dropout=p)` does
//! it: on the output sequence of every layer but the top one, on what the
//! layer above reads, never on the input of layer 0, the top layer's output
//! or the final states `(h_n, c_n)`; a fresh mask for every step t, batch
//! row and unit; kept values scaled by 1/(1-p) ("inverted" dropout), so
//! evaluation runs the same weights without a mask.
//!
//! # The counter, so a GPU kernel draws the same mask
//!
//! Philox 4x32-10 ([`crate::rng::Philox`]) keyed by the caller's 64-bit
//! `seed` (low word first). For layer `l`'s output at step `t`, batch row
//! `b`, unit `j` (H units, B rows):
//!
//! ```text
//! block   = (t * B + b) * ceil(H / 4) + j / 4
//! counter = [block, step, l, 5]        (5 = Purpose::Dropout)
//! word    = philox(seed, counter)[j % 4]
//! keep    = (word >> 8) >= threshold,  threshold = ceil(p * 2^24)
//! ```
//!
//! `step` is the caller's training-step counter ([`Mode::Train`]): the same
//! (seed, step) gives the same masks, a new step new ones. The comparison
//! is on integers (the top 24 bits of the word against a threshold the host
//! computes once), so a kernel reproduces it exactly whatever its float
//! arithmetic; a unit is kept with probability `1 - threshold / 2^24`,
//! which is `1 - p` to within 2^-24.

use crate::error::{Error, Result};
use crate::rng::{Philox, Purpose};

/// Whether a forward call trains (dropout on, with the masks of this key)
/// or evaluates (dropout off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No dropout: inference, validation, generation.
    Eval,
    /// Dropout on, masks drawn from Philox keyed by `seed` at training step
    /// `step` (see the counter layout in [`crate::ops::dropout`]).
    Train {
        /// The Philox key.
        seed: u64,
        /// The training step: a new one for every batch.
        step: u32,
    },
}

/// The integer threshold of the rule `keep = (word >> 8) >= threshold`.
pub fn threshold(p: f64) -> u32 {
    (p * 16_777_216.0).ceil() as u32
}

/// Checks a dropout probability: in [0, 1) and finite.
pub(crate) fn check_p(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "lstm.dropout",
            what: format!(
                "{p} is not a probability in [0, 1) (the fraction of units dropped between \
                 layers; 0 turns dropout off, 1 would drop every unit)"
            ),
        })
    }
}

/// Checks a mask over `rows` = T·B rows of `h` units (p in [0, 1), and
/// T·B·ceil(H/4) within the counter's 32-bit block word) and returns its
/// Philox block count: the checks of [`mask`], shared with the device's
/// dropout (`gpu::dropout`), so both refuse the same calls alike.
pub(crate) fn check_call(p: f64, rows: usize, h: usize) -> Result<usize> {
    check_p(p)?;
    let blocks_per_row = h.div_ceil(4);
    rows.checked_mul(blocks_per_row)
        .filter(|&n| u32::try_from(n).is_ok())
        .ok_or_else(|| Error::InvalidArgument {
            name: "lstm.dropout",
            what: format!(
                "a dropout mask of T * B * ceil(H / 4) = {rows} * {blocks_per_row} Philox \
                 blocks does not fit the counter's 32-bit block word; split the batch or the \
                 sequence into smaller calls"
            ),
        })
}

/// The keep-mask of layer `layer`'s output, `[T, B, H]` time-major
/// (`(t * B + b) * H + j`), `true` = kept: the counter layout above.
///
/// Errors when p is outside [0, 1), or when T·B·ceil(H/4) does not fit the
/// counter's 32-bit block word (T·B overflowing included).
pub fn mask(
    p: f64,
    (seed, step): (u64, u32),
    layer: u32,
    (t, b, h): (usize, usize, usize),
) -> Result<Vec<bool>> {
    let rows = t.checked_mul(b).ok_or_else(|| Error::InvalidArgument {
        name: "lstm.dropout",
        what: format!(
            "a dropout mask of T * B = {t} * {b} rows overflows; split the batch or the \
             sequence into smaller calls"
        ),
    })?;
    let blocks = check_call(p, rows, h)?;
    let blocks_per_row = h.div_ceil(4);
    let (philox, thr) = (Philox::new(seed), threshold(p));
    let mut out = Vec::with_capacity(t * b * h);
    for block in 0..blocks as u64 {
        let words = philox.at(Purpose::Dropout, layer, block | (u64::from(step) << 32));
        // The last block of a row holds h % 4 units when H is not a multiple of 4.
        let units = h - (block as usize % blocks_per_row) * 4;
        out.extend(words.iter().take(units).map(|&w| w >> 8 >= thr));
    }
    Ok(out)
}
