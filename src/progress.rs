//! Progress bars on stderr. Hidden with `--quiet` and whenever stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` items of work labelled `message`.
pub fn bar(len: u64, message: &'static str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// A counter for work of unknown length (files as they finish).
pub fn spinner(message: &'static str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {pos} files {elapsed} {wide_msg}") {
        bar.set_style(style);
    }
    bar.set_prefix(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A bar over `len` queries that shows their rate and the time left.
pub fn rate_bar(len: u64, message: &'static str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} queries {per_sec} ETA {eta} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// A bar over training steps: the time left, and a message (the loss) beside it.
pub fn steps_bar(len: u64, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    if let Ok(style) = ProgressStyle::with_template("     train [{bar:30}] {pos}/{len} steps ETA {eta} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
