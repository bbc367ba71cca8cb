//! The HTML report of a run directory ([`crate::rundir`]): `charlstm-cuda
//! report` renders [`Report::to_html`]. Nothing here prints.

pub mod html;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::model::Checkpoint;
use crate::rundir::{LAST_CHECKPOINT, RunDir, RunHistory, loss_chart};

pub use html::report_page;

/// Default file name of the HTML report in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Everything a report shows about one run directory.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run directory.
    pub dir: PathBuf,
    /// Epochs and logged batches.
    pub history: RunHistory,
    /// `last.safetensors`, when the directory has one.
    pub checkpoint: Option<Checkpoint>,
}

impl Report {
    /// Reads `dir/metrics.jsonl` (required), `dir/batches.jsonl` and
    /// `dir/last.safetensors` (both optional; a damaged checkpoint is an error).
    pub fn load(dir: &Path) -> Result<Self> {
        let history = RunDir::new(dir).history()?;
        let last = dir.join(LAST_CHECKPOINT);
        let checkpoint = if last.exists() {
            Some(Checkpoint::load(&last)?)
        } else {
            None
        };
        Ok(Report {
            dir: dir.to_path_buf(),
            history,
            checkpoint,
        })
    }

    /// The self-contained HTML page, chart inlined.
    pub fn to_html(&self) -> Result<String> {
        let chart = loss_chart(&self.history)?;
        let name = self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(report_page(
            &format!("charlstm-cuda run: {name}"),
            &self.history,
            self.checkpoint.as_ref(),
            &chart,
        ))
    }
}
