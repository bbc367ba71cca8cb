//! The library's names for values, as this command line spells them.
//!
//! The library names the field a refused value came from (`hyper.lr`,
//! `config.temperatures`, `temperature`): it knows nothing of flags. One
//! table here turns each into the flag of the command that was run, with a
//! hint that says what to type, so the user reads `--lr` and an example,
//! and `train --temperatures` is never called `--temperature`.

use charlstm_cuda::Error;
use charlstm_cuda::error::DeviceError;

/// A row: `field` (the library's name, or a flag this command line named
/// itself) seen by `commands` (empty: every command) is `flag` there, and
/// `fix` is the hint.
struct Row {
    field: &'static str,
    commands: &'static [&'static str],
    flag: &'static str,
    fix: &'static str,
}

const fn row(
    field: &'static str,
    commands: &'static [&'static str],
    flag: &'static str,
    fix: &'static str,
) -> Row {
    Row {
        field,
        commands,
        flag,
        fix,
    }
}

const TRAIN: &[&str] = &["train"];
const SHAPES: &[&str] = &["train", "bench"];
const RESUMED: &str =
    "drop the flag (a resumed run keeps its own value), or train a new run into another --out";

/// Every value the library or this command line can refuse, by command.
static ROWS: &[Row] = &[
    row(
        "hyper.maxlen",
        SHAPES,
        "--maxlen",
        "use a window of 1 to 100000 characters, e.g. --maxlen 60 (the default)",
    ),
    row(
        "hyper.step",
        TRAIN,
        "--step",
        "use a step of at least 1, e.g. --step 3 (the default)",
    ),
    row(
        "hyper.hidden",
        SHAPES,
        "--hidden",
        "use 1 to 1024 units, e.g. --hidden 128 (the default)",
    ),
    row(
        "hyper.layers",
        SHAPES,
        "--layers",
        "use 1 to 16 stacked LSTM layers, e.g. --layers 2 (1, the notebook, is the default)",
    ),
    row(
        "hyper.dropout",
        SHAPES,
        "--dropout",
        "use a probability in [0, 1), e.g. --dropout 0.2 (0, no dropout, is the default)",
    ),
    row(
        "hyper.batch",
        SHAPES,
        "--batch-size",
        "use 1 to 65536 windows per batch, e.g. --batch-size 128 (the default)",
    ),
    row(
        "hyper.batch",
        &["eval"],
        "--batch-size",
        "use fewer windows per batch, e.g. --batch-size 1024 (the default)",
    ),
    row(
        "hyper.lr",
        TRAIN,
        "--lr",
        "use a positive learning rate, e.g. --lr 0.01 (the default; halve it after a NaN)",
    ),
    row(
        "hyper.clip_norm",
        TRAIN,
        "--clip-norm",
        "use a positive gradient norm, e.g. --clip-norm 1.0, or leave the flag out to never clip",
    ),
    row(
        "hyper.epochs",
        TRAIN,
        "--epochs",
        "use at least 1 epoch, e.g. --epochs 60 (the default)",
    ),
    row(
        "hyper.lowercase",
        TRAIN,
        "--keep-case",
        "drop --keep-case (the run lower-cases its text), or train a new run into another --out",
    ),
    row(
        "config.temperatures",
        TRAIN,
        "--temperatures",
        "use temperatures above 0, e.g. --temperatures 0.2,0.5,1.0,1.2 (the default)",
    ),
    row(
        "temperature",
        &["bench"],
        "--temperatures",
        "use temperatures above 0, e.g. --temperatures 0.2,0.5,1.0,1.2 (the default)",
    ),
    row(
        "temperature",
        &["generate"],
        "--temperature",
        "use temperatures above 0, e.g. --temperature 0.5 (or 0.2,0.5,1.0,1.2), or \
         --strategy greedy for the T -> 0 limit",
    ),
    row(
        "gen_mode",
        &["train", "generate"],
        "--gen-mode",
        "use --gen-mode window (the default, the notebook) or stateful (char-rnn: one LSTM step \
         per character)",
    ),
    // train and generate check a length before the library does.
    row(
        "--gen-length",
        TRAIN,
        "--gen-length",
        "use at most 1000000 characters per sample, e.g. --gen-length 400 (the default), or 0 \
         to skip the samples",
    ),
    row(
        "--length",
        &["generate"],
        "--length",
        "ask for at most 1000000 characters, e.g. --length 400 (the default); for a longer \
         text, generate again with the end of this one as --seed-text",
    ),
    row(
        "config.steps_per_epoch",
        TRAIN,
        "--steps-per-epoch",
        "use at least 1 batch, e.g. --steps-per-epoch 100, or leave the flag out to train on \
         the whole corpus",
    ),
    row(
        "config.keep_checkpoints",
        TRAIN,
        "--keep-checkpoints",
        "keep at least 1, e.g. --keep-checkpoints 3, or leave the flag out to keep every epoch's",
    ),
    row(
        "config.val_fraction",
        TRAIN,
        "--val-fraction",
        "hold out a fraction below 1 that leaves at least one batch of windows on each side, \
         e.g. --val-fraction 0.1 (or use a smaller --batch-size), or leave the flag out to train \
         on the whole text",
    ),
    row(
        "config.patience",
        TRAIN,
        "--patience",
        "wait at least 1 epoch for a new best validation loss, e.g. --patience 5, or leave the \
         flag out to train every epoch",
    ),
    row(
        "config.mode",
        TRAIN,
        "--mode",
        "use --mode window (the default, the notebook) or --mode stream (char-rnn's streams, \
         with --seq-len)",
    ),
    row(
        "config.seq_len",
        TRAIN,
        "--seq-len",
        "use a sequence length of at least 1 that fits a stream (the training text / \
         --batch-size characters, at least 2 x L), e.g. --seq-len 60, or a smaller --batch-size",
    ),
    row(
        "config.out",
        TRAIN,
        "--out",
        "pass a directory for the run's files (created if missing), e.g. --out runs/NAME",
    ),
    row(
        "divergence.action",
        TRAIN,
        "--on-divergence",
        "use --on-divergence stop (the default) or --on-divergence rollback",
    ),
    row(
        "checkpoint",
        TRAIN,
        "--resume",
        "resume on the text the run started on (leave out --corpus to use the one it recorded)",
    ),
    row(
        "format",
        &[],
        "--format",
        "use --format keras (an .npz) or --format pytorch (a .safetensors)",
    ),
    row(
        "device",
        &[],
        "--device",
        "use --device auto (the default), cpu, cuda or sim",
    ),
    // Flags this command line checks itself.
    row(
        "--divergence-factor",
        TRAIN,
        "--divergence-factor",
        "use a factor above 1, e.g. --divergence-factor 2 (the default), or inf to stop only \
         on NaN/inf losses",
    ),
    row(
        "--resume",
        TRAIN,
        "--resume",
        "leave out --resume to start a new run there, or pass the --out of an existing run",
    ),
    row(
        "--out",
        TRAIN,
        "--out",
        "add --resume to continue that run, or pass another --out for a new one",
    ),
    row(
        "--out",
        &["report"],
        "--out",
        "pass the --out of a run that has finished at least one epoch",
    ),
    row("--maxlen", TRAIN, "--maxlen", RESUMED),
    row("--step", TRAIN, "--step", RESUMED),
    row("--hidden", TRAIN, "--hidden", RESUMED),
    row("--layers", TRAIN, "--layers", RESUMED),
    row("--dropout", TRAIN, "--dropout", RESUMED),
    row("--batch-size", TRAIN, "--batch-size", RESUMED),
    row("--seed", TRAIN, "--seed", RESUMED),
    row("--keep-case", TRAIN, "--keep-case", RESUMED),
    row(
        "--batch-size",
        &["eval"],
        "--batch-size",
        "use at least 1 window per batch, e.g. --batch-size 1024 (the default)",
    ),
    row(
        "--corpus",
        &["eval"],
        "--corpus",
        "pass the text file itself; it is encoded with the checkpoint's vocabulary",
    ),
    row(
        "--config",
        TRAIN,
        "--config",
        "fix that line of the file: keys are the train flags with underscores, one per line, \
         e.g. batch_size = 64 (docs/files.md#config-files)",
    ),
    row(
        "--device",
        &["bench"],
        "--device",
        "name the backends to compare, e.g. --device cpu,cuda",
    ),
    row(
        "--device",
        &["selftest"],
        "--device",
        "use --device cuda, or --device sim to check the kernels on the simulator",
    ),
    row(
        "--format",
        &["export", "import"],
        "--format",
        "add --format keras or --format pytorch, or name the file .npz or .safetensors",
    ),
    row(
        "seed_text",
        &["generate"],
        "--seed-text",
        "pass at least one character of the model's vocabulary, e.g. --seed-text \"the \"",
    ),
];

