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
    if let Some(ratio) = config.split_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::setting("split_ratio", format!("{ratio} is not in [0, 1]")));
        }
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
    let paths =
        ingested.tables.iter().map(|table| crate::io::write_table(table, &config.out)).collect::<Result<_>>()?;
    Ok((ingested, paths))
}

/// The samples files and bigcode logs to parse, each with its model, task and run.
fn plan_units(config: &IngestConfig, notes: &mut Vec<String>) -> Result<Vec<Unit>> {
    // Datasets named by `--texts` may sit among the harness outputs; they are not outputs.
    let texts_files: Vec<PathBuf> = config.texts.iter().filter_map(|t| t.path.canonicalize().ok()).collect();
    let files: Vec<PathBuf> = discover::walk(&config.inputs)?
        .into_iter()
        .filter(|path| path.canonicalize().map_or(true, |path| !texts_files.contains(&path)))
        .collect();
    let mut samples: Vec<(PathBuf, bool)> = Vec::new();
    let mut results: Vec<(PathBuf, Value)> = Vec::new();
    let mut bigcode_logs: Vec<(PathBuf, Value)> = Vec::new();
    let mut bigcode_metrics: Vec<(PathBuf, Value)> = Vec::new();
    for path in files {
        match discover::classify_path(&path)? {
            FileKind::LmEvalSamples { array } => samples.push((path, array)),
            FileKind::LmEvalResults(value) => results.push((path, value)),
            FileKind::BigcodeLog(value) => bigcode_logs.push((path, value)),
            FileKind::BigcodeMetrics(value) => bigcode_metrics.push((path, value)),
            FileKind::BigcodeOther => {
                notes.push(format!("skipped `{}` (bigcode generations or references)", path.display()))
            }
        }
    }
    if samples.is_empty() && bigcode_logs.is_empty() {
        return Err(Error::setting(
            "inputs",
            "found no lm-evaluation-harness samples files or bigcode per-sample logs under the inputs",
        ));
    }

    let mut units = Vec::new();
    for (path, array) in samples {
        let dir = path.parent().unwrap_or(Path::new(""));
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let beside: Vec<&Value> = results.iter().filter(|(p, _)| p.parent() == Some(dir)).map(|(_, v)| v).collect();
        let run = discover::date_id(file_name).map(str::to_owned);
        let (task, results_file) = match (discover::samples_task(file_name), &run) {
            (Some(task), Some(run)) => {
                let same_run = results
                    .iter()
                    .find(|(p, _)| {
                        p.parent() == Some(dir)
                            && p.file_name().and_then(|n| n.to_str()).and_then(discover::date_id) == Some(run.as_str())
                    })
                    .map(|(_, v)| v);
                (task.to_owned(), same_run)
            }
            _ => {
                let stem = file_name.trim_end_matches(".jsonl").trim_end_matches(".json");
                let prefixes: Vec<String> = beside
                    .iter()
                    .filter_map(|v| v.pointer("/config/model_args").and_then(Value::as_str))
                    .flat_map(discover::model_args_prefixes)
                    .collect();
                let task = discover::legacy_task(stem, &prefixes).ok_or_else(|| Error::Layout {
                    path: path.clone(),
                    message: "cannot tell its task: put the run's results.json beside it, or name the file `samples_<task>_<date>.jsonl`".into(),
                })?;
                (task, beside.first().copied())
            }
        };
        let model = model_name(config, &path, results_file)?;
        let filter_names = results_file.and_then(|r| filter_names(r, &task));
        units.push(Unit {
            path,
            model,
            task,
            run,
            source: Source::LmEval { array },
            filter_names,
            texts_from_here: false,
        });
    }
    for (path, log) in bigcode_logs {
        let dir = path.parent().unwrap_or(Path::new(""));
        let metrics = bigcode_metrics.iter().find(|(p, _)| p.parent() == Some(dir)).map(|(_, v)| v);
        let model = match metrics.and_then(|m| m.pointer("/config/model")).and_then(Value::as_str) {
            Some(name) if !config.models.iter().any(|m| path.starts_with(&m.path)) => name.to_owned(),
            _ => model_name(config, &path, None)?,
        };
        let wrapped = log.as_object().is_some_and(|o| o.values().all(Value::is_object));
        let tasks: Vec<(String, Value)> = if wrapped {
            log.as_object().into_iter().flatten().map(|(task, problems)| (task.clone(), problems.clone())).collect()
        } else {
            let named: Vec<&String> = metrics
                .and_then(Value::as_object)
                .map(|m| m.keys().filter(|k| *k != "config").collect())
                .unwrap_or_default();
            match named.as_slice() {
                [task] => vec![((*task).clone(), log.clone())],
                _ => {
                    return Err(Error::Layout {
                        path: path.clone(),
                        message: "a bigcode log without its task key needs the run's evaluation_results.json (naming one task) beside it".into(),
                    });
                }
            }
        };
        for (task, problems) in tasks {
            units.push(Unit {
                path: path.clone(),
                model: model.clone(),
                task,
                run: None,
                source: Source::Bigcode(problems),
                filter_names: None,
                texts_from_here: false,
            });
        }
    }
    let mut units = choose_runs(units, config.runs, notes)?;
    let mut first_model: BTreeMap<&str, &str> = BTreeMap::new();
    for unit in &units {
        let first = first_model.entry(&unit.task).or_insert(&unit.model);
        if unit.model.as_str() < *first {
            *first = &unit.model;
        }
    }
    let first_model: BTreeMap<String, String> =
        first_model.into_iter().map(|(task, model)| (task.to_owned(), model.to_owned())).collect();
    for unit in &mut units {
        unit.texts_from_here = first_model.get(&unit.task) == Some(&unit.model);
    }
    Ok(units)
}

