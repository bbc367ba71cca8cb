//! The bit-packed one-hot stream and its file format.

use super::Vocab;
use crate::error::Result;
use std::path::Path;

/// One row per character, one bit per vocabulary symbol, `ceil(V/64)` words per row.
pub struct OneHotCorpus {
    vocab: Vocab,
}

impl OneHotCorpus {
    /// Encodes a text held in memory (normalised here according to `lowercase`).
    pub fn from_text(text: &str, lowercase: bool) -> Result<Self> {
        let _ = (text, lowercase);
        todo!()
    }
    /// Opens a text file or a prepared corpus file (sniffed by its magic).
    pub fn load(path: &Path, lowercase: bool) -> Result<Self> {
        let _ = (path, lowercase);
        todo!()
    }
    /// Opens a prepared corpus file with `memmap2`, validating header and checksum.
    pub fn open(path: &Path) -> Result<Self> {
        let _ = path;
        todo!()
    }
    /// Writes the prepared corpus file (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let _ = path;
        todo!()
    }
    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }
    /// Whether the text was lower-cased.
    pub fn lowercase(&self) -> bool {
        todo!()
    }
    /// Number of rows (characters).
    pub fn rows(&self) -> usize {
        todo!()
    }
    /// The whole packed stream, `rows * words_per_row` words.
    pub fn words(&self) -> &[u64] {
        todo!()
    }
    /// Class index (the set bit) of row `i`.
    pub fn class_at(&self, i: usize) -> u32 {
        let _ = i;
        todo!()
    }
}
