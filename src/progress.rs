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

/// Progress for logs: when stderr is not a terminal (CI, `nohup`, a pipeline's log) the bars
/// draw nothing, so long work says where it is with a plain line at most every `every`.
pub struct LogLines {
    enabled: bool,
    every: std::time::Duration,
    last: std::time::Instant,
}

impl LogLines {
    pub fn new(quiet: bool, every: std::time::Duration) -> LogLines {
        use std::io::IsTerminal as _;
        LogLines { enabled: !quiet && !std::io::stderr().is_terminal(), every, last: std::time::Instant::now() }
    }

    /// Print a line that a terminal sees above the bar (which hides it when there is none).
    pub fn say(&self, line: &str) {
        if self.enabled {
            eprintln!("{line}");
        }
    }

    /// Print `line()` if the interval has passed since the last line (or `force`).
    pub fn tick(&mut self, force: bool, line: impl FnOnce() -> String) {
        if self.enabled && (force || self.last.elapsed() >= self.every) {
            eprintln!("{}", line());
            self.last = std::time::Instant::now();
        }
    }
}
