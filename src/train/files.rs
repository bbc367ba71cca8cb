//! The files a run writes besides checkpoints and the batch log: the
//! metrics line of each epoch, and the pruning of old epoch checkpoints.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::observer::EpochEvent;
use super::trainer::epoch_checkpoint_name;
use crate::error::{Error, Result};

/// Deletes `epoch-NNN.safetensors` for epochs up to `epoch - keep`, after
/// the newer ones were written, so at least `keep` good ones always exist.
/// Missing files are fine (a resumed run, or already pruned).
pub(super) fn prune_checkpoints(dir: &Path, epoch: usize, keep: usize) -> Result<()> {
    for old in 1..=epoch.saturating_sub(keep.max(1)) {
        let path = dir.join(epoch_checkpoint_name(old));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(())
}

pub(super) fn append_metrics(path: &Path, event: &EpochEvent) -> Result<()> {
    let line = serde_json::to_string(event).map_err(|e| Error::InvalidArgument {
        name: "metrics",
        what: e.to_string(),
    })?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}
