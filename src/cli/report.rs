//! `report` and `completions`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};

use charlstm_cuda::report::{REPORT_FILE, Report};
use charlstm_cuda::rundir::{BATCHES_FILE, LAST_CHECKPOINT, METRICS_FILE};
use charlstm_cuda::{Error, Result};

/// `report`: the run directory and where the page goes.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run directory (train's --out).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the page [default: OUT/report.html].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace the output even when it is a training checkpoint or a file of
    /// a run directory (never when it is one of the inputs).
    #[arg(long)]
    pub force: bool,
}

/// `completions`: the shell.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the HTML report of a run directory.
pub fn report(a: ReportArgs) -> Result<ExitCode> {
    if !a.out.join(METRICS_FILE).exists() {
        return Err(Error::InvalidArgument {
            name: "--out",
            what: format!(
                "{} has no {METRICS_FILE}: nothing to report (train with --out {} first)",
                a.out.display(),
                a.out.display()
            ),
        });
    }
    let report = Report::load(&a.out)?;
    for s in &report.history.skipped {
        eprintln!(
            "warning: {} line {} skipped: {}",
            s.path.display(),
            s.line,
            s.what
        );
    }
    let html = report.to_html()?;
    let path = a.output.unwrap_or_else(|| a.out.join(REPORT_FILE));
    // The run's files are the inputs; an existing report (here or in
    // another run) is this command's own output, replaced as always.
    let inputs = [METRICS_FILE, BATCHES_FILE, LAST_CHECKPOINT].map(|f| a.out.join(f));
    let inputs: Vec<(&'static str, &std::path::Path)> = inputs
        .iter()
        .map(|p| ("the run's file", p.as_path()))
        .collect();
    let is_report = path.file_name() == Some(std::ffi::OsStr::new(REPORT_FILE));
    super::output::check(&path, &inputs, a.force || is_report)?;
    charlstm_cuda::io::write_atomically(&path, |w| w.write_all(html.as_bytes()))?;
    println!(
        "{}: {}{}",
        path.display(),
        super::printer::count(report.history.epochs.len(), "epoch"),
        if report.checkpoint.is_none() {
            " (no last.safetensors: hyper-parameters left out)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the completion script; clap_complete derives it from the `Cli` definition,
/// so it never lags behind a new flag.
pub fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "charlstm-cuda", &mut out);
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(ExitCode::SUCCESS)
}
