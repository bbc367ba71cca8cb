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
