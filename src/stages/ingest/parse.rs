//! Parsing one unit's samples file into scored samples: lm-evaluation-harness records (one
//! filter kept) and bigcode-evaluation-harness generations with their problems' texts.

use super::*;

/// Problem texts per bigcode task (`--texts TASK=FILE`).
pub(super) fn load_texts(config: &IngestConfig) -> Result<HashMap<String, Vec<String>>> {
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
                        message: crate::io::json::describe_error(line, &e),
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

pub(super) fn parse_unit(
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
pub(super) fn bigcode_samples(
    unit: &Unit,
    problems: &Value,
    texts: &HashMap<String, Vec<String>>,
) -> Result<Vec<Sample>> {
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
pub(super) fn parse_lm_eval(unit: Unit, array: bool, config: &IngestConfig, metrics: &[String]) -> Result<Parsed> {
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
                handle(index, record).inspect_err(|message| {
                    failure = Some((index, message.clone()));
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
pub(super) struct FilterBuckets {
    buckets: Vec<(FilterKey, Vec<Sample>, HashMap<i64, usize>)>,
    occurrences: HashMap<i64, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FilterKey {
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
            if let (Some((most_id, &most_n)), Some((least_id, &least_n))) = (most, least)
                && (most_n != least_n || too_many_blocks)
            {
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
        let total: usize = self.buckets.iter().map(|(_, samples, _)| samples.len()).sum();
        let mut buckets = self.buckets;
        let (key, samples, _) = buckets.swap_remove(index);
        let dropped = total - samples.len();
        Ok((name_of(&key), samples, dropped))
    }
}
