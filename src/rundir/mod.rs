//! The run directory: every file a training run writes (through [`RunDir`])
//! and a report reads back (as [`RunHistory`]), in one place.
//!
//! | file | what |
//! | --- | --- |
//! | `metrics.jsonl` | one [`EpochRow`] per completed epoch |
//! | `batches.jsonl` | one [`BatchRow`] per logged batch |
//! | `epoch-NNN.safetensors` | each epoch's checkpoint ([`epoch_checkpoint_name`]) |
//! | `last.safetensors` | the latest state: each epoch, and on a stop |
//! | `best.safetensors` | the epoch with the lowest validation loss (with a validation split) |
//! | `loss.svg` | the loss chart, redrawn after every epoch |
//! | `.lock` | held while a run writes here ([`RunLock`]) |
//!
//! Nothing here prints. Data flows one way: `train` writes, `report` reads.

mod chart;
mod lock;
mod rows;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use chart::{TimedSeries, escape, format_loss, loss_chart, seconds_chart};
pub use lock::{LOCK_FILE, RunLock};
pub use rows::{
    BatchRow, EpochRow, MAX_BATCH_ROWS_PER_EPOCH, RunHistory, SampleRow, SkippedLine, batch_logged,
};

use crate::error::{Error, Result};
use crate::model::Checkpoint;

/// File of the logged batches, next to `metrics.jsonl`.
pub const BATCHES_FILE: &str = "batches.jsonl";
/// One JSON object per completed epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// File the latest state is always written to (each epoch, and on a stop).
pub const LAST_CHECKPOINT: &str = "last.safetensors";
/// File the epoch with the lowest validation loss so far is written to
/// (only with a validation split).
pub const BEST_CHECKPOINT: &str = "best.safetensors";
/// File name of the loss chart in a run directory.
pub const LOSS_CHART: &str = "loss.svg";

/// The per-epoch checkpoint's file name.
pub fn epoch_checkpoint_name(epoch: usize) -> String {
    format!("epoch-{epoch:03}.safetensors")
}

/// A training run's output directory, as the trainer writes it.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    /// Logged batches not yet appended to `batches.jsonl` (written with
    /// the epoch's metrics line, or on a stop).
    batches: Vec<BatchRow>,
    /// Held from [`open`](Self::open) until dropped.
    lock: Option<RunLock>,
}