fn find(command: &str, field: &str) -> Option<&'static Row> {
    let exact = ROWS
        .iter()
        .find(|r| r.field == field && r.commands.contains(&command));
    exact.or_else(|| {
        ROWS.iter()
            .find(|r| r.field == field && r.commands.is_empty())
    })
}

/// The two lines `command` prints for `e`: the error and the hint, in its
/// flags.
pub fn explain(e: &Error, command: &str) -> (String, String) {
    match e {
        Error::TooLong { name, value, max } => match find(command, name) {
            Some(r) => {
                let shown = Error::TooLong {
                    name: r.flag,
                    value: *value,
                    max: *max,
                };
                (shown.to_string(), r.fix.to_string())
            }
            None => (e.to_string(), hint(e)),
        },
        Error::InvalidArgument { name, what } => match find(command, name) {
            Some(r) => (
                format!("invalid value for {}: {what}", r.flag),
                r.fix.to_string(),
            ),
            None => (e.to_string(), hint(e)),
        },
        // A checkpoint's windows are as long as it was trained with:
        // generate and eval have no --maxlen to shorten them.
        Error::TextTooShort { needed, .. } if matches!(command, "generate" | "eval") => (
            e.to_string(),
            format!(
                "pass a longer text: the checkpoint reads windows of {} characters (its maxlen, \
                 fixed when it was trained)",
                needed.saturating_sub(1)
            ),
        ),
        Error::TextTooShort { .. } => (
            e.to_string(),
            "pass a longer text or a smaller --maxlen".into(),
        ),
        _ => (e.to_string(), hint(e)),
    }
}

