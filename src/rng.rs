//! Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
//!
//! Counter-based: the value at a position depends only on (key, counter), so
//! a GPU thread computes the same draw as the CPU without sharing state, and a
//! resumed run continues the same stream from a position, not a saved state.
//!
//! The key is the run's 64-bit seed (low word first). The counter is
//! `[index_lo, index_hi, stream, purpose]`: `purpose` separates the uses
//! below, `stream` separates e.g. epochs or temperatures, `index` counts
//! blocks within one stream.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// What a random stream is used for; the value goes into the counter's last word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Purpose {
    /// Parameter initialisation (stream = tensor index).
    Init = 1,
    /// Per-epoch shuffle of the windows (stream = epoch).
    Shuffle = 2,
    /// Choice of the seed text for the after-epoch samples (stream = epoch).
    SeedText = 3,
    /// Draws of the sampler (stream chosen by the caller, index = character position).
    Sample = 4,
    /// Dropout masks between stacked LSTM layers (stream = the layer whose
    /// output is dropped; index = the training step in the high word, the
    /// block of 4 units in the low: see [`crate::ops::dropout`]).
    Dropout = 5,
    /// The offset r in [0, L) of stream training's batches in an epoch
    /// (stream = epoch, 0-based; one `below(L)` draw from index 0: see
    /// [`crate::corpus::Streams::offset`]).
    StreamOffset = 6,
}

/// The bare Philox 4x32-10 block function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
}

impl Philox {
    /// A generator keyed by a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        Philox {
            key: [seed as u32, (seed >> 32) as u32],
        }
    }

    /// A generator with an explicit key (for known-answer tests).
    pub fn with_key(key: [u32; 2]) -> Self {
        Philox { key }
    }

    /// Ten rounds over one counter; four independent 32-bit outputs.
    pub fn block(&self, counter: [u32; 4]) -> [u32; 4] {
        let mut c = counter;
        let mut k = self.key;
        for round in 0..10 {
            if round > 0 {
                k[0] = k[0].wrapping_add(W0);
                k[1] = k[1].wrapping_add(W1);
            }
            let p0 = u64::from(M0) * u64::from(c[0]);
            let p1 = u64::from(M1) * u64::from(c[2]);
            let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
            let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
            c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        }
        c
    }

    /// The block at position `index` of stream `stream` for `purpose`.
    pub fn at(&self, purpose: Purpose, stream: u32, index: u64) -> [u32; 4] {
        self.block([index as u32, (index >> 32) as u32, stream, purpose as u32])
    }

    /// A uniform f32 in [0, 1) from the first word of that block (24 random bits),
    /// the value the GPU sampler computes too.
    pub fn uniform_f32(&self, purpose: Purpose, stream: u32, index: u64) -> f32 {
        u32_to_unit_f32(self.at(purpose, stream, index)[0])
    }
}

/// Maps a 32-bit word to [0, 1) with 24 bits, exactly representable in f32.
pub fn u32_to_unit_f32(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A sequential view of one stream: consumes all four words of each block.
#[derive(Clone, Debug)]
pub struct RngStream {
    philox: Philox,
    purpose: Purpose,
    stream: u32,
    index: u64,
    buf: [u32; 4],
    used: usize,
}

impl RngStream {
    /// The stream `(purpose, stream)` of the run seeded with `seed`, from its start.
    pub fn new(seed: u64, purpose: Purpose, stream: u32) -> Self {
        RngStream {
            philox: Philox::new(seed),
            purpose,
            stream,
            index: 0,
            buf: [0; 4],
            used: 4,
        }
    }

    /// The same stream from its `block`-th Philox block on (its `4 * block`-th
    /// 32-bit word): what [`new`](Self::new) gives after that many words, so
    /// threads can draw disjoint parts of one stream and give its values.
    pub fn from_block(seed: u64, purpose: Purpose, stream: u32, block: u64) -> Self {
        RngStream {
            index: block,
            ..Self::new(seed, purpose, stream)
        }
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.buf = self.philox.at(self.purpose, self.stream, self.index);
            self.index += 1;
            self.used = 0;
        }
        let x = self.buf[self.used];
        self.used += 1;
        x
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) | (u64::from(self.next_u32()) << 32)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in `0..n` (n > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let lo = m as u64;
            if lo >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal draw (Box-Muller, the cosine half). It takes one
    /// whole block (two `next_f64`, four words), so from a block boundary
    /// the i-th normal is block i's: [`from_block`](Self::from_block) can
    /// start a thread at any of them.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1], so ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_block_is_the_stream_after_that_many_blocks() {
        let mut whole = RngStream::new(7, Purpose::Init, 3);
        let normals: Vec<u64> = (0..10).map(|_| whole.next_normal().to_bits()).collect();
        for start in [0, 1, 6] {
            let mut part = RngStream::from_block(7, Purpose::Init, 3, start as u64);
            let rest: Vec<u64> = (start..10).map(|_| part.next_normal().to_bits()).collect();
            assert_eq!(rest, normals[start..], "from block {start}");
        }
        let mut words = RngStream::new(7, Purpose::Init, 3);
        let skipped: Vec<u32> = (0..12).map(|_| words.next_u32()).collect();
        let mut part = RngStream::from_block(7, Purpose::Init, 3, 2);
        assert_eq!(part.next_u32(), skipped[8]);
    }

    // Known-answer vectors of Random123's kat_vectors for philox4x32_10.
    #[test]
    fn known_answers() {
        assert_eq!(
            Philox::with_key([0, 0]).block([0, 0, 0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            Philox::with_key([u32::MAX, u32::MAX]).block([u32::MAX; 4]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            Philox::with_key([0xa409_3822, 0x299f_31d0]).block([
                0x243f_6a88,
                0x85a3_08d3,
                0x1319_8a2e,
                0x0370_7344
            ]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn below_stays_in_range_and_streams_differ() {
        let mut a = RngStream::new(7, Purpose::Shuffle, 0);
        let mut b = RngStream::new(7, Purpose::Shuffle, 1);
        assert!((0..1000).all(|_| a.below(13) < 13));
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
