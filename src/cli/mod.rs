//! Argument definitions and dispatch.

mod args;
mod bench;
mod config;
mod flags;
mod generate;
mod inspect;
mod interop;
mod interrupt;
mod output;
mod printer;
mod report;
mod selftest;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use charlstm_cuda::rundir::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use charlstm_cuda::{Error, Result};

pub use args::{Cli, Command};

/// Parses the command line, runs the command, and prints its error, if
/// any, as two lines in the command's own flags: `error:` and `hint:`.
pub fn main() -> ExitCode {
    // Parsed in two steps so that `train --config` can tell a flag typed on
    // the command line from a default (flags override the file).
    let matches = Cli::command().get_matches();
    let command = matches.subcommand_name().unwrap_or_default().to_string();
    match run(&matches) {
        Ok(code) => code,
        Err(e) => {
            let (error, hint) = flags::explain(&e, &command);
            eprintln!("error: {error}");
            eprintln!("  hint: {hint}");
            ExitCode::FAILURE
        }
    }
}

fn run(matches: &ArgMatches) -> Result<ExitCode> {
    let cli = Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Prepare(a) => train::prepare(a),
        Command::Train(mut a) => {
            if let Some((_, sub)) = matches.subcommand() {
                config::apply(&mut a, sub)?;
            }
            train::train(*a)
        }
        Command::Generate(mut a) => {
            if let Some((_, sub)) = matches.subcommand() {
                strategy_takes_temperatures(&a, sub)?;
            }
            a.checkpoint = checkpoint_in(a.checkpoint)?;
            generate::generate(a)
        }
        Command::Eval(mut a) => {
            a.checkpoint = checkpoint_in(a.checkpoint)?;
            generate::eval(a)
        }
        Command::Inspect(mut a) => {
            a.checkpoint = checkpoint_in(a.checkpoint)?;
            inspect::inspect(a)
        }
        Command::Bench(a) => bench::bench(a),
        Command::Selftest(a) => selftest::selftest(a),
        Command::Report(a) => report::report(a),
        Command::Completions(a) => report::completions(a),
        Command::Export(mut a) => {
            a.checkpoint = checkpoint_in(a.checkpoint)?;
            interop::export(a)
        }
        Command::Import(a) => interop::import(a),
    }
}

/// A run directory of `train` given where a checkpoint is asked for
/// (`generate --checkpoint runs/nietzsche`) stands for its newest
/// checkpoint, last.safetensors, the one `--resume` reads. Said on stderr
/// (stdout may be a `--json` document), naming best.safetensors where the
/// run kept one, since that may be the one wanted. Any other path is left
/// for the command to open.
fn checkpoint_in(path: PathBuf) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path);
    }
    let last = path.join(LAST_CHECKPOINT);
    if !last.is_file() {
        return Err(Error::Conflict {
            what: format!(
                "{} is a directory with no {LAST_CHECKPOINT} in it, not a checkpoint",
                path.display()
            ),
            fix: "pass a checkpoint file (.safetensors) written by train or import, or the \
                  directory of a train run (--out)"
                .into(),
        });
    }
    let best = path.join(BEST_CHECKPOINT);
    let also = if best.is_file() {
        format!(
            "; the best validation loss is in {}: pass that to use it",
            best.display()
        )
    } else {
        String::new()
    };
    eprintln!(
        "using {}, the run's newest checkpoint{also}",
        last.display()
    );
    Ok(last)
}

/// `--temperature` typed with `--strategy greedy` or `uniform` would be
/// ignored (those strategies have no temperature): refused, so that no one
/// reads a greedy sample as one at the temperature they asked for.
fn strategy_takes_temperatures(a: &args::GenerateArgs, matches: &ArgMatches) -> Result<()> {
    let typed = matches.value_source("temperatures") == Some(ValueSource::CommandLine);
    if !typed || a.strategy == args::StrategyArg::Temperature {
        return Ok(());
    }
    let strategy = match a.strategy {
        args::StrategyArg::Greedy => "greedy",
        _ => "uniform",
    };
    let list: Vec<String> = a.temperatures.iter().map(f64::to_string).collect();
    Err(Error::Conflict {
        what: format!(
            "--temperature {} would be ignored: --strategy {strategy} has no temperature",
            list.join(",")
        ),
        fix: format!(
            "leave out --temperature for {strategy} text, or leave out --strategy {strategy} to \
             sample at those temperatures"
        ),
    })
}