/// The model of a file: `--model NAME=PATH`, else the results file's `model_name` (or the model
/// in its `model_args`), else the file's folder name.
fn model_name(config: &IngestConfig, path: &Path, results: Option<&Value>) -> Result<String> {
    if let Some(named) =
        config.models.iter().filter(|m| path.starts_with(&m.path)).max_by_key(|m| m.path.as_os_str().len())
    {
        return Ok(named.name.clone());
    }
    if let Some(results) = results {
        if let Some(name) = results.get("model_name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Ok(name.to_owned());
        }
        if let Some(name) =
            results.pointer("/config/model_args").and_then(Value::as_str).and_then(discover::model_from_args)
        {
            return Ok(name);
        }
    }
    path.parent().and_then(Path::file_name).and_then(|n| n.to_str()).map(str::to_owned).ok_or_else(|| Error::Layout {
        path: path.to_path_buf(),
        message: "cannot tell its model; name it with `--model NAME=PATH`".into(),
    })
}

/// The task's filter names in order, from `configs[task].filter_list` of a results file.
fn filter_names(results: &Value, task: &str) -> Option<Vec<String>> {
    let list = results.pointer(&format!("/configs/{}/filter_list", task.replace('~', "~0").replace('/', "~1")))?;
    list.as_array()?.iter().map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned)).collect()
}

/// Keep one run per (model, task), or every run as its own model (`--runs all`).
fn choose_runs(units: Vec<Unit>, runs: Runs, notes: &mut Vec<String>) -> Result<Vec<Unit>> {
    let mut groups: BTreeMap<(String, String), Vec<Unit>> = BTreeMap::new();
    for unit in units {
        groups.entry((unit.model.clone(), unit.task.clone())).or_default().push(unit);
    }
    let mut chosen = Vec::new();
    for ((model, task), mut group) in groups {
        group.sort_by(|a, b| a.run.cmp(&b.run));
        for pair in group.windows(2) {
            if pair[0].run == pair[1].run {
                return Err(Error::Merge {
                    message: format!(
                        "model `{model}` has two files for task `{task}` from the same run: `{}` and `{}`",
                        pair[0].path.display(),
                        pair[1].path.display()
                    ),
                    hint: "keep one of them, or name the models apart with `--model NAME=PATH`".into(),
                });
            }
        }
        if group.len() > 1 {
            match runs {
                Runs::Newest => {
                    let newest = group.pop().expect("the group has several runs");
                    let older: Vec<String> = group.iter().map(|u| u.run.clone().unwrap_or_default()).collect();
                    notes.push(format!(
                        "model `{model}`, task `{task}`: took the newest run {} and left out {} (use `--runs all` to keep each)",
                        newest.run.as_deref().unwrap_or_default(),
                        older.join(", ")
                    ));
                    chosen.push(newest);
                }
                Runs::All => chosen.extend(group.into_iter().map(|mut unit| {
                    unit.model = format!("{}@{}", unit.model, unit.run.as_deref().unwrap_or_default());
                    unit
                })),
            }
        } else {
            chosen.extend(group);
        }
    }
    Ok(chosen)
}

