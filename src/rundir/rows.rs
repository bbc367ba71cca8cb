//! The run's JSON-lines logs as typed rows, written and read back as the
//! same types.
//!
//! `metrics.jsonl`: one [`EpochRow`] per completed epoch (the row the
//! observers get too). `batches.jsonl`: one [`BatchRow`] per logged batch,
//! at most [`MAX_BATCH_ROWS_PER_EPOCH`] an epoch, so a 60-epoch run of the
//! Keras job stays near a megabyte. Every numeric field is a top-level
//! number so that spreadsheet and dashboard tools read the files as columns.
//!
//! Both files only grow. A rollback (divergence guard) or a resume from an
//! older checkpoint trains some epochs again, so a file can hold an epoch
//! twice: [`RunHistory`] keeps the latest history, dropping rows that a later
//! row rewound past, the way TensorBoard drops "orphaned" steps.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::BATCHES_FILE;
use crate::error::{Error, Result};

/// Batches logged per epoch at most (evenly spaced, the last always).
pub const MAX_BATCH_ROWS_PER_EPOCH: usize = 100;

/// One line of `metrics.jsonl`: a completed epoch, sent to the observers
/// once its checkpoint is on disk.
///
/// `#[non_exhaustive]`, like the other rows: a field may be added (the
/// files stay readable both ways, every field has a default).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EpochRow {
    /// Epoch completed, 1-based.
    pub epoch: usize,
    /// Epochs planned when it completed.
    pub epochs: usize,
    /// Running-mean loss over the epoch (what Keras prints).
    pub loss: f64,
    /// Mean loss over every validation window after the epoch (Keras'
    /// `val_loss`); absent without a validation split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// The epoch with the lowest validation loss so far, whose weights
    /// `best.safetensors` holds; absent without a validation split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// True on the last epoch of a run that patience ended (that many
    /// epochs without a new best validation loss); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub early_stop: bool,
    /// Wall time of the epoch's training, seconds (sampling and the
    /// validation loss excluded).
    pub seconds: f64,
    /// Windows trained per second.
    pub samples_per_s: f64,
    /// Batches in the epoch.
    pub batches: usize,
    /// Optimizer steps in the whole run so far.
    pub step: u64,
    /// The epoch's checkpoint file, when the run has an output directory.
    pub checkpoint: Option<PathBuf>,
    /// Seconds spent generating the samples.
    pub sample_seconds: f64,
    /// The after-epoch samples (empty with `gen_length` 0).
    pub samples: Vec<SampleRow>,
}

/// One after-epoch sample.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SampleRow {
    /// Sampling temperature.
    pub temperature: f64,
    /// The seed text (one window of the corpus).
    pub seed: String,
    /// The generated characters, without the seed.
    pub text: String,
}

/// One line of `batches.jsonl`: the loss after one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BatchRow {
    /// Epoch in progress, 1-based.
    pub epoch: usize,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Optimizer steps in the whole run so far.
    pub step: u64,
    /// This batch's mean loss.
    pub loss: f64,
    /// Running mean of the epoch so far.
    pub running_loss: f64,
}

impl BatchRow {
    /// Position on an epoch axis: epoch 2, batch 50 of 100 is 1.5, so the
    /// running loss at the end of an epoch sits on that epoch's loss.
    pub fn x(&self) -> f64 {
        (self.epoch - 1) as f64 + self.batch as f64 / self.batches.max(1) as f64
    }
}

/// Whether batch `batch` (1-based) of `batches` goes into `batches.jsonl`.
pub fn batch_logged(batch: usize, batches: usize) -> bool {
    let every = batches.div_ceil(MAX_BATCH_ROWS_PER_EPOCH).max(1);
    batch.is_multiple_of(every) || batch == batches
}

/// A line that did not parse (a torn write after a crash, or a hand edit).
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why it did not parse.
    pub what: String,
}

/// The epochs and logged batches of a run directory, latest history only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunHistory {
    /// Completed epochs in epoch order.
    pub epochs: Vec<EpochRow>,
    /// Logged batches in (epoch, batch) order.
    pub batches: Vec<BatchRow>,
    /// Lines that were skipped because they did not parse.
    pub skipped: Vec<SkippedLine>,
}

impl RunHistory {
    /// Reads `metrics_file` and, when it exists, `batches.jsonl` beside it.
    /// A missing metrics file is an error; unparseable lines are skipped
    /// and listed in [`RunHistory::skipped`] so that one torn line does
    /// not hide a whole run.
    pub fn load(metrics_file: &Path) -> Result<Self> {
        let mut skipped = Vec::new();
        let epoch_rows: Vec<EpochRow> = read_lines(metrics_file, &mut skipped)?;
        let batches_file = metrics_file.with_file_name(BATCHES_FILE);
        let batch_rows: Vec<BatchRow> = if batches_file.exists() {
            read_lines(&batches_file, &mut skipped)?
        } else {
            Vec::new()
        };
        Ok(RunHistory {
            epochs: latest(epoch_rows, |r| (r.epoch, 0)),
            batches: latest(batch_rows, |r| (r.epoch, r.batch)),
            skipped,
        })
    }

    /// The epoch with the lowest loss.
    pub fn best(&self) -> Option<&EpochRow> {
        self.epochs.iter().min_by(|a, b| a.loss.total_cmp(&b.loss))
    }

    /// The epoch with the lowest validation loss (the earliest of equal
    /// ones, as the trainer picks it); `None` without validation.
    pub fn best_val(&self) -> Option<&EpochRow> {
        let mut best: Option<&EpochRow> = None;
        for r in &self.epochs {
            if let Some(v) = r.val_loss
                && best.is_none_or(|b| b.val_loss.is_none_or(|bv| v < bv))
            {
                best = Some(r);
            }
        }
        best
    }
}

fn read_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    skipped: &mut Vec<SkippedLine>,
) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(row) => rows.push(row),
            Err(e) => skipped.push(SkippedLine {
                path: path.to_path_buf(),
                line: i + 1,
                what: e.to_string(),
            }),
        }
    }
    Ok(rows)
}

/// Keeps the rows of the latest history: a row whose key is not past the
/// previous one rewinds the run, and the rows it rewound past are dropped.
fn latest<T>(rows: Vec<T>, key: impl Fn(&T) -> (usize, usize)) -> Vec<T> {
    let mut kept: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows {
        let k = key(&row);
        while kept.last().is_some_and(|last| key(last) >= k) {
            kept.pop();
        }
        kept.push(row);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewind_drops_the_rows_it_replaces() {
        let rows = vec![1, 2, 3, 4, 2, 3, 5];
        assert_eq!(latest(rows, |&e| (e, 0)), vec![1, 2, 3, 5]);
    }

    #[test]
    fn batch_logging_is_capped_and_keeps_the_last() {
        let logged = (1..=1565).filter(|&b| batch_logged(b, 1565)).count();
        assert!(logged <= MAX_BATCH_ROWS_PER_EPOCH + 1, "{logged}");
        assert!(batch_logged(1565, 1565));
        assert!((1..=7).all(|b| batch_logged(b, 7)));
    }
}