impl RunDir {
    /// The run directory at `dir`; nothing is touched until [`create`](Self::create).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunDir {
            dir: dir.into(),
            batches: Vec::new(),
            lock: None,
        }
    }

    /// Makes the directory this run's: creates it if missing, takes its
    /// `.lock` (refused while another run holds it; a stale one is taken
    /// over), and repairs a torn last line of `metrics.jsonl` and
    /// `batches.jsonl` before anything is appended. Returns what was done
    /// that the user should hear of, one sentence each.
    pub fn open(&mut self) -> Result<Vec<String>> {
        if self.lock.is_some() {
            return Ok(Vec::new());
        }
        self.create()?;
        let (lock, notice) = RunLock::acquire(&self.dir)?;
        self.lock = Some(lock);
        let mut notices: Vec<String> = notice.into_iter().collect();
        for name in [METRICS_FILE, BATCHES_FILE] {
            notices.extend(repair_torn_tail(&self.dir.join(name))?);
        }
        Ok(notices)
    }

    /// The lock file, while this run holds it.
    pub fn lock_path(&self) -> Option<&Path> {
        self.lock.as_ref().map(RunLock::path)
    }

    /// Creates the directory (and its parents) if missing. A file in its
    /// place is refused by name (`create_dir_all` would only say "File
    /// exists").
    pub fn create(&self) -> Result<()> {
        // The nearest part of the path that exists must be a directory.
        let existing = self
            .dir
            .ancestors()
            .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        if let Some((file, meta)) = existing
            && !meta.is_dir()
        {
            return Err(Error::InvalidArgument {
                name: "config.out",
                what: format!(
                    "{} is a file, not a directory{}: a run writes several files there",
                    file.display(),
                    if file == self.dir {
                        String::new()
                    } else {
                        format!(", so {} cannot be one", self.dir.display())
                    }
                ),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }

    /// Keeps `row` for `batches.jsonl` when [`batch_logged`] picks it.
    pub fn log_batch(&mut self, row: BatchRow) {
        if batch_logged(row.batch, row.batches) {
            self.batches.push(row);
        }
    }

    /// Forgets the batches not yet written (a rollback trains them again).
    pub fn discard_batches(&mut self) {
        self.batches.clear();
    }

    /// Writes `epoch-NNN.safetensors`, with `best` `best.safetensors` too,
    /// and `last.safetensors` (each atomically), then, with `keep`, deletes
    /// the epoch checkpoints older than the newest `keep`, so at least `keep`
    /// good ones always exist. Returns the epoch's.
    ///
    /// `best.safetensors` goes before `last.safetensors`: a crash between
    /// them leaves the previous `last`, so a resume trains the epoch again
    /// and writes the same best, bit for bit; the other order could leave a
    /// `last` past an epoch whose best was never written.
    pub fn save_epoch(
        &mut self,
        checkpoint: &Checkpoint,
        epoch: usize,
        keep: Option<usize>,
        best: bool,
    ) -> Result<PathBuf> {
        let path = self.dir.join(epoch_checkpoint_name(epoch));
        checkpoint.save(&path)?;
        if best {
            checkpoint.save(&self.dir.join(BEST_CHECKPOINT))?;
        }
        checkpoint.save(&self.dir.join(LAST_CHECKPOINT))?;
        let Some(keep) = keep else {
            return Ok(path);
        };
        // Missing files are fine (a resumed run, or already pruned).
        for old in 1..=epoch.saturating_sub(keep.max(1)) {
            let old = self.dir.join(epoch_checkpoint_name(old));
            match std::fs::remove_file(&old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&old, e)),
            }
        }
        Ok(path)
    }

    /// A stop: `last.safetensors` and the batches logged so far.
    pub fn save_last(&mut self, checkpoint: &Checkpoint) -> Result<PathBuf> {
        let path = self.dir.join(LAST_CHECKPOINT);
        checkpoint.save(&path)?;
        self.flush_batches()?;
        Ok(path)
    }

    /// An epoch's end: its logged batches, its `metrics.jsonl` line, and
    /// `loss.svg` redrawn from the files (readers see the previous chart or
    /// the new one, never half of one).
    pub fn end_epoch(&mut self, row: &EpochRow) -> Result<()> {
        self.flush_batches()?;
        append_lines(&self.dir.join(METRICS_FILE), std::slice::from_ref(row))?;
        let svg = loss_chart(&self.history()?)?;
        crate::io::write_atomically(&self.dir.join(LOSS_CHART), |w| w.write_all(svg.as_bytes()))
    }

    /// `metrics.jsonl` and `batches.jsonl` read back; see [`RunHistory::load`].
    pub fn history(&self) -> Result<RunHistory> {
        RunHistory::load(&self.dir.join(METRICS_FILE))
    }

    fn flush_batches(&mut self) -> Result<()> {
        append_lines(&self.dir.join(BATCHES_FILE), &self.batches)?;
        self.batches.clear();
        Ok(())
    }
}

/// Appends `rows` as JSON lines to `path` (created if missing) in one
/// write, and syncs it: a crash leaves whole lines, or one torn last line
/// that [`RunHistory::load`] skips.
fn append_lines<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for row in rows {
        let line = serde_json::to_string(row).map_err(|e| Error::io(path, e.into()))?;
        text.push_str(&line);
        text.push('\n');
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// A JSON-lines file whose last line has no newline was cut short (a full
/// disk, a crash mid-append); the next append would glue its row onto it.
/// A last line that is a whole JSON object only lost its newline: it gets
/// it back. Anything else is the torn start of a row: it is cut off, so
/// every line parses (for pandas too), and no whole row is lost.
fn repair_torn_tail(path: &Path) -> Result<Option<String>> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.last().is_none_or(|&b| b == b'\n') {
        return Ok(None);
    }
    let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let tail = &bytes[start..];
    let line = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let whole = serde_json::from_slice::<serde_json::Value>(tail).is_ok_and(|v| v.is_object());
    let name = path.display();
    let notice = if whole {
        f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
        f.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        format!(
            "{name}: line {line} had lost its newline (a write cut short); added it, the row is kept"
        )
    } else {
        f.set_len(start as u64).map_err(|e| Error::io(path, e))?;
        format!(
            "{name}: removed a torn last line (line {line}, {} bytes without a newline: a write \
             cut short, e.g. by a full disk); every whole row is kept",
            tail.len()
        )
    };
    f.sync_data().map_err(|e| Error::io(path, e))?;
    Ok(Some(notice))
}
