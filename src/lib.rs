//! routerdc: raw LLM evaluation outputs → scored tables → a trained RouterDC router → reports.
//!
//! The library holds every stage; the `routerdc` binary is a thin shell over [`commands`].
//! Scored tables (parquet, layout in [`table`]) are what the stages exchange.

pub mod cli;
pub mod commands;
pub mod data;
pub mod doctor;
pub mod error;
pub mod hf;
pub mod io;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod routing;
pub mod serve;
pub mod stages;
pub mod table;

pub use error::{Error, Result};

/// Print `error` with its causes and hint on stderr; the exit code: 2 for bad input or
/// settings, 1 for failed work.
pub fn report_error(error: &Error) -> std::process::ExitCode {
    use std::error::Error as _;
    eprintln!("error: {error}");
    for cause in std::iter::successors(error.source(), |&cause| cause.source()) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = error.hint() {
        eprintln!("\nhint: {hint}");
    }
    std::process::ExitCode::from(if error.is_usage() { 2 } else { 1 })
}

/// `routerdc-torch`, the libtorch side of routerdc, which sits next to the `routerdc` binary.
pub fn torch_helper() -> std::path::PathBuf {
    let name = format!("routerdc-torch{}", std::env::consts::EXE_SUFFIX);
    match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(name),
        // Where the running binary cannot be found (no /proc), the helper is looked up on PATH;
        // if it is not there either, running it fails with an error naming it.
        Err(_) => std::path::PathBuf::from(name),
    }
}
