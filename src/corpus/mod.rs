//! Text -> [`Vocab`] -> bit-packed one-hot stream ([`OneHotCorpus`], a file
//! opened with `memmap2`) -> [`Windows`] (offsets, never copies) -> batches;
//! or, for stream training, [`Streams`] (B contiguous streams, L characters a batch).

pub mod embedded;
mod onehot;
mod streams;
mod text;
mod vocab;
mod windows;

pub use onehot::{CorpusFile, OneHotCorpus};
pub use streams::Streams;
pub use text::{normalize, read_text, text_from_bytes};
pub use vocab::Vocab;
pub use windows::{Split, Windows, epoch_order};
