//! ingest: evaluation-harness per-sample outputs → one scored table per task.
//!
//! 1. [`discover`] walks the inputs and tells each file's layout by content, and which model,
//!    task and run it belongs to (results files, directory names, file-name prefixes, `--model`).
//! 2. Each samples file is parsed ([`records`]), one filter is kept, and each record is scored
//!    ([`score`]) and given its query text ([`text`]); files are parsed in parallel.
//! 3. Models are merged per task on `doc_id` (checked with `doc_hash` and the gold answer), never
//!    by position; then an optional seeded train/test split; then the tables are written.
//!
//! Nothing is written unless every file parsed and every task merged.

pub mod discover;
mod merge;
mod parse;
mod plan;
pub mod records;
pub mod score;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use serde::de::DeserializeSeed;
use serde_json::Value;

use self::discover::FileKind;
use self::merge::merge;
use self::parse::{load_texts, parse_unit};
use self::plan::plan_units;
use self::records::{RecordArraySeed, RecordSeed};
use self::score::{Rule, score_record, wanted_metrics};
use crate::error::{Error, Result};
use crate::table::{MetricKind, ScoredTable, Split};

/// `NAME=PATH`: every file under PATH belongs to model NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPath {
    pub name: String,
    pub path: PathBuf,
}

impl std::str::FromStr for NamedPath {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        match spec.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                Ok(NamedPath { name: name.to_owned(), path: PathBuf::from(path) })
            }
            _ => Err(format!("`{spec}` is not NAME=PATH")),
        }
    }
}

impl From<NamedPath> for String {
    fn from(value: NamedPath) -> String {
        format!("{}={}", value.name, value.path.display())
    }
}

/// Several timestamped runs of one (model, task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Runs {
    /// Keep the newest run (by its timestamp) and say which were left out.
    #[default]
    Newest,
    /// Keep every run as a model of its own, named `<model>@<timestamp>`.
    All,
}

/// Questions that some models lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnMissing {
    /// Stop with an error naming the model, task and ids.
    #[default]
    Error,
    /// Keep only the questions every model answered, and count the rest.
    Drop,
}

/// Settings of `routerdc ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Folder for the scored tables, one `<task>.parquet` per task.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name the model of every file under PATH (repeatable); otherwise the results file's
    /// `model_name`, else the folder name.
    #[arg(long = "model", value_name = "NAME=PATH")]
    pub models: Vec<NamedPath>,
    /// Several timestamped runs of one model and task: keep the newest, or keep all as separate models.
    #[arg(long, value_enum, default_value_t = Runs::Newest)]
    pub runs: Runs,
    /// The lm-eval filter whose records are kept (e.g. `strict-match`); default: each task's first.
    #[arg(long)]
    pub filter: Option<String>,
    /// The per-sample metric for tasks that are neither multiple choice nor `#### N` generations
    /// (default: `exact_match`, else `acc`).
    #[arg(long)]
    pub metric: Option<String>,
    /// The `doc` field holding the query text, for tasks without a built-in text rule.
    #[arg(long)]
    pub text_field: Option<String>,
    /// Problem texts for a bigcode task, `TASK=FILE` (the dataset as JSON lines or a JSON array,
    /// in problem order; humaneval: `prompt`, mbpp: `text` and `test_list`).
    #[arg(long = "texts", value_name = "TASK=FILE")]
    pub texts: Vec<NamedPath>,
    /// Questions missing for some models: stop with an error, or drop them and count them.
    #[arg(long, value_enum, default_value_t = OnMissing::Error)]
    pub on_missing: OnMissing,
    /// Share of each task's questions put in the `train` split (the rest is `test`); no split when absent.
    #[arg(long, value_name = "RATIO")]
    pub split_ratio: Option<f64>,
    /// Seed of the split's shuffle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Harness output files, or folders walked recursively.
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
}

/// One question of one model, scored.
#[derive(Debug, Clone)]
struct Sample {
    doc_id: i64,
    text: String,
    target: String,
    doc_hash: Option<String>,
    score: f64,
}

