//! Argument definitions and dispatch.

mod args;
mod bench;
mod config;
mod generate;
mod inspect;
mod interop;
mod interrupt;
mod output;
mod printer;
mod report;
mod selftest;
mod train;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use charlstm_cuda::Result;

pub use args::{Cli, Command};

/// Parses the command line and runs the command.
pub fn run() -> Result<ExitCode> {
    // Parsed in two steps so that `train --config` can tell a flag typed on
    // the command line from a default (flags override the file).
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Prepare(a) => train::prepare(a),
        Command::Train(mut a) => {
            if let Some((_, sub)) = matches.subcommand() {
                config::apply(&mut a, sub)?;
            }
            train::train(a)
        }
        Command::Generate(a) => generate::generate(a),
        Command::Eval(a) => generate::eval(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Bench(a) => bench::bench(a),
        Command::Selftest(a) => selftest::selftest(a),
        Command::Report(a) => report::report(a),
        Command::Completions(a) => report::completions(a),
        Command::Export(a) => interop::export(a),
        Command::Import(a) => interop::import(a),
    }
}
