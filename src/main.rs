//! `mctl`: parses the command line, runs it, and turns the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use mission_control::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // Already reported on stdout: an answer, not an error.
        Err(e @ mission_control::error::Error::NothingClaimed) => ExitCode::from(e.exit_code()),
        Err(e) => {
            tracing::error!(error = %e, "command failed");
            eprintln!("error: {}", mission_control::domain::text::for_terminal(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
