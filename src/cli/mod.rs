//! Argument definitions and dispatch.

mod args;
mod bench;
mod generate;
mod interop;
mod interrupt;
mod printer;
mod selftest;
mod train;

use std::process::ExitCode;

use clap::Parser;

use charlstm_cuda::Result;

pub use args::{Cli, Command};

/// Parses the command line and runs the command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Prepare(a) => train::prepare(a),
        Command::Train(a) => train::train(a),
        Command::Generate(a) => generate::generate(a),
        Command::Eval(a) => generate::eval(a),
        Command::Bench(a) => bench::bench(a),
        Command::Selftest(a) => selftest::selftest(a),
        Command::Export(a) => interop::export(a),
        Command::Import(a) => interop::import(a),
    }
}
