//! The decision log: one JSON line per request, written by its own thread (a request never waits
//! on the disk; lines are dropped, and counted, if the writer falls behind), moved to
//! `<path>.1` when it reaches its size (`.1` to `.2`, ..., the oldest dropped).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use super::LogSettings;
use crate::error::{Error, Result};

pub struct DecisionLog {
    sender: SyncSender<String>,
    /// Whether lines carry the routed text.
    pub text: bool,
}

impl DecisionLog {
    /// Open (append to) the log and start its writer; the thread ends, with every line written,
    /// once every [`DecisionLog`] is dropped.
    pub fn open(settings: &LogSettings) -> Result<(DecisionLog, std::thread::JoinHandle<()>)> {
        let file = open(&settings.path)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(8192);
        let text = settings.text;
        let settings = settings.clone();
        let worker = std::thread::Builder::new()
            .name("routerdc-log".into())
            .spawn(move || write_lines(&receiver, file, &settings))
            .map_err(|source| Error::failed("Failed to start the decision log's writer", source))?;
        Ok((DecisionLog { sender, text }, worker))
    }

    /// Queue one line; false when it was dropped.
    pub fn write(&self, line: &serde_json::Value) -> bool {
        self.sender.try_send(line.to_string()).is_ok()
    }
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `<path>` → `<path>.1` → ... → `<path>.<keep>`; the oldest is overwritten.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

fn write_lines(receiver: &Receiver<String>, file: std::fs::File, settings: &LogSettings) {
    let mut size = file.metadata().map_or(0, |meta| meta.len());
    let mut out = std::io::BufWriter::new(file);
    let complain = |error: std::io::Error| eprintln!("decision log `{}`: {error}", settings.path.display());
    while let Ok(first) = receiver.recv() {
        let mut line = Some(first);
        while let Some(text) = line.take() {
            let length = text.len() as u64 + 1;
            if size > 0 && size + length > settings.max_bytes {
                if let Err(error) = out.flush() {
                    complain(error);
                }
                match rotate(&settings.path, settings.keep)
                    .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&settings.path))
                {
                    Ok(file) => {
                        out = std::io::BufWriter::new(file);
                        size = 0;
                    }
                    Err(error) => complain(error),
                }
            }
            if let Err(error) = writeln!(out, "{text}") {
                complain(error);
            }
            size += length;
            line = receiver.try_recv().ok();
        }
        // Nothing more waiting: the lines reach the file now.
        if let Err(error) = out.flush() {
            complain(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let settings = LogSettings { path: path.clone(), max_bytes: 100, keep: 2, text: false };
        let (log, worker) = DecisionLog::open(&settings).unwrap();
        for n in 0..20 {
            assert!(log.write(&serde_json::json!({"n": n, "pad": "xxxxxxxxxxxxxxxxxxxx"})));
        }
        drop(log);
        worker.join().unwrap();
        let numbers = |p: &Path| -> Vec<u64> {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines()
                .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["n"].as_u64().unwrap())
                .collect()
        };
        // 37–38 bytes a line, 100 a file: two lines a file; the current file and two rotated
        // ones are kept, the older lines are gone.
        assert_eq!(numbers(&path), [18, 19]);
        assert_eq!(numbers(&rotated(&path, 1)), [16, 17]);
        assert_eq!(numbers(&rotated(&path, 2)), [14, 15]);
        assert!(!rotated(&path, 3).exists());
    }
}
