//! Which files make which (model, task) unit: the inputs walked and told apart, each file's
//! model and task found, and the runs to keep chosen (`--runs`).

use super::*;

/// The samples files and bigcode logs to parse, each with its model, task and run.
pub(super) fn plan_units(config: &IngestConfig, notes: &mut Vec<String>) -> Result<Vec<Unit>> {
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

    // lm-eval writes `results_<time>.json` beside each `samples_<task>_<time>.jsonl`: when only the
    // samples file was named, its results file (which names the model) is found by the time.
    for (path, _) in &samples {
        let Some(run) = path.file_name().and_then(|n| n.to_str()).and_then(discover::date_id) else { continue };
        let dir = path.parent().unwrap_or(Path::new(""));
        let has_results = results.iter().any(|(p, _)| {
            p.parent() == Some(dir) && p.file_name().and_then(|n| n.to_str()).and_then(discover::date_id) == Some(run)
        });
        if has_results {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("results") && name.ends_with(".json") && discover::date_id(&name) == Some(run) {
                let beside = dir.join(&name);
                if let FileKind::LmEvalResults(value) = discover::classify_path(&beside)? {
                    results.push((beside, value));
                }
            }
        }
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
pub(super) fn model_name(config: &IngestConfig, path: &Path, results: Option<&Value>) -> Result<String> {
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
pub(super) fn filter_names(results: &Value, task: &str) -> Option<Vec<String>> {
    let list = results.pointer(&format!("/configs/{}/filter_list", task.replace('~', "~0").replace('/', "~1")))?;
    list.as_array()?.iter().map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned)).collect()
}

/// Keep one run per (model, task), or every run as its own model (`--runs all`).
pub(super) fn choose_runs(units: Vec<Unit>, runs: Runs, notes: &mut Vec<String>) -> Result<Vec<Unit>> {
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