/// Problem texts per bigcode task (`--texts TASK=FILE`).
fn load_texts(config: &IngestConfig) -> Result<HashMap<String, Vec<String>>> {
    let mut texts = HashMap::new();
    for NamedPath { name: task, path } in &config.texts {
        let bytes = crate::io::read_bytes(path)?;
        let rows: Vec<Value> = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(rows)) => rows,
            _ => bytes
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, line)| line.iter().any(|b| !b.is_ascii_whitespace()))
                .map(|(i, line)| {
                    serde_json::from_slice(line).map_err(|e| Error::Json {
                        path: path.clone(),
                        line: i + 1,
                        column: e.column(),
                        message: e.to_string(),
                    })
                })
                .collect::<Result<_>>()?,
        };
        let family = task.to_ascii_lowercase();
        let problem_text = |(index, row): (usize, &Value)| -> Result<String> {
            let field = |name: &str| row.get(name).and_then(Value::as_str);
            let text = if family.starts_with("mbpp") {
                field("text")
                    .zip(row.pointer("/test_list/0").and_then(Value::as_str))
                    .map(|(text, test)| format!("\"\"\"\n{text}\n{test}\n\"\"\"\n"))
            } else {
                field("prompt").or_else(|| field("text")).map(str::to_owned)
            };
            text.ok_or_else(|| Error::Record {
                path: path.clone(),
                record: index,
                message: "no problem text (`prompt`; for mbpp `text` and `test_list`)".into(),
            })
        };
        texts.insert(task.clone(), rows.iter().enumerate().map(problem_text).collect::<Result<Vec<_>>>()?);
    }
    Ok(texts)
}

fn parse_unit(
    unit: Unit,
    config: &IngestConfig,
    metrics: &[String],
    texts: &HashMap<String, Vec<String>>,
) -> Result<Parsed> {
    match &unit.source {
        Source::LmEval { array } => {
            let array = *array;
            parse_lm_eval(unit, array, config, metrics)
        }
        Source::Bigcode(problems) => {
            let samples = bigcode_samples(&unit, problems, texts)?;
            Ok(Parsed { unit, rule: Rule::Metric("passed".into()), samples, filter: None, dropped_other_filters: 0 })
        }
    }
}

/// Scores of a bigcode pass log: per problem, the fraction of attempts that passed.
fn bigcode_samples(unit: &Unit, problems: &Value, texts: &HashMap<String, Vec<String>>) -> Result<Vec<Sample>> {
    let layout = |message: String| Error::Layout { path: unit.path.clone(), message };
    let problem_texts = texts.get(&unit.task).ok_or_else(|| {
        layout(format!(
            "bigcode logs carry no problem text; pass the `{}` dataset with `--texts {}=FILE`",
            unit.task, unit.task
        ))
    })?;
    let mut samples = Vec::new();
    for (key, attempts) in problems.as_object().into_iter().flatten() {
        let index: usize = key.parse().map_err(|_| layout(format!("problem key `{key}` is not an index")))?;
        let attempts = attempts
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| layout(format!("problem `{key}` has no attempts")))?;
        let mut passed = 0;
        for attempt in attempts {
            let flag = attempt
                .get(1)
                .and_then(|result| result.get("passed"))
                .and_then(records::as_bool)
                .ok_or_else(|| layout(format!("problem `{key}`: an attempt has no boolean `passed`")))?;
            passed += usize::from(flag);
        }
        let text = problem_texts.get(index).ok_or_else(|| {
            layout(format!("problem {index} is beyond the {} problems of the `--texts` file", problem_texts.len()))
        })?;
        samples.push(Sample {
            doc_id: index as i64,
            text: text.clone(),
            target: String::new(),
            doc_hash: None,
            score: passed as f64 / attempts.len() as f64,
        });
    }
    Ok(samples)
}

