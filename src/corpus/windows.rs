//! Windows as offsets into the one-hot stream, and the per-epoch order.

use crate::error::Result;

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
    pub fn new(rows: usize, maxlen: usize, step: usize) -> Result<Self> {
        let _ = (rows, maxlen, step);
        todo!()
    }
}

/// The window starts (row offsets) of one epoch, shuffled by Philox from `(seed, epoch)`.
pub fn epoch_order(windows: &Windows, seed: u64, epoch: usize) -> Vec<u32> {
    let _ = (windows, seed, epoch);
    todo!()
}
