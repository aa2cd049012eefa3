//! Helpers: run the binary, read its CSV output, compute baselines independently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `routerdc` with `args`; `env` adds environment variables.
pub fn routerdc<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    routerdc_with_env(args, &[])
}

pub fn routerdc_with_env<I, S>(args: I, env: &[(&str, &Path)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_routerdc"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the routerdc binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Assert success, showing stderr otherwise.
pub fn ok(output: &Output) {
    assert!(output.status.success(), "routerdc failed ({:?}):\n{}", output.status, stderr(output));
}

/// The RouterDC paper's data (`$ROUTERDC_DATA`), or `None` with a note saying why the test is
/// skipped. In CI (`CI` set) a missing variable is a failure, not a skip. A relative path (as
/// README writes it, `../shared/routerdc-data`) is read from the repository root, where
/// `cargo test` runs, and made absolute once here: tests that run commands in other folders
/// pass it on as it is.
pub fn reference_data() -> Option<PathBuf> {
    match std::env::var_os("ROUTERDC_DATA") {
        Some(dir) if !dir.is_empty() => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            Some(dir.canonicalize().unwrap_or(dir))
        }
        _ if std::env::var_os("CI").is_some() => panic!("ROUTERDC_DATA must be set in CI (see .ci/run)"),
        _ => {
            eprintln!("SKIPPED: set ROUTERDC_DATA to ../shared/routerdc-data to run this test");
            None
        }
    }
}

/// The venv's Python with pandas (`ROUTERDC_PYTHON`, written by scripts/setup.sh), or `None`
/// with a note saying why the test is skipped. In CI a missing variable is a failure.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("ROUTERDC_PYTHON") {
        Some(python) if !python.is_empty() => Some(PathBuf::from(python)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("ROUTERDC_PYTHON must be set in CI (scripts/setup.sh writes it)")
        }
        _ => {
            eprintln!("SKIPPED: run scripts/setup.sh so that ROUTERDC_PYTHON points at a Python with pandas");
            None
        }
    }
}

/// One row of `baselines.csv`, keyed by column name.
pub type CsvRow = BTreeMap<String, String>;

/// Parse a CSV with a header (no quoted commas in the values this reads).
pub fn read_csv(path: &Path) -> Vec<CsvRow> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines.map(|line| header.iter().map(|h| (*h).to_owned()).zip(split_csv_line(line)).collect()).collect()
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

pub fn find<'a>(rows: &'a [CsvRow], dataset: &str, router: &str) -> &'a CsvRow {
    rows.iter()
        .find(|row| row["dataset"] == dataset && row["router"] == router)
        .unwrap_or_else(|| panic!("no row for dataset `{dataset}`, router `{router}`"))
}

pub fn number(row: &CsvRow, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|e| panic!("`{column}` = `{}`: {e}", row[column]))
}

/// acc_predict of every model on a RouterDC JSON file, computed straight from the JSON (an
/// independent path: serde_json values, no routerdc code), in the file's model order.
pub fn direct_acc_predict(path: &Path, probability: bool) -> Vec<(String, f64)> {
    let records: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let models: Vec<String> = records[0]["scores"].as_object().unwrap().keys().cloned().collect();
    models
        .iter()
        .map(|model| {
            let total: f64 = records
                .iter()
                .map(|record| {
                    let score = record["scores"][model].as_f64().unwrap();
                    if probability { if score > 0.0 { 1.0 } else { 0.0 } } else { score }
                })
                .sum();
            (model.clone(), total / records.len() as f64)
        })
        .collect()
}

/// Questions whose best LLM follows their topic (llm-a: maths, llm-b: history, llm-c: poetry):
/// with the default encoder, questions of a topic are each other's nearest neighbours.
pub const TOPIC_QUESTIONS: [(&str, [&str; 4]); 3] = [
    (
        "llm-a",
        [
            "How do I solve a quadratic equation?",
            "What is the derivative of x squared?",
            "Factor the polynomial x^2 - 1.",
            "Integrate sin(x) from 0 to pi.",
        ],
    ),
    (
        "llm-b",
        [
            "Who was the first emperor of Rome?",
            "When did the Second World War end?",
            "What caused the French Revolution?",
            "Who built the pyramids of Giza?",
        ],
    ),
    (
        "llm-c",
        [
            "Write a haiku about autumn leaves.",
            "Compose a sonnet about the sea.",
            "Give me a limerick about a cat.",
            "A short poem about the moon, please.",
        ],
    ),
];