/// Parse an lm-eval samples file, score every record, and keep one filter's records.
fn parse_lm_eval(unit: Unit, array: bool, config: &IngestConfig, metrics: &[String]) -> Result<Parsed> {
    let bytes = crate::io::map_file(&unit.path)?;
    let bytes: &[u8] = &bytes;
    let mut buckets = FilterBuckets::default();
    let mut rule: Option<(Rule, usize)> = None;
    let mut handle = |location: usize, record: records::Record<'_>| -> Result<(), String> {
        let doc_id = record.doc_id.expect("the record parser requires doc_id");
        let scored = score_record(&record, &unit.task, config.metric.as_deref())?;
        match &rule {
            None => rule = Some((scored.rule.clone(), location)),
            Some((first, at)) if *first != scored.rule => {
                return Err(format!("it is scored as {} but {at} as {}", scored.rule.describe(), first.describe()));
            }
            Some(_) => {}
        }
        let text = if unit.texts_from_here {
            text::query_text(&unit.task, &record, config.text_field.as_deref())?
        } else {
            String::new()
        };
        let sample = Sample { doc_id, text, target: scored.target, doc_hash: record.doc_hash, score: scored.score };
        buckets.push(record.filter, sample, location)
    };

    if array {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let mut failure: Option<(usize, String)> = None;
        let seed = RecordArraySeed {
            metrics,
            each: |index: usize, record| {
                handle(index, record).map_err(|message| {
                    failure = Some((index, message.clone()));
                    message
                })
            },
        };
        let parsed = seed.deserialize(&mut deserializer).and_then(|_| deserializer.end());
        if let Err(error) = parsed {
            let message = match failure {
                Some((index, message)) => format!("record {index}: {message}"),
                None => crate::io::json::describe_error(bytes, &error),
            };
            return Err(Error::Json { path: unit.path.clone(), line: error.line(), column: error.column(), message });
        }
    } else {
        let mut line_start = 0;
        let mut line_number = 0;
        while line_start < bytes.len() {
            line_number += 1;
            let line_end = memchr::memchr(b'\n', &bytes[line_start..]).map_or(bytes.len(), |i| line_start + i);
            let line = &bytes[line_start..line_end];
            line_start = line_end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The fast scan reads well-formed lines without validating the values it skips.
            // serde_json reads every other line, and re-reads a line whose record failed, so
            // that errors name the exact place (a `NaN` inside `resps`, a truncated line).
            let strict = || {
                let mut deserializer = serde_json::Deserializer::from_slice(line);
                RecordSeed { metrics }
                    .deserialize(&mut deserializer)
                    .and_then(|record| deserializer.end().map(|()| record))
            };
            let json_error = |error: serde_json::Error| {
                let truncated = error.is_eof() && line_end == bytes.len();
                let message = crate::io::json::describe_error(line, &error);
                Error::Json {
                    path: unit.path.clone(),
                    line: line_number,
                    column: error.column(),
                    message: if truncated { format!("{message} (the last line is truncated)") } else { message },
                }
            };
            let (record, fast) = match records::scan_record(line, metrics) {
                Some(record) => (record, true),
                None => (strict().map_err(json_error)?, false),
            };
            if let Err(message) = handle(line_number, record) {
                if fast {
                    strict().map_err(json_error)?;
                }
                return Err(Error::Json { path: unit.path.clone(), line: line_number, column: 1, message });
            }
        }
    }
    let (rule, _) = rule.ok_or_else(|| Error::EmptyFile { path: unit.path.clone() })?;
    let (filter, samples, dropped_other_filters) = buckets
        .choose(config.filter.as_deref(), unit.filter_names.as_deref())
        .map_err(|message| Error::Layout { path: unit.path.clone(), message })?;
    Ok(Parsed { unit, rule, samples, filter, dropped_other_filters })
}