/// A samples file (or bigcode log) of one model and task, before parsing.
#[derive(Debug, Clone)]
struct Unit {
    path: PathBuf,
    model: String,
    task: String,
    run: Option<String>,
    source: Source,
    /// The task's filters in order, from its results file (to name filters of pre-0.4.7 files).
    filter_names: Option<Vec<String>>,
    /// Whether this unit's query texts are the task's (the first model in name order gives the
    /// texts, so the others skip building them).
    texts_from_here: bool,
}

#[derive(Debug, Clone)]
enum Source {
    LmEval { array: bool },
    Bigcode(Value),
}

/// A parsed unit.
#[derive(Debug)]
struct Parsed {
    unit: Unit,
    rule: Rule,
    samples: Vec<Sample>,
    filter: Option<String>,
    dropped_other_filters: usize,
}

/// One line of the end-of-run summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub task: String,
    pub model: String,
    pub rule: String,
    pub filter: Option<String>,
    /// Questions in the table (those every model answered).
    pub kept: usize,
    /// Records of other filters than the one kept.
    pub dropped_other_filters: usize,
    /// Questions this model answered that some other model lacks (`--on-missing drop`).
    pub dropped_incomplete: usize,
    /// Questions other models answered that this model lacks (`--on-missing drop`).
    pub lacks: usize,
    pub source: PathBuf,
}

/// What an ingest produced.
#[derive(Debug)]
pub struct Ingested {
    pub tables: Vec<ScoredTable>,
    pub summary: Vec<SummaryRow>,
    /// Things the user should know (runs left out, files skipped).
    pub notes: Vec<String>,
}

/// Read, score and merge everything under `config.inputs`; nothing is written.
pub fn ingest(config: &IngestConfig, on_file_done: &(dyn Fn(&Path) + Sync)) -> Result<Ingested> {
    if let Some(ratio) = config.split_ratio
        && !(0.0..=1.0).contains(&ratio)
    {
        return Err(Error::setting("split_ratio", format!("{ratio} is not in [0, 1]")));
    }
    let mut notes = Vec::new();
    let units = plan_units(config, &mut notes)?;
    let texts = load_texts(config)?;
    let metrics = wanted_metrics(config.metric.as_deref());
    let parsed: Vec<Parsed> = units
        .into_par_iter()
        .map(|unit| {
            let result = parse_unit(unit, config, &metrics, &texts);
            if let Ok(parsed) = &result {
                on_file_done(&parsed.unit.path);
            }
            result
        })
        .collect::<Result<_>>()?;

    let mut by_task: BTreeMap<String, Vec<Parsed>> = BTreeMap::new();
    for parsed in parsed {
        by_task.entry(parsed.unit.task.clone()).or_default().push(parsed);
    }
    let mut tables = Vec::with_capacity(by_task.len());
    let mut summary = Vec::new();
    for (task, mut models) in by_task {
        models.sort_by(|a, b| a.unit.model.cmp(&b.unit.model));
        let (table, rows) = merge(&task, models, config)?;
        tables.push(table);
        summary.extend(rows);
    }
    Ok(Ingested { tables, summary, notes })
}

/// Ingest and write one `<task>.parquet` per task into `config.out`.
pub fn run(config: &IngestConfig, on_file_done: &(dyn Fn(&Path) + Sync)) -> Result<(Ingested, Vec<PathBuf>)> {
    let ingested = ingest(config, on_file_done)?;
    let paths = crate::io::write_tables(&ingested.tables, &config.out)?;
    Ok((ingested, paths))
}

#[cfg(test)]
mod tests {
    use super::merge::split;
    use super::*;

    #[test]
    fn splits_are_deterministic_and_sized_by_the_ratio() {
        let a = split("mmlu", 100, Some(0.7), 42);
        assert_eq!(a, split("mmlu", 100, Some(0.7), 42));
        assert_eq!(a.iter().filter(|s| **s == Some(Split::Train)).count(), 70);
        assert_ne!(a, split("mmlu", 100, Some(0.7), 43));
        assert_ne!(a, split("gsm8k", 100, Some(0.7), 42));
        assert_eq!(split("mmlu", 3, None, 42), vec![None; 3]);
    }
}
