//! Charts and reports of a training run, from the files in its output
//! directory: `metrics.jsonl`, `batches.jsonl` and `last.safetensors`.
//!
//! Nothing here prints; the trainer writes `loss.svg` after every epoch
//! through [`write_loss_chart`], and `charlstm-cuda report` renders
//! [`Report::to_html`].

pub mod html;
pub mod metrics;
pub mod svg;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::model::Checkpoint;

pub use html::{escape, report_page};
pub use metrics::{
    BATCHES_FILE, BatchRow, EpochRow, LAST_CHECKPOINT, MAX_BATCH_ROWS_PER_EPOCH, METRICS_FILE,
    RunHistory, SampleRow, SkippedLine, append_batches, batch_logged,
};
pub use svg::loss_chart;

/// File name of the loss chart in a run directory.
pub const LOSS_CHART: &str = "loss.svg";
/// Default file name of the HTML report in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// A loss as the CLI prints it (`epoch 3/60: loss 1.4321`); the chart and
/// the report use the same digits so a value can be found in each.
pub fn format_loss(loss: f64) -> String {
    format!("{loss:.4}")
}

/// Reads the run in `dir` and writes `dir/loss.svg` atomically (readers
/// see the previous chart or the new one, never half of one).
pub fn write_loss_chart(dir: &Path) -> Result<PathBuf> {
    let history = RunHistory::load(&dir.join(METRICS_FILE))?;
    let svg = loss_chart(&history)?;
    let path = dir.join(LOSS_CHART);
    crate::io::write_atomically(&path, |w| w.write_all(svg.as_bytes()))?;
    Ok(path)
}

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
        let history = RunHistory::load(&dir.join(METRICS_FILE))?;
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