/// A file's records grouped by filter, in order of first appearance.
///
/// lm-eval 0.4.7+ names each record's filter; older files hold one block of records per filter,
/// in the task's `filter_list` order, so there the k-th record of a doc belongs to the k-th filter.
#[derive(Default)]
struct FilterBuckets {
    buckets: Vec<(FilterKey, Vec<Sample>, HashMap<i64, usize>)>,
    occurrences: HashMap<i64, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterKey {
    Named(String),
    /// The k-th block of an older file whose records carry no `filter`.
    Block(usize),
}

impl FilterBuckets {
    fn push(&mut self, filter: Option<String>, sample: Sample, location: usize) -> Result<(), String> {
        let key = match filter {
            Some(name) => FilterKey::Named(name),
            None => {
                let occurrence = self.occurrences.entry(sample.doc_id).or_insert(0);
                *occurrence += 1;
                FilterKey::Block(*occurrence - 1)
            }
        };
        let index = match self.buckets.iter().position(|(k, _, _)| *k == key) {
            Some(index) => index,
            None => {
                self.buckets.push((key, Vec::new(), HashMap::new()));
                self.buckets.len() - 1
            }
        };
        let (key, samples, seen) = &mut self.buckets[index];
        if let Some(first) = seen.insert(sample.doc_id, location) {
            let filter = match key {
                FilterKey::Named(name) => format!("filter `{name}`"),
                FilterKey::Block(_) => "one filter".to_owned(),
            };
            return Err(format!("doc_id {} appears twice for {filter} (also at {first})", sample.doc_id));
        }
        samples.push(sample);
        Ok(())
    }

    /// The kept filter's name (when known), its samples, and how many records other filters had.
    fn choose(
        self,
        wanted: Option<&str>,
        names: Option<&[String]>,
    ) -> Result<(Option<String>, Vec<Sample>, usize), String> {
        let name_of = |key: &FilterKey| match key {
            FilterKey::Named(name) => Some(name.clone()),
            FilterKey::Block(k) => names.and_then(|names| names.get(*k).cloned()),
        };
        let available: Vec<String> =
            self.buckets.iter().map(|(key, _, _)| name_of(key).unwrap_or_else(|| "(unnamed)".into())).collect();
        let index = match wanted {
            None => 0,
            Some(wanted) => match self.buckets.iter().position(|(key, _, _)| name_of(key).as_deref() == Some(wanted)) {
                Some(index) => index,
                // A task with a single filter (multiple choice: `none`) has nothing to choose.
                None if self.buckets.len() == 1 => 0,
                None => return Err(format!("`--filter {wanted}` is not among its filters {available:?}")),
            },
        };
        // Without filter names, every block must hold the same docs; a doc seen more often than
        // the others is a duplicate record, not another filter.
        if self.buckets.iter().any(|(key, _, _)| matches!(key, FilterKey::Block(_))) {
            let counts = |id: &i64| self.occurrences.get(id).copied().unwrap_or(0);
            let most = self.occurrences.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)));
            let least = self.occurrences.iter().min_by_key(|(id, n)| (**n, **id));
            let too_many_blocks = names.is_some_and(|names| self.buckets.len() > names.len());
            if let (Some((most_id, &most_n)), Some((least_id, &least_n))) = (most, least) {
                if most_n != least_n || too_many_blocks {
                    let times = |n: usize| match n {
                        1 => "once".to_owned(),
                        2 => "twice".to_owned(),
                        n => format!("{n} times"),
                    };
                    let filters =
                        names.map_or(String::new(), |names| format!(" and the task has {} filter(s)", names.len()));
                    return Err(format!(
                        "doc_id {most_id} appears {} but doc_id {least_id} {}{filters}; records without a `filter` \
                         come in one block per filter, so this is a duplicate record",
                        times(most_n),
                        times(counts(least_id))
                    ));
                }
            }
        }
        let total: usize = self.buckets.iter().map(|(_, samples, _)| samples.len()).sum();
        let mut buckets = self.buckets;
        let (key, samples, _) = buckets.swap_remove(index);
        let dropped = total - samples.len();
        Ok((name_of(&key), samples, dropped))
    }
}

