//! Stream (truncated-BPTT) training's batches, as char-rnn cuts them: the
//! training text split into B contiguous streams of S = floor(train_rows /
//! B) characters; each batch is the next L characters of every stream.
//!
//! ```text
//! stream b:        rows [b*S, (b+1)*S)
//! epoch e:         r = Philox(seed, StreamOffset, e).below(L)       in [0, L)
//! batch k of e:    stream b's inputs are rows b*S + r + k*L + t, its targets one row later, t in 0..L
//! batches/epoch:   floor((S - L) / L), the same in every epoch
//! ```
//!
//! With r <= L - 1 and k < floor((S - L) / L), the last target row is at
//! most b*S + S - 1: every input and target of a stream lies inside it, so
//! no batch reads across a stream's end or into the held-out text (the
//! streams are cut from the training side of a [`super::Split`] only).
//! The offset changes each epoch so that the batches differ from epoch to
//! epoch (the state of a stream's end does not lead into the next epoch's
//! first batch, which is why the trainer starts each epoch from a zero
//! state).

use crate::error::{Error, Result};
use crate::rng::{Purpose, RngStream};

/// B streams of S characters over the first `train_rows` rows, read L at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// B, the number of streams (the batch size).
    pub count: usize,
    /// S, the characters of each stream.
    pub length: usize,
    /// L, the steps of each batch.
    pub seq_len: usize,
    /// Batches per epoch: `(S - L) / L`.
    pub batches: usize,
}

impl Streams {
    /// `count` streams over `train_rows` rows, `seq_len` steps a batch;
    /// errors when a stream cannot hold one batch and its random offset
    /// (S >= 2L), naming the stream length and the batch size.
    pub fn new(train_rows: usize, count: usize, seq_len: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(Error::InvalidArgument {
                name: "config.seq_len",
                what: "0 (a stream batch needs at least 1 step)".into(),
            });
        }
        if count == 0 {
            return Err(Error::InvalidArgument {
                name: "hyper.batch",
                what: "0 (must be at least 1)".into(),
            });
        }
        if u32::try_from(train_rows).is_err() {
            return Err(Error::InvalidArgument {
                name: "corpus",
                what: format!(
                    "{train_rows} characters; at most {} are supported",
                    u32::MAX
                ),
            });
        }
        let length = train_rows / count;
        if length < seq_len.saturating_mul(2) {
            let most = length / 2;
            return Err(Error::InvalidArgument {
                name: "config.seq_len",
                what: format!(
                    "{seq_len} steps do not fit a stream: {train_rows} training characters in \
                     {count} streams (the batch size) make streams of {length} characters, and \
                     one batch with its random offset needs 2 x {seq_len} = {}; {}",
                    2 * seq_len,
                    if most >= 1 {
                        format!("use a sequence length of at most {most} or a smaller batch")
                    } else {
                        "use a smaller batch or a longer text".into()
                    }
                ),
            });
        }
        Ok(Streams {
            count,
            length,
            seq_len,
            batches: (length - seq_len) / seq_len,
        })
    }

    /// The offset r in [0, L) of epoch `epoch` (0-based): one draw from
    /// the Philox stream `(seed, StreamOffset, epoch)`, so a resumed run
    /// finds it from those numbers alone.
    pub fn offset(&self, seed: u64, epoch: usize) -> usize {
        let mut rng = RngStream::new(seed, Purpose::StreamOffset, epoch as u32);
        rng.below(self.seq_len as u64) as usize
    }

    /// The first input row of every stream in batch `k` of an epoch with
    /// offset `offset`: `b*S + offset + k*L`.
    pub fn starts(&self, offset: usize, k: usize) -> Vec<u32> {
        debug_assert!(offset < self.seq_len && k < self.batches);
        (0..self.count)
            .map(|b| (b * self.length + offset + k * self.seq_len) as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_and_target_stays_inside_its_stream() {
        for (rows, count, l) in [(1000, 7, 10), (64, 4, 8), (100, 1, 1), (5000, 128, 19)] {
            let s = Streams::new(rows, count, l).unwrap();
            assert_eq!(s.length, rows / count);
            assert!(s.batches >= 1);
            for offset in 0..l {
                for k in 0..s.batches {
                    for (b, &start) in s.starts(offset, k).iter().enumerate() {
                        let (lo, hi) = (b * s.length, (b + 1) * s.length);
                        let (first, last_target) = (start as usize, start as usize + l);
                        assert!(lo <= first && last_target < hi, "{rows} {count} {l}");
                    }
                }
            }
            // Batch k + 1 continues where batch k ended.
            if s.batches > 1 {
                let (a, b) = (s.starts(0, 0), s.starts(0, 1));
                assert!(a.iter().zip(&b).all(|(a, b)| a + l as u32 == *b));
            }
        }
    }

    #[test]
    fn offsets_are_in_range_and_change_with_the_epoch() {
        let s = Streams::new(100_000, 128, 60).unwrap();
        let offsets: Vec<usize> = (0..20).map(|e| s.offset(42, e)).collect();
        assert!(offsets.iter().all(|&r| r < 60));
        assert!(offsets.windows(2).any(|w| w[0] != w[1]));
        assert_eq!(offsets[3], s.offset(42, 3));
    }

    #[test]
    fn too_long_a_sequence_names_the_stream_length_and_the_batch() {
        let err = Streams::new(1000, 10, 60).unwrap_err().to_string();
        assert!(err.contains("streams of 100 characters"), "{err}");
        assert!(err.contains("10 streams (the batch size)"), "{err}");
        assert!(err.contains("at most 50"), "{err}");
        let err = Streams::new(1000, 10, 0).unwrap_err().to_string();
        assert!(err.contains("at least 1 step"), "{err}");
        assert!(Streams::new(1000, 10, 50).is_ok());
    }
}
