//! `inspect`: what a checkpoint holds, without loading a device (char-rnn's
//! `inspect_checkpoint.lua`, Keras' `model.summary()`). Errors that refuse a
//! checkpoint for its vocabulary or shape point here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueHint};

use charlstm_cuda::model::ParamLayout;
use charlstm_cuda::{Checkpoint, Error, Result};

use super::printer::count;

/// `inspect`: the checkpoint and the output form.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A checkpoint written by `train` or `import`, or a run directory
    /// of `train` (its last.safetensors).
    #[arg(value_hint = ValueHint::FilePath)]
    pub checkpoint: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the checkpoint's model, vocabulary, hyper-parameters, progress and
/// run settings; loading it checks its checksum and metadata as every
/// command does.
pub fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let c = Checkpoint::load(&a.checkpoint)?;
    let layout = c.params.layout();
    if a.json {
        println!("{}", to_json(&a, &c, &layout)?);
    } else {
        print!("{}", table(&a, &c, &layout));
    }
    Ok(ExitCode::SUCCESS)
}

/// A training checkpoint has taken optimizer steps: `--resume` continues
/// it; an imported one starts RMSprop from zeros.
fn resumable(c: &Checkpoint) -> bool {
    c.state.step > 0
}

fn vocab_text(vocab: &[char]) -> String {
    vocab.iter().flat_map(|ch| ch.escape_debug()).collect()
}

fn table(a: &InspectArgs, c: &Checkpoint, layout: &ParamLayout) -> String {
    let h = &c.hyper;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "checkpoint",
            format!("{} (checksum ok)", a.checkpoint.display()),
        ),
        (
            "model",
            format!(
                "{} + Dense({}) softmax, {} parameters (f32){}",
                match layout.layers {
                    1 => format!("LSTM({})", layout.hidden),
                    n => format!("{n} x LSTM({})", layout.hidden),
                },
                layout.vocab,
                group(layout.len()),
                match (layout.layers, h.dropout) {
                    (n, p) if n > 1 && p > 0.0 => format!(", dropout {p:?} between layers"),
                    _ => String::new(),
                }
            ),
        ),
        (
            "vocabulary",
            format!(
                "{}: \"{}\"",
                count(c.vocab.len(), "symbol"),
                vocab_text(&c.vocab)
            ),
        ),
        (
            "windows",
            format!(
                "maxlen {}, step {}, {}",
                h.maxlen,
                h.step,
                if h.lowercase {
                    "lower-cased"
                } else {
                    "case kept"
                }
            ),
        ),
        (
            "training",
            format!(
                "RMSprop lr {:?} rho {:?} eps {:?}, batch {}, seed {}, clip norm {}, {} planned",
                h.lr,
                h.rho,
                h.eps,
                h.batch,
                h.seed,
                h.clip_norm.map_or("none".into(), |n| format!("{n:?}")),
                count(h.epochs, "epoch")
            ),
        ),
    ];
    let s = &c.state;
    let progress = if resumable(c) {
        let mut p = format!(
            "{} done, {} of the next, {} in all; --resume continues it",
            count(s.epochs_done, "epoch"),
            count(s.batch, "batch"),
            count(s.step as usize, "step")
        );
        if !s.epoch_losses.is_empty() {
            let losses: Vec<String> = s.epoch_losses.iter().map(|l| format!("{l:.4}")).collect();
            p.push_str(&format!("; epoch losses {}", losses.join(" ")));
        }
        if !s.val_losses.is_empty() {
            let losses: Vec<String> = s.val_losses.iter().map(|l| format!("{l:.4}")).collect();
            p.push_str(&format!("; validation losses {}", losses.join(" ")));
        }
        if let Some((epoch, loss)) = s.best_val() {
            p.push_str(&format!(
                "; best validation loss {loss:.4} at epoch {epoch} (best.safetensors)"
            ));
        }
        p
    } else {
        "no training steps (imported weights: no optimizer state)".into()
    };
    rows.push(("progress", progress));
    if let Some(r) = &c.run {
        let temps: Vec<String> = r.temperatures.iter().map(|t| format!("{t:?}")).collect();
        rows.push((
            "run",
            format!(
                "corpus {}; {} per epoch; keep {}; samples {} x {}; device {}",
                r.corpus.describe(),
                r.steps_per_epoch
                    .map_or("every batch".into(), |n| count(n, "batch")),
                r.keep_checkpoints
                    .map_or("every checkpoint".into(), |n| count(n, "checkpoint")),
                temps.join(","),
                count(r.gen_length, "character"),
                r.device.as_deref().unwrap_or("chosen by the caller")
            ),
        ));
        if let Some(f) = r.val_fraction {
            rows.push((
                "validation",
                format!(
                    "the last {f:?} of the text held out; {}",
                    r.patience.map_or("no early stopping".into(), |n| format!(
                        "stops after {} without a new best",
                        count(n, "epoch")
                    ))
                ),
            ));
        }
        if let Some(d) = &r.divergence {
            rows.push((
                "divergence",
                format!(
                    "{} when the epoch loss exceeds {} x the best (at most {})",
                    d.action,
                    d.factor.map_or("infinity".into(), |f| format!("{f:?}")),
                    count(d.max_rollbacks, "rollback")
                ),
            ));
        }
    }
    for t in layout.named() {
        rows.push(("tensor", format!("{} {:?}", t.name, t.shape)));
    }
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<11} {v}\n"));
    }
    out
}

/// The `--json` object; serialised from typed fields so that f32
/// hyper-parameters print as written (0.01), not widened to f64.
#[derive(serde::Serialize)]
struct InspectJson<'a> {
    checkpoint: String,
    vocab: Vec<String>,
    parameters: usize,
    tensors: Vec<(String, Vec<usize>)>,
    hyper: &'a charlstm_cuda::Hyper,
    state: &'a charlstm_cuda::model::TrainState,
    resumable: bool,
    run: &'a Option<charlstm_cuda::model::RunRecord>,
}

fn to_json(a: &InspectArgs, c: &Checkpoint, layout: &ParamLayout) -> Result<String> {
    let j = InspectJson {
        checkpoint: a.checkpoint.display().to_string(),
        vocab: c.vocab.iter().map(char::to_string).collect(),
        parameters: layout.len(),
        tensors: layout
            .named()
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect(),
        hyper: &c.hyper,
        state: &c.state,
        resumable: resumable(c),
        run: &c.run,
    };
    serde_json::to_string(&j).map_err(|e| Error::InvalidArgument {
        name: "inspect",
        what: format!("the summary does not serialise: {e}"),
    })
}

/// `93241` -> `93,241`.
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}