/// Merge the models of one task on `doc_id` into a scored table.
fn merge(task: &str, models: Vec<Parsed>, config: &IngestConfig) -> Result<(ScoredTable, Vec<SummaryRow>)> {
    let first_rule = models[0].rule.clone();
    if let Some(other) = models.iter().find(|m| m.rule != first_rule) {
        return Err(Error::Merge {
            message: format!(
                "task `{task}`: model `{}` is scored as {} but `{}` as {}",
                models[0].unit.model,
                first_rule.describe(),
                other.unit.model,
                other.rule.describe()
            ),
            hint: "the models' outputs come from different task versions; re-run them with one lm-eval version".into(),
        });
    }
    let by_doc: Vec<HashMap<i64, &Sample>> =
        models.iter().map(|m| m.samples.iter().map(|s| (s.doc_id, s)).collect()).collect();
    let all_ids: BTreeSet<i64> = by_doc.iter().flat_map(|docs| docs.keys().copied()).collect();
    let mut missing_per_model = vec![0usize; models.len()];
    for (index, docs) in by_doc.iter().enumerate() {
        let missing: Vec<i64> = all_ids.iter().copied().filter(|id| !docs.contains_key(id)).collect();
        if !missing.is_empty() && config.on_missing == OnMissing::Error {
            let shown: Vec<String> = missing.iter().take(8).map(i64::to_string).collect();
            return Err(Error::Merge {
                message: format!(
                    "task `{task}`: model `{}` lacks {} of the {} questions (doc_id {}{})",
                    models[index].unit.model,
                    missing.len(),
                    all_ids.len(),
                    shown.join(", "),
                    if missing.len() > shown.len() { ", ..." } else { "" }
                ),
                hint: "re-run that model on the whole task, or pass `--on-missing drop` to keep only the questions every model answered".into(),
            });
        }
        missing_per_model[index] = missing.len();
    }
    let kept: Vec<i64> = all_ids.into_iter().filter(|id| by_doc.iter().all(|docs| docs.contains_key(id))).collect();
    if kept.is_empty() {
        return Err(Error::Merge {
            message: format!("task `{task}`: no question is answered by every model"),
            hint: "check that the files of this task come from the same task and split".into(),
        });
    }
    let n_models = models.len();
    let mut scores = Vec::with_capacity(kept.len() * n_models);
    let mut texts = Vec::with_capacity(kept.len());
    for &doc_id in &kept {
        let first = by_doc[0][&doc_id];
        for (index, docs) in by_doc.iter().enumerate() {
            let sample = docs[&doc_id];
            if let (Some(a), Some(b)) = (&first.doc_hash, &sample.doc_hash) {
                if a != b {
                    return Err(mismatch(task, doc_id, "doc_hash", &models[0].unit.model, &models[index].unit.model));
                }
            }
            if sample.target != first.target {
                return Err(mismatch(task, doc_id, "target", &models[0].unit.model, &models[index].unit.model));
            }
            scores.push(sample.score);
        }
        texts.push(first.text.clone());
    }
    let splits = split(task, kept.len(), config.split_ratio, config.seed);
    let kind = match &first_rule {
        Rule::MultipleChoice { .. } => MetricKind::Probability,
        Rule::SampledGeneration => MetricKind::MultiAttempt,
        Rule::Metric(_) => MetricKind::for_dataset(task).unwrap_or(MetricKind::MultiAttempt),
    };
    let table = ScoredTable {
        dataset: task.to_owned(),
        kind,
        models: models.iter().map(|m| m.unit.model.clone()).collect(),
        query_ids: kept.iter().map(i64::to_string).collect(),
        texts,
        splits,
        cluster_ids: vec![None; kept.len()],
        scores,
        costs: None,
    };
    let rows = models
        .iter()
        .zip(missing_per_model)
        .map(|(parsed, missing)| SummaryRow {
            task: task.to_owned(),
            model: parsed.unit.model.clone(),
            rule: parsed.rule.describe(),
            filter: parsed.filter.clone(),
            kept: kept.len(),
            dropped_other_filters: parsed.dropped_other_filters,
            dropped_incomplete: parsed.samples.len() - kept.len(),
            lacks: missing,
            source: parsed.unit.path.clone(),
        })
        .collect();
    Ok((table, rows))
}

fn mismatch(task: &str, doc_id: i64, field: &str, first: &str, other: &str) -> Error {
    Error::Merge {
        message: format!("task `{task}`, doc_id {doc_id}: `{field}` differs between models `{first}` and `{other}`"),
        hint: "the files hold different questions under one doc_id (another dataset version, split or task); ingest them separately".into(),
    }
}

/// A deterministic train/test split of `n` questions: a seeded shuffle (xoshiro256++, seeded
/// with `seed` and the task name), the first `round(ratio × n)` go to `train`.
fn split(task: &str, n: usize, ratio: Option<f64>, seed: u64) -> Vec<Option<Split>> {
    let Some(ratio) = ratio else { return vec![None; n] };
    let task_hash = task
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ task_hash);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let n_train = (ratio * n as f64).round() as usize;
    let mut splits = vec![Some(Split::Test); n];
    for &index in &order[..n_train] {
        splits[index] = Some(Split::Train);
    }
    splits
}

#[cfg(test)]
mod tests {
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
