//! `prepare` and `train`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use charlstm_cuda::corpus::OneHotCorpus;
use charlstm_cuda::corpus::embedded::{self, NIETZSCHE_NAME};
use charlstm_cuda::model::{BUILT_IN_SOURCE, Checkpoint, Hyper, RunRecord};
use charlstm_cuda::rundir::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use charlstm_cuda::sample::{GenMode, check_length};
use charlstm_cuda::train::{DivergenceGuard, TrainConfig, TrainMode, Trainer};
use charlstm_cuda::{Device, LstmPath};
use charlstm_cuda::{Error, Result};

use super::args::{PrepareArgs, TrainArgs};
use super::printer::{Printer, count};

pub fn prepare(a: PrepareArgs) -> Result<ExitCode> {
    let started = Instant::now();
    super::output::check(&a.output, &[("the text", &a.text)], a.force)?;
    let corpus = OneHotCorpus::prepare(&a.text, &a.output, !a.keep_case)?;
    println!(
        "{}: {} characters, {} symbols, {} u64 words per row ({:.3} s)",
        a.output.display(),
        corpus.rows(),
        corpus.vocab().len(),
        corpus.words_per_row(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Hyper-parameters from the flags, on top of `base` (defaults or a checkpoint's).
/// On resume, a flag that would change the model or the data is refused.
fn hyper_from(a: &TrainArgs, base: Hyper, resuming: bool) -> Result<Hyper> {
    let mut h = base;
    macro_rules! set {
        ($arg:ident => $field:ident, $flag:literal) => {
            if let Some(v) = a.$arg {
                if resuming && v != h.$field {
                    return Err(Error::InvalidArgument {
                        name: $flag,
                        what: format!(
                            "{v} differs from the resumed run's {}; drop the flag or start a new --out",
                            h.$field
                        ),
                    });
                }
                h.$field = v;
            }
        };
    }
    set!(maxlen => maxlen, "--maxlen");
    set!(step => step, "--step");
    set!(hidden => hidden, "--hidden");
    set!(layers => layers, "--layers");
    set!(dropout => dropout, "--dropout");
    set!(batch_size => batch, "--batch-size");
    set!(seed => seed, "--seed");
    // These may change on resume: more epochs, or a smaller rate after a NaN.
    if let Some(e) = a.epochs {
        h.epochs = e;
    }
    if let Some(lr) = a.lr {
        h.lr = lr;
    }
    // Clipping may start, change or (with inf) stop on resume, like the rate.
    if let Some(c) = a.clip_norm {
        h.clip_norm = (c != f32::INFINITY).then_some(c);
    }
    if resuming {
        if a.keep_case && h.lowercase {
            return Err(Error::InvalidArgument {
                name: "--keep-case",
                what: "the resumed run lower-cases its text; drop the flag or start a new --out"
                    .into(),
            });
        }
    } else {
        h.lowercase = !a.keep_case;
    }
    h.validate()?;
    Ok(h)
}

/// The console's words for a stacked model (none for the notebook's one
/// layer): the layers and dropout, or that dropout with one layer does
/// nothing (there is no layer above to drop units on the way to).
fn stack_note(h: &Hyper) -> String {
    if let Some(note) = idle_dropout(h) {
        return format!("; {note}");
    }
    match (h.layers, h.dropout) {
        (1, _) => String::new(),
        (n, p) if p > 0.0 => format!("; {n} LSTM layers of {} units, dropout {p}", h.hidden),
        (n, _) => format!("; {n} LSTM layers of {} units", h.hidden),
    }
}

/// That `--dropout` does nothing, when it is given for one LSTM layer (it
/// drops units between layers); `bench` says the same.
pub(super) fn idle_dropout(h: &Hyper) -> Option<String> {
    (h.layers == 1 && h.dropout > 0.0).then(|| {
        format!(
            "--dropout {} does nothing with one LSTM layer (it drops units between layers: \
             add --layers 2 or more)",
            h.dropout
        )
    })
}

/// The corpus at `path`, or, without one, the Keras example's Nietzsche
/// text embedded in the binary (saying so on stderr).
pub(super) fn load_corpus(path: Option<&Path>, lowercase: bool) -> Result<OneHotCorpus> {
    match path {
        Some(p) => OneHotCorpus::load(p, lowercase),
        None => {
            eprintln!("no --corpus: using the Keras example's Nietzsche text (built in)");
            OneHotCorpus::from_text(&embedded::nietzsche(), lowercase)
        }
    }
}

fn default_out(corpus: &Path) -> PathBuf {
    let stem = corpus
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    Path::new("runs").join(stem)
}

/// `path` as one shell word: as it is when that is safe, else single-quoted.
fn shell_word(path: &Path) -> String {
    let s = path.to_string_lossy();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The corpus of a resumed run: `--corpus`, else the one its checkpoint
/// records (`None`: the built-in text). A checkpoint that records none
/// (written before checkpoints did) needs `--corpus`.
fn resumed_corpus(
    a: &TrainArgs,
    last: &Path,
    out: &Path,
    saved: Option<&RunRecord>,
) -> Result<Option<PathBuf>> {
    if let Some(p) = &a.corpus {
        return Ok(Some(p.clone()));
    }
    let with_corpus = format!(
        "pass --corpus with the text the run started on (and its --steps-per-epoch, if it had \
         one): charlstm-cuda train --resume --out {} --corpus FILE",
        shell_word(out)
    );
    let Some(run) = saved else {
        return Err(Error::Resume {
            what: format!(
                "{} does not record its corpus (it was written before checkpoints did)",
                last.display()
            ),
            fix: with_corpus,
        });
    };
    match run.corpus.source.as_deref() {
        Some(BUILT_IN_SOURCE) => Ok(None),
        Some(s) if Path::new(s).exists() => Ok(Some(PathBuf::from(s))),
        Some(s) => Err(Error::Resume {
            what: format!(
                "the run's corpus {s} ({}), as recorded in {}, is not there (relative paths are \
                 relative to where the run was started)",
                run.corpus.fingerprint,
                last.display()
            ),
            fix: with_corpus,
        }),
        None => Err(Error::Resume {
            what: format!("{} does not name its corpus", last.display()),
            fix: with_corpus,
        }),
    }
}

/// Whether the run resumes; `--resume DIR` (as char-rnn's `-init_from`
/// names what to continue) is `--resume --out DIR`.
fn resume_dir(a: &mut TrainArgs) -> Result<bool> {
    let dir = match &a.resume {
        None => return Ok(false),
        Some(None) => return Ok(true),
        Some(Some(dir)) => dir.clone(),
    };
    if dir.is_file() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        return Err(Error::InvalidArgument {
            name: "--resume",
            what: format!(
                "{} is a file; --resume takes the run's directory{} (it continues from the \
                 directory's {LAST_CHECKPOINT})",
                dir.display(),
                parent.map_or(String::new(), |p| format!(", here {}", shell_word(p)))
            ),
        });
    }
    match &a.out {
        Some(out) if *out != dir => Err(Error::InvalidArgument {
            name: "--resume",
            what: format!(
                "names the run {} and --out names {}: give the run's directory once, as \
                 --resume DIR or as --out DIR --resume",
                dir.display(),
                out.display()
            ),
        }),
        _ => {
            a.out = Some(dir);
            Ok(true)
        }
    }
}

pub fn train(mut a: TrainArgs) -> Result<ExitCode> {
    let resuming = resume_dir(&mut a)?;
    // Before anything is read or written: a typo here would otherwise
    // surface only after the first epoch, as an hour of sampling.
    if let Some(n) = a.gen_length {
        check_length("--gen-length", n)?;
    }
    let gen_mode: GenMode = a.gen_mode.as_deref().unwrap_or("window").parse()?;
    // A new run's mode is checked before anything is read; a resumed run
    // takes its own (below), which --seq-len alone may restate.
    if a.mode.is_some() || !resuming {
        TrainMode::parse(a.mode.as_deref().unwrap_or("window"), a.seq_len)?;
    }
    let corpus_path = a.corpus.clone().unwrap_or_else(|| NIETZSCHE_NAME.into());
    let out = a.out.clone().unwrap_or_else(|| default_out(&corpus_path));
    let last = out.join(LAST_CHECKPOINT);
    let checkpoint = if resuming {
        if !last.exists() {
            return Err(Error::InvalidArgument {
                name: "--resume",
                what: format!(
                    "{} does not exist: nothing to resume in {}",
                    last.display(),
                    out.display()
                ),
            });
        }
        Some(Checkpoint::load(&last)?)
    } else {
        if last.exists() {
            return Err(Error::InvalidArgument {
                name: "--out",
                what: format!(
                    "{} already holds a run; pass --resume to continue it, or another --out",
                    out.display()
                ),
            });
        }
        None
    };
    let base = checkpoint
        .as_ref()
        .map_or_else(Hyper::default, |c| c.hyper.clone());
    let mut hyper = hyper_from(&a, base, checkpoint.is_some())?;
    // Nothing to train would end at once with exit 0: said instead.
    if let Some(c) = &checkpoint
        && c.state.epochs_done >= hyper.epochs
    {
        return Err(Error::Resume {
            what: format!(
                "the run in {} has already trained {}, and --epochs {} is the total to reach{}",
                out.display(),
                count(c.state.epochs_done, "epoch"),
                hyper.epochs,
                if a.epochs.is_none() {
                    " (the run's own)"
                } else {
                    ""
                }
            ),
            fix: format!(
                "to train more, raise the total: charlstm-cuda train --resume --out {} --epochs {}",
                shell_word(&out),
                c.state.epochs_done + 1
            ),
        });
    }
    // A resumed run's settings are its checkpoint's; a flag may change
    // them, except --steps-per-epoch, which decides what an epoch is.
    let saved = checkpoint.as_ref().and_then(|c| c.run.as_ref());
    let corpus_arg = match &checkpoint {
        Some(_) => resumed_corpus(&a, &last, &out, saved)?,
        None => a.corpus.clone(),
    };
    let steps_per_epoch = match saved {
        Some(run) => {
            if let Some(s) = a.steps_per_epoch
                && Some(s) != run.steps_per_epoch
            {
                return Err(Error::Resume {
                    what: format!(
                        "--steps-per-epoch {s} differs from the run's {}: it decides which \
                         windows an epoch trains on",
                        run.steps_per_epoch
                            .map_or("(every batch of the corpus)".into(), |n| n.to_string())
                    ),
                    fix: "drop --steps-per-epoch (the run keeps its own), or start a new --out"
                        .into(),
                });
            }
            run.steps_per_epoch
        }
        None => a.steps_per_epoch,
    };
    // The split decides which windows train, so it stays as the run began.
    let val_fraction = match saved {
        Some(run) => {
            let was = run.val_fraction.unwrap_or(0.0);
            if let Some(f) = a.val_fraction
                && f.to_bits() != was.to_bits()
            {
                return Err(Error::Resume {
                    what: format!(
                        "--val-fraction {f} differs from the run's {}: it decides which windows \
                         train and which are held out",
                        run.val_fraction
                            .map_or("(none: it trains on the whole text)".into(), |f| {
                                f.to_string()
                            })
                    ),
                    fix: "drop --val-fraction (the run keeps its own), or start a new --out".into(),
                });
            }
            was
        }
        None => a.val_fraction.unwrap_or(0.0),
    };
    // The mode decides what a batch is; a different one is refused when
    // the run is built (it names the run's own).
    let mode = match (a.mode.as_deref(), saved) {
        // The run's own; --seq-len alone restates (or changes) its L.
        (None, Some(run)) => match (run.mode, a.seq_len) {
            (m, None) => m,
            (TrainMode::Stream { .. }, Some(seq_len)) => TrainMode::Stream { seq_len },
            (TrainMode::Window, Some(l)) => TrainMode::parse("window", Some(l))?,
        },
        (m, _) => TrainMode::parse(m.unwrap_or("window"), a.seq_len)?,
    };
    let saved_config = saved.map(|r| r.config(None)).transpose()?;
    let patience = a
        .patience
        .or(saved_config.as_ref().and_then(|c| c.patience));
    if let Some(p) = patience
        && p > 0
        && val_fraction == 0.0
    {
        return Err(Error::Conflict {
            what: format!(
                "--patience {p} stops a run after {} without a new best validation loss, but \
                 this run holds no text out for validation, so it has no validation loss",
                count(p, "epoch")
            ),
            fix: if checkpoint.is_some() {
                "drop --patience: the run was started without --val-fraction (a new --out can \
                 have both)"
                    .into()
            } else {
                "add --val-fraction, e.g. --val-fraction 0.1, or drop --patience".into()
            },
        });
    }
    let saved_guard = saved_config.as_ref().and_then(|c| c.divergence);
    let divergence_factor = a
        .divergence_factor
        .or(saved_guard.map(|g| g.factor))
        .unwrap_or(2.0);
    if divergence_factor.is_nan() || divergence_factor <= 1.0 {
        return Err(Error::InvalidArgument {
            name: "--divergence-factor",
            what: format!(
                "{divergence_factor} (must be above 1; `inf` checks only for NaN/inf losses)"
            ),
        });
    }
    let on_divergence = match &a.on_divergence {
        Some(s) => s.parse()?,
        None => saved_guard.map_or(DivergenceGuard::default().action, |g| g.action),
    };
    let device: Device = a
        .device
        .as_deref()
        .or(saved.and_then(|r| r.device.as_deref()))
        .unwrap_or("auto")
        .parse()?;
    let lstm_path: LstmPath = a.recurrence.as_deref().unwrap_or("auto").parse()?;
    let corpus = load_corpus(corpus_arg.as_deref(), hyper.lowercase)?;
    let corpus_path = corpus_arg.clone().unwrap_or_else(|| NIETZSCHE_NAME.into());
    if corpus.lowercase() != hyper.lowercase && checkpoint.is_none() {
        // A prepared corpus was normalised when it was made; its flag wins.
        eprintln!(
            "{} was prepared {}; training on it as it is",
            corpus_path.display(),
            if corpus.lowercase() {
                "lower-cased"
            } else {
                "keeping case"
            }
        );
        hyper.lowercase = corpus.lowercase();
    }
    let defaults = TrainConfig::default();
    let config = TrainConfig {
        steps_per_epoch,
        keep_checkpoints: a
            .keep_checkpoints
            .or(saved_config.as_ref().and_then(|c| c.keep_checkpoints)),
        divergence: Some(DivergenceGuard {
            factor: divergence_factor,
            action: on_divergence,
            ..saved_guard.unwrap_or_default()
        }),
        temperatures: a
            .temperatures
            .clone()
            .or(saved_config.as_ref().map(|c| c.temperatures.clone()))
            .unwrap_or(defaults.temperatures),
        gen_length: a
            .gen_length
            .or(saved_config.as_ref().map(|c| c.gen_length))
            .unwrap_or(defaults.gen_length),
        gen_mode,
        out: Some(out.clone()),
        val_fraction,
        patience,
        mode,
    };
    let source = corpus_arg.as_ref().map_or_else(
        || BUILT_IN_SOURCE.into(),
        |p| p.to_string_lossy().into_owned(),
    );
    let builder = Trainer::builder(&corpus)
        .config(config)
        .device(device)
        .lstm_path(lstm_path)
        .corpus_source(source);
    let mut trainer = match checkpoint {
        // The flags were checked against the run above; clipping may change too.
        Some(c) => builder.resume(Checkpoint { hyper, ..c }),
        None => builder.hyper(hyper),
    }
    .build()?;
    if let Some(n) = trainer.notice() {
        eprintln!("{n}");
    }
    super::interrupt::release_on_exit(trainer.lock_path());
    let h = trainer.hyper().clone();
    let st = trainer.state().clone();
    let held_out = match trainer.validation_windows() {
        0 => String::new(),
        n => format!(
            " (+ {} in the last {} held out for validation)",
            count(n, "window"),
            count(trainer.split().held_out(), "character")
        ),
    };
    let per_batch = match trainer.streams() {
        Some(s) => format!(
            "{} of {} characters, {} steps a batch",
            count(s.count, "stream"),
            s.length,
            s.seq_len
        ),
        None => count(trainer.windows().count, "window"),
    };
    eprintln!(
        "{}: {}, {}, {per_batch}{held_out}; {} of {} per epoch; {}{}{}{}",
        corpus_path.display(),
        count(corpus.rows(), "character"),
        count(corpus.vocab().len(), "symbol"),
        count(trainer.batches_per_epoch(), "batch"),
        h.batch,
        count(h.epochs, "epoch"),
        h.clip_norm.map_or(String::new(), |c| format!(
            "; gradients clipped to norm {c}"
        )),
        stack_note(&h),
        if resuming {
            format!(
                " (resuming after epoch {}, batch {})",
                st.epochs_done, st.batch
            )
        } else {
            String::new()
        }
    );
    let mut printer = Printer::new(a.quiet || a.json).json(a.json);
    super::interrupt::install();
    match trainer.run(&mut printer) {
        Ok(summary) => {
            printer.finish();
            if let Some(early) = &summary.early_stop {
                eprintln!(
                    "{early}; its weights are in {} (to train on, resume with a larger \
                     patience: charlstm-cuda train --resume --out {} --patience {})",
                    out.join(BEST_CHECKPOINT).display(),
                    shell_word(&out),
                    2 * early.patience
                );
            }
            if summary.stopped {
                let st = &summary.state;
                let at = match &summary.checkpoint {
                    Some(p) => format!("checkpoint {}", p.display()),
                    None => "no checkpoint".into(),
                };
                let when = if st.batch > 0 {
                    format!(
                        "in epoch {} after batch {}",
                        st.epoch_in_progress(),
                        st.batch
                    )
                } else {
                    format!("after epoch {}", st.epochs_done)
                };
                eprintln!(
                    "stopped {when} ({at}); continue with: charlstm-cuda train --resume --out {}",
                    shell_word(&out)
                );
                if super::interrupt::requested() {
                    return Ok(ExitCode::from(super::interrupt::EXIT_INTERRUPTED));
                }
            } else if super::interrupt::requested() {
                // Every epoch was trained; the signal cut the last samples.
                eprintln!(
                    "stopped during the samples after the last epoch; the run is complete \
                     (checkpoint {})",
                    last.display()
                );
                return Ok(ExitCode::from(super::interrupt::EXIT_INTERRUPTED));
            }
            if !a.json {
                let best = if val_fraction > 0.0 {
                    format!(" {BEST_CHECKPOINT},")
                } else {
                    String::new()
                };
                eprintln!(
                    "run files in {}: {LAST_CHECKPOINT},{best} metrics.jsonl, loss.svg; \
                     `charlstm-cuda report --out {}` writes report.html",
                    out.display(),
                    shell_word(&out)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ Error::NonFiniteLoss { .. }) => {
            printer.finish();
            if last.exists() {
                eprintln!("last good checkpoint: {}", last.display());
            }
            Err(e)
        }
        Err(e) => {
            printer.finish();
            Err(e)
        }
    }
}
