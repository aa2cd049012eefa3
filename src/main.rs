//! The `routerdc` binary: parse, dispatch, render the error chain, exit code
//! (0 success, 1 failed work, 2 bad input or settings).

use std::error::Error as _;
use std::process::ExitCode;

use clap::Parser;
use routerdc::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match routerdc::commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in std::iter::successors(error.source(), |&cause| cause.source()) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = error.hint() {
                eprintln!("\nhint: {hint}");
            }
            ExitCode::from(if error.is_usage() { 2 } else { 1 })
        }
    }
}
