//! The vocabulary: sorted unique Unicode scalar values.

use crate::error::{Error, Result};

/// Sorted unique characters of a text; a character's index is its one-hot bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// Builds the vocabulary of an (already normalised) text.
    ///
    /// Empty text gives the empty vocabulary; callers reject it where it matters.
    pub fn from_text(text: &str) -> Self {
        // Texts are mostly ASCII: a table keeps the common case out of the sort.
        let mut ascii = [false; 128];
        let mut other = Vec::new();
        for c in text.chars() {
            match ascii.get_mut(c as usize) {
                Some(seen) => *seen = true,
                None => other.push(c),
            }
        }
        other.sort_unstable();
        other.dedup();
        let mut chars: Vec<char> = (0u8..128)
            .filter(|&b| ascii[b as usize])
            .map(char::from)
            .collect();
        chars.extend(other);
        Vocab { chars }
    }
    /// From a list that must be sorted and unique (as stored in files).
    ///
    /// Errors with [`Error::InvalidArgument`] naming `vocab`; file readers
    /// re-wrap it with the file's path.
    pub fn from_chars(chars: Vec<char>) -> Result<Self> {
        let bad = |what: String| Error::InvalidArgument {
            name: "vocab",
            what,
        };
        if chars.is_empty() {
            return Err(bad("the vocabulary is empty".into()));
        }
        if let Some(w) = chars.windows(2).find(|w| w[0] >= w[1]) {
            let what = if w[0] == w[1] {
                format!("{:?} occurs twice", w[0])
            } else {
                format!("{:?} comes after {:?}", w[1], w[0])
            };
            return Err(bad(format!("must be sorted and unique, but {what}")));
        }
        Ok(Vocab { chars })
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
