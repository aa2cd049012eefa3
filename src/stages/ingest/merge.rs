//! Merging the models' samples of one task on `doc_id` into a scored table, and the seeded
//! train/test split.

use super::*;

/// Merge the models of one task on `doc_id` into a scored table.
pub(super) fn merge(task: &str, models: Vec<Parsed>, config: &IngestConfig) -> Result<(ScoredTable, Vec<SummaryRow>)> {
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
            if let (Some(a), Some(b)) = (&first.doc_hash, &sample.doc_hash)
                && a != b
            {
                return Err(mismatch(task, doc_id, "doc_hash", &models[0].unit.model, &models[index].unit.model));
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

pub(super) fn mismatch(task: &str, doc_id: i64, field: &str, first: &str, other: &str) -> Error {
    Error::Merge {
        message: format!("task `{task}`, doc_id {doc_id}: `{field}` differs between models `{first}` and `{other}`"),
        hint: "the files hold different questions under one doc_id (another dataset version, split or task); ingest them separately".into(),
    }
}

/// A deterministic train/test split of `n` questions: a seeded shuffle (xoshiro256++, seeded
/// with `seed` and the task name), the first `round(ratio × n)` go to `train`.
pub(super) fn split(task: &str, n: usize, ratio: Option<f64>, seed: u64) -> Vec<Option<Split>> {
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
