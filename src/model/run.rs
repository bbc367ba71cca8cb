//! What a checkpoint records about its run besides the model and the
//! progress: the corpus (where it was read, and a fingerprint of its
//! content) and the run settings that are not hyper-parameters, so that a
//! resume continues the run without anyone restating a flag.
//!
//! Saved as the checkpoint's `run` metadata (JSON). Checkpoints written
//! before it existed have none and still load ([`Checkpoint::run`] is
//! `None`); resuming one needs the corpus named again.
//!
//! [`Checkpoint::run`]: super::Checkpoint::run

use std::fmt;

use super::TrainMode;
use crate::corpus::OneHotCorpus;

/// `source` of the Keras example's Nietzsche text built into the binary.
pub const BUILT_IN_SOURCE: &str = "built-in";

/// The content of a corpus, cheaply: its length in characters and the
/// CRC32 of its vocabulary (UTF-8) followed by its one-hot rows as stored
/// (`ceil(V/64)` little-endian `u64` words a character). A text and the
/// file `prepare` made of it have the same fingerprint; two texts with the
/// same vocabulary but other characters anywhere do not (barring a CRC32
/// collision, one in four billion). One pass over the rows: about a
/// millisecond per million characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Characters (one-hot rows).
    pub chars: u64,
    /// CRC32 of the vocabulary and the rows.
    pub crc32: u32,
}

impl Fingerprint {
    /// The fingerprint of `corpus`.
    pub fn of(corpus: &OneHotCorpus) -> Self {
        let mut crc = crc32fast::Hasher::new();
        let mut utf8 = [0u8; 4];
        for &c in corpus.vocab().chars() {
            crc.update(c.encode_utf8(&mut utf8).as_bytes());
        }
        let mut buf = Vec::with_capacity(8 * 1024);
        for chunk in corpus.words().chunks(1024) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|w| w.to_le_bytes()));
            crc.update(&buf);
        }
        Fingerprint {
            chars: corpus.rows() as u64,
            crc32: crc.finalize(),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} characters, CRC32 {:08x}", self.chars, self.crc32)
    }
}

/// The corpus a run trains on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusRecord {
    /// The path as it was given (relative paths are relative to where the
    /// run was started), [`BUILT_IN_SOURCE`] for the built-in text, or
    /// `None` when the library was not told (see
    /// [`TrainerBuilder::corpus_source`](crate::train::TrainerBuilder::corpus_source)).
    pub source: Option<String>,
    /// What the corpus held.
    pub fingerprint: Fingerprint,
}

impl CorpusRecord {
    /// `source (fingerprint)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.source.as_deref().unwrap_or("an unnamed corpus"),
            self.fingerprint
        )
    }
}

/// The divergence guard's settings as saved (`factor` `None`: infinite,
/// only NaN/inf losses count; JSON has no infinity).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DivergenceRecord {
    /// Epoch loss above `factor` x the best one (and
    /// [`MIN_LOSS_JUMP`](crate::train::MIN_LOSS_JUMP) above it) is divergence.
    pub factor: Option<f64>,
    /// `stop` or `rollback`.
    pub action: String,
    /// Rollbacks allowed before the run stops anyway.
    pub max_rollbacks: usize,
}

/// Everything about a run a checkpoint needs, besides the hyper-parameters
/// and progress, to be continued exactly: the run settings of
/// [`TrainConfig`](crate::TrainConfig) (all but the output directory), the
/// device asked for and the corpus.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// The corpus and its fingerprint.
    pub corpus: CorpusRecord,
    /// Batches per epoch at most; `None`: the whole corpus.
    pub steps_per_epoch: Option<usize>,
    /// Epoch checkpoints kept; `None`: all.
    pub keep_checkpoints: Option<usize>,
    /// The divergence guard; `None`: off.
    pub divergence: Option<DivergenceRecord>,
    /// Temperatures of the after-epoch samples.
    pub temperatures: Vec<f64>,
    /// Characters per after-epoch sample.
    pub gen_length: usize,
    /// The device asked for (`auto`, `cpu`, `cuda`, `sim`), `None` when
    /// the caller opened the engine itself.
    pub device: Option<String>,
    /// The fraction of the text held out for validation; `None`: none (the
    /// notebook, and every run saved before validation existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    /// Epochs without a new best validation loss before the run stops;
    /// `None`: it never stops early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Windows (the notebook; not written, so a window run's record is
    /// what it always was) or streams of `seq_len` steps. A resume keeps it.
    #[serde(default, skip_serializing_if = "TrainMode::is_window")]
    pub mode: TrainMode,
}
