//! Windows as offsets into the one-hot stream, and the per-epoch order.

use crate::error::{Error, Result};
use crate::rng::{Purpose, RngStream};

/// Window i covers rows `[i*step, i*step+maxlen)`, its target is row `i*step+maxlen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Rows per window.
    pub maxlen: usize,
    /// Distance between starts.
    pub step: usize,
    /// Number of windows: `len(range(0, rows - maxlen, step))`.
    pub count: usize,
}

impl Windows {
    /// Windows over a stream of `rows` rows; errors when not even one fits.
    ///
    /// Starts are handed to kernels as `u32`, so `rows` must fit one.
    pub fn new(rows: usize, maxlen: usize, step: usize) -> Result<Self> {
        for (name, n) in [("maxlen", maxlen), ("step", step)] {
            if n == 0 {
                let what = "must be at least 1".into();
                return Err(Error::InvalidArgument { name, what });
            }
        }
        if u32::try_from(rows).is_err() {
            return Err(Error::InvalidArgument {
                name: "corpus",
                what: format!("{rows} characters; at most {} are supported", u32::MAX),
            });
        }
        if rows <= maxlen {
            return Err(Error::TextTooShort {
                chars: rows,
                needed: maxlen.saturating_add(1),
            });
        }
        Ok(Windows {
            maxlen,
            step,
            count: (rows - maxlen).div_ceil(step),
        })
    }

    /// First row of window `i`.
    pub fn start(&self, i: usize) -> usize {
        i * self.step
    }

    /// The row holding window `i`'s target character.
    pub fn target(&self, i: usize) -> usize {
        i * self.step + self.maxlen
    }
}

/// The text cut in two for validation, as Keras' `validation_split` cuts
/// its arrays (`split_at = int(n * (1 - f))`), but on the text, not on the
/// windows: rows `[0, train_rows)` are the training text, rows
/// `[train_rows, rows)` the held-out text. Windows are made on each side
/// separately, so a window and its target lie wholly on one side; held out
/// by windows instead, the last training windows would read the first
/// validation characters (the windows overlap 57 of 60 characters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    /// Rows of the training text, from the start.
    pub train_rows: usize,
    /// Rows of the whole text.
    pub rows: usize,
    /// The fraction asked for, for messages (a cut rounds it).
    fraction: f64,
}

impl Split {
    /// Holds out the last `fraction` of `rows` rows; `fraction` must be in
    /// `[0, 1)` (0: nothing held out, the notebook).
    pub fn new(rows: usize, fraction: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::InvalidArgument {
                name: "config.val_fraction",
                what: format!(
                    "{fraction} (the fraction of the text held out must be at least 0 and \
                     below 1)"
                ),
            });
        }
        // Keras' cut, in f64: exact for any text that fits a u32 of rows.
        let train_rows = (rows as f64 * (1.0 - fraction)) as usize;
        Ok(Split {
            train_rows: train_rows.min(rows),
            rows,
            fraction,
        })
    }

    /// Rows held out (0 without validation).
    pub fn held_out(&self) -> usize {
        self.rows - self.train_rows
    }

    /// Checks that each side holds at least one full batch of windows
    /// (`batch` windows of `maxlen` characters, `step` apart): for a split
    /// asked for, so that a fraction too small to hold out anything is
    /// refused, not turned into no validation.
    pub fn check(&self, maxlen: usize, step: usize, batch: usize) -> Result<()> {
        // The fewest rows that make `batch` windows with their targets.
        let needed = (batch.max(1) - 1)
            .saturating_mul(step)
            .saturating_add(maxlen)
            .saturating_add(1);
        let (train, held) = (self.train_rows, self.held_out());
        if train >= needed && held >= needed {
            return Ok(());
        }
        let side = if held < needed {
            format!("holds out {held} characters")
        } else {
            format!("leaves {train} characters to train on")
        };
        let range = if self.rows >= 2 * needed {
            // The fractions whose cut leaves `needed` rows on each side,
            // rounded inwards to three decimals.
            let lo = (needed as f64 / self.rows as f64 * 1000.0).ceil() / 1000.0;
            let hi = ((1.0 - needed as f64 / self.rows as f64) * 1000.0).floor() / 1000.0;
            format!(
                "; on this text of {} characters use {lo} to {hi}",
                self.rows
            )
        } else {
            format!(
                "; this text of {} characters is too short to split (it needs {} for two \
                 batches), so train on it whole or use a smaller batch",
                self.rows,
                2 * needed
            )
        };
        Err(Error::InvalidArgument {
            name: "config.val_fraction",
            what: format!(
                "{} {side}, fewer than one batch of {batch} windows needs (maxlen + (batch - \
                 1) x step + 1 = {needed}){range}",
                self.fraction
            ),
        })
    }

    /// The training windows: those of the training text alone.
    pub fn train_windows(&self, maxlen: usize, step: usize) -> Result<Windows> {
        Windows::new(self.train_rows, maxlen, step)
    }

    /// The start rows of the validation windows, in text order: the held-out
    /// text's own windows (`maxlen`, `step` as in training), so none reads
    /// a training character. Empty when nothing is held out.
    pub fn validation_starts(&self, maxlen: usize, step: usize) -> Result<Vec<u32>> {
        if self.held_out() == 0 {
            return Ok(Vec::new());
        }
        // Starts go to kernels as u32: the whole text's rows must fit one.
        Windows::new(self.rows, maxlen, step)?;
        let held = Windows::new(self.held_out(), maxlen, step)?;
        Ok((0..held.count)
            .map(|i| (self.train_rows + held.start(i)) as u32)
            .collect())
    }
}

/// The window starts (row offsets) of one epoch, shuffled by Philox from `(seed, epoch)`.
///
/// Fisher–Yates from the back with `RngStream::below`, on the stream
/// `(seed, Shuffle, epoch)`: the GPU trainer and a resumed run reproduce it
/// from those three numbers alone.
pub fn epoch_order(windows: &Windows, seed: u64, epoch: usize) -> Vec<u32> {
    // `Windows::new` guarantees every start is below `rows <= u32::MAX`.
    let mut order: Vec<u32> = (0..windows.count)
        .map(|i| windows.start(i) as u32)
        .collect();
    let mut rng = RngStream::new(seed, Purpose::Shuffle, epoch as u32);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}
