//! The vocabulary: sorted unique Unicode scalar values.

use crate::error::Result;

/// Sorted unique characters of a text; a character's index is its one-hot bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// Builds the vocabulary of an (already normalised) text.
    pub fn from_text(text: &str) -> Self {
        let _ = text;
        todo!()
    }
    /// From a list that must be sorted and unique (as stored in files).
    pub fn from_chars(chars: Vec<char>) -> Result<Self> {
        let _ = chars;
        todo!()
    }
    /// Number of symbols V.
    pub fn len(&self) -> usize {
        self.chars.len()
    }
    /// True for the empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }
    /// The symbols in index order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }
    /// The index of a character, if it is in the vocabulary.
    pub fn index_of(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }
    /// The character with this index.
    pub fn char_at(&self, i: u32) -> char {
        self.chars[i as usize]
    }
    /// `u64` words per one-hot row: `ceil(V / 64)`.
    pub fn words_per_row(&self) -> usize {
        self.chars.len().div_ceil(64)
    }
}
