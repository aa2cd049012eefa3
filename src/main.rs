//! The `routerdc` binary: parse, dispatch, render the error chain, exit code
//! (0 success, 1 failed work, 2 bad input or settings).

use std::process::ExitCode;

use clap::Parser;
use routerdc::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match routerdc::commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) => routerdc::report_error(&error),
    }
}
