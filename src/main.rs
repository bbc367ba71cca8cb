//! The `charlstm-cuda` command line: parses, calls the library, prints.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("  hint: {}", e.hint());
            ExitCode::FAILURE
        }
    }
}