/// The hint for `e` in this command line's words: where the library's
/// hint names a field or a type (`Backend::Cpu`, a smaller learning rate),
/// the flag that sets it here.
fn hint(e: &Error) -> String {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    let s = match e {
        Error::Io { source, .. }
            if matches!(source.kind(), StorageFull | QuotaExceeded | FileTooLarge) =>
        {
            "free disk space (or write elsewhere with --out) and resume; files are written to a \
             temporary file and renamed into place, so the ones written before are intact"
        }
        Error::NonFiniteLoss { .. } => {
            "the last good checkpoint is kept; resume from it with a smaller --lr"
        }
        Error::Diverged { .. } => {
            "the checkpoints of the good epochs, if any, are kept: resume from last.safetensors \
             with a smaller --lr (with none, start again with one), or train with \
             --on-divergence rollback"
        }
        Error::BackendUnavailable {
            backend: "cuda", ..
        } => {
            "install or update the NVIDIA driver (580 or newer; `nvidia-smi` should list the GPU), \
             or use --device cpu (or --device sim to run the kernels on the simulator)"
        }
        Error::BackendUnavailable { .. } | Error::NoKernels { .. } => "use --device cpu",
        Error::BadPrediction { .. } => {
            "the checkpoint may hold NaN weights (use an earlier epoch's file), or try --device cpu"
        }
        Error::OutputIsInput { .. } => {
            "write the output to another file (-o OTHER); --force does not override this, since \
             the command would destroy what it reads"
        }
        Error::OutputProtected { .. } => {
            "pass another -o, or add --force to replace it anyway (`train --resume` cannot \
             continue from what replaces it)"
        }
        Error::BenchInput { .. } => {
            "make it with `python3 scripts/bench_pytorch.py --corpus TEXT > FILE` on the same \
             text and shapes (--hidden, --batch-size, --maxlen, --gen-length) as this bench, or \
             leave out --pytorch"
        }
        Error::RunLocked { lock, .. } => {
            return format!(
                "wait for that run to end or stop it (Ctrl-C writes a checkpoint), or train into \
                 another --out; if no run is using the directory, delete {}",
                lock.display()
            );
        }
        Error::TooLong { max, .. } => {
            return format!(
                "ask for at most {max} characters; for a longer text, generate again with the end \
                 of this one as --seed-text"
            );
        }
        Error::NonFiniteWeights { .. } => {
            "the run had diverged when this was saved: use an earlier epoch's checkpoint \
             (epoch-NNN.safetensors in its run directory), or train again with a smaller --lr"
        }
        Error::Device(d) => match d {
            DeviceError::SharedMemory { .. } => {
                "the model is too large for this kernel on this device; use a smaller --hidden or \
                 --device cpu"
            }
            DeviceError::OutOfMemory { .. } => {
                "use a smaller --batch-size or --hidden, free the GPU of other work, or use \
                 --device cpu"
            }
            DeviceError::CorpusTooLarge { .. } => {
                "use --device cpu (it maps the corpus file and reads only each batch's rows), or a \
                 shorter text"
            }
            DeviceError::VocabTooLarge { .. } => {
                "use --device cpu (no limit on the vocabulary), a smaller --hidden, or a text with \
                 fewer distinct characters (lower-cased, rare symbols removed)"
            }
            DeviceError::Backend { .. } => "check the GPU driver, or use --device cpu",
            _ => return d.hint().into(),
        },
        _ => return e.hint(),
    };
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_reachable_and_names_a_flag() {
        for r in ROWS {
            assert!(r.flag.starts_with("--"), "{}", r.flag);
            let command = r.commands.first().copied().unwrap_or("train");
            assert!(
                std::ptr::eq(find(command, r.field).unwrap(), r),
                "{} for {command} is shadowed by an earlier row",
                r.field
            );
            assert!(!r.fix.contains("help"), "{}: {}", r.field, r.fix);
        }
    }

    #[test]
    fn temperature_is_the_flag_of_the_command() {
        let e = charlstm_cuda::Strategy::temperature(-1.0).unwrap_err();
        assert!(explain(&e, "generate").0.contains("--temperature:"));
        let e = Error::InvalidArgument {
            name: "config.temperatures",
            what: "-1".into(),
        };
        assert!(explain(&e, "train").0.contains("--temperatures:"));
    }
}
