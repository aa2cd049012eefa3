//! Scored tables: one row per query, one score (and optionally one cost) per candidate LLM.
//!
//! On disk a scored table is one parquet file, `<dataset>.parquet`, with these columns in this
//! order (README, "Scored tables"):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `dataset` | string | the table's name (constant), so several files concatenate cleanly |
//! | `query_id` | string | stable id, unique within the table |
//! | `text` | string | the query as the router sees it |
//! | `split` | string, nullable | `train` / `test` |
//! | `cluster_id` | int64, nullable | k-means cluster of the query |
//! | `metric_kind` | string | `probability`, `multi_attempt` or `cost_aware` (constant) |
//! | `score:<model>` | float64 | one per LLM; **their order is the model order** |
//! | `cost:<model>` | float64 | optional; all models or none, same order |
//!
//! The model order fixes the index of each LLM embedding, so it is part of the table and is
//! checked across every table used together ([`check_same_models`]).

use std::fmt;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

pub const DATASET: &str = "dataset";
pub const QUERY_ID: &str = "query_id";
pub const TEXT: &str = "text";
pub const SPLIT: &str = "split";
pub const CLUSTER_ID: &str = "cluster_id";
pub const METRIC_KIND: &str = "metric_kind";
pub const SCORE_PREFIX: &str = "score:";
pub const COST_PREFIX: &str = "cost:";

/// How a task's per-query score is read (`docs/method.md`, "Scored tables").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Multiple choice: a score > 0 means "answered correctly".
    Probability,
    /// The score is the fraction of attempts that were correct.
    MultiAttempt,
    /// Quality in [0, 1] with a cost in dollars per query (RouterBench).
    CostAware,
}

impl MetricKind {
    pub const ALL: [MetricKind; 3] = [MetricKind::Probability, MetricKind::MultiAttempt, MetricKind::CostAware];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Probability => "probability",
            MetricKind::MultiAttempt => "multi_attempt",
            MetricKind::CostAware => "cost_aware",
        }
    }

    /// The value a router earns by sending a query with this score to an LLM (`acc_predict`):
    /// for `probability` a score > 0 counts as 1, otherwise the raw score counts.
    pub fn credit(self, score: f64) -> f64 {
        match self {
            MetricKind::Probability => f64::from(u8::from(score > 0.0)),
            MetricKind::MultiAttempt | MetricKind::CostAware => score,
        }
    }

    /// The reference's kind for a dataset name (`docs/method.md`, "Scored tables"), or `None` for an unknown family.
    ///
    /// The name's family is its leading word: `cmmlu_test` is cmmlu, `gsm8k-train` is gsm8k,
    /// `MATH_prealgebra` is MATH.
    pub fn for_dataset(name: &str) -> Option<MetricKind> {
        let lower = name.to_ascii_lowercase();
        const FAMILIES: [(&str, MetricKind); 9] = [
            ("cmmlu", MetricKind::Probability),
            ("mmlu", MetricKind::Probability),
            ("arc", MetricKind::Probability),
            ("math", MetricKind::Probability),
            ("ceval", MetricKind::Probability),
            ("hellaswag", MetricKind::Probability),
            ("gsm8k", MetricKind::MultiAttempt),
            ("humaneval", MetricKind::MultiAttempt),
            ("mbpp", MetricKind::MultiAttempt),
        ];
        FAMILIES.iter().find(|(family, _)| lower.starts_with(family)).map(|&(_, kind)| kind)
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MetricKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        MetricKind::ALL.into_iter().find(|kind| kind.as_str() == value).ok_or_else(|| {
            format!("unknown metric kind `{value}`; expected one of probability, multi_attempt, cost_aware")
        })
    }
}

/// Which part of a split a query belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// The split a RouterDC file name carries (`mmlu_train`, `gsm8k-test`), if any.
    pub fn from_dataset_name(name: &str) -> Option<Split> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with("_train") || lower.ends_with("-train") {
            Some(Split::Train)
        } else if lower.ends_with("_test") || lower.ends_with("-test") {
            Some(Split::Test)
        } else {
            None
        }
    }
}

/// A scored table in memory. Scores and costs are row-major `[n_queries × n_models]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredTable {
    pub dataset: String,
    pub kind: MetricKind,
    pub models: Vec<String>,
    pub query_ids: Vec<String>,
    pub texts: Vec<String>,
    pub splits: Vec<Option<Split>>,
    pub cluster_ids: Vec<Option<i64>>,
    pub scores: Vec<f64>,
    pub costs: Option<Vec<f64>>,
}

impl ScoredTable {
    pub fn n_queries(&self) -> usize {
        self.query_ids.len()
    }

    pub fn n_models(&self) -> usize {
        self.models.len()
    }

    /// The score vector of query `row`, in model order.
    pub fn score_row(&self, row: usize) -> &[f64] {
        let n = self.n_models();
        &self.scores[row * n..(row + 1) * n]
    }

    /// The cost vector of query `row`, when the table has costs.
    pub fn cost_row(&self, row: usize) -> Option<&[f64]> {
        let n = self.n_models();
        self.costs.as_ref().map(|costs| &costs[row * n..(row + 1) * n])
    }

    /// The table with only the rows for which `keep(row)` holds.
    pub fn select_rows(&self, keep: impl Fn(usize) -> bool) -> ScoredTable {
        let rows: Vec<usize> = (0..self.n_queries()).filter(|&row| keep(row)).collect();
        let pick = |values: &[f64]| -> Vec<f64> {
            rows.iter()
                .flat_map(|&row| values[row * self.n_models()..(row + 1) * self.n_models()].iter().copied())
                .collect()
        };
        ScoredTable {
            dataset: self.dataset.clone(),
            kind: self.kind,
            models: self.models.clone(),
            query_ids: rows.iter().map(|&row| self.query_ids[row].clone()).collect(),
            texts: rows.iter().map(|&row| self.texts[row].clone()).collect(),
            splits: rows.iter().map(|&row| self.splits[row]).collect(),
            cluster_ids: rows.iter().map(|&row| self.cluster_ids[row]).collect(),
            scores: pick(&self.scores),
            costs: self.costs.as_deref().map(pick),
        }
    }

    /// Check the invariants every stage relies on; `path` names the table in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let n = self.n_queries();
        let t = self.n_models();
        if t == 0 {
            return Err(Error::table(path, "it lists no models"));
        }
        if n == 0 {
            return Err(Error::table(path, "it has no queries"));
        }
        let lengths = [self.texts.len(), self.splits.len(), self.cluster_ids.len()];
        if lengths.iter().any(|&len| len != n) || self.scores.len() != n * t {
            return Err(Error::table(path, "its columns have different lengths"));
        }
        if let Some(costs) = &self.costs
            && costs.len() != n * t
        {
            return Err(Error::table(path, "its cost columns have a different length"));
        }
        let mut seen = std::collections::HashSet::with_capacity(n);
        for id in &self.query_ids {
            if !seen.insert(id.as_str()) {
                return Err(Error::table(path, format!("`{QUERY_ID}` `{id}` appears twice")));
            }
        }
        for (row, scores) in self.scores.chunks_exact(t).enumerate() {
            for (model, &score) in self.models.iter().zip(scores) {
                if !(0.0..=1.0).contains(&score) {
                    return Err(Error::table(
                        path,
                        format!(
                            "query `{}` has score {score} for `{model}`; scores must lie in [0, 1]",
                            self.query_ids[row]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The table as a polars frame in the on-disk layout (module docs).
    pub fn to_frame(&self) -> Result<DataFrame> {
        let n = self.n_queries();
        let t = self.n_models();
        let mut columns = vec![
            Column::new(DATASET.into(), vec![self.dataset.as_str(); n]),
            Column::new(QUERY_ID.into(), &self.query_ids),
            Column::new(TEXT.into(), &self.texts),
            Column::new(SPLIT.into(), self.splits.iter().map(|s| s.map(Split::as_str)).collect::<Vec<_>>()),
            Column::new(CLUSTER_ID.into(), &self.cluster_ids),
            Column::new(METRIC_KIND.into(), vec![self.kind.as_str(); n]),
        ];
        for (index, model) in self.models.iter().enumerate() {
            let values: Vec<f64> = (0..n).map(|row| self.scores[row * t + index]).collect();
            columns.push(Column::new(format!("{SCORE_PREFIX}{model}").into(), values));
        }
        if let Some(costs) = &self.costs {
            for (index, model) in self.models.iter().enumerate() {
                let values: Vec<f64> = (0..n).map(|row| costs[row * t + index]).collect();
                columns.push(Column::new(format!("{COST_PREFIX}{model}").into(), values));
            }
        }
        DataFrame::new_infer_height(columns).map_err(Error::polars("building a scored table"))
    }

    /// Read a frame in the on-disk layout; `path` names the file in errors.
    pub fn from_frame(frame: &DataFrame, path: &Path) -> Result<ScoredTable> {
        let names: Vec<String> = frame.get_column_names().iter().map(|name| name.to_string()).collect();
        let required = [DATASET, QUERY_ID, TEXT, METRIC_KIND];
        if let Some(missing) = required.iter().find(|name| !names.iter().any(|n| n == *name)) {
            return Err(Error::table(path, format!("column `{missing}` is missing")));
        }
        let models: Vec<String> =
            names.iter().filter_map(|name| name.strip_prefix(SCORE_PREFIX)).map(str::to_owned).collect();
        let cost_models: Vec<String> =
            names.iter().filter_map(|name| name.strip_prefix(COST_PREFIX)).map(str::to_owned).collect();
        if models.is_empty() {
            return Err(Error::table(path, format!("it has no `{SCORE_PREFIX}<model>` columns")));
        }
        if !cost_models.is_empty() && cost_models != models {
            return Err(Error::table(
                path,
                format!(
                    "its cost columns {cost_models:?} do not match its score columns {models:?} (same models, same order)"
                ),
            ));
        }

        let strings = |name: &str| -> Result<Vec<Option<String>>> {
            let column = frame.column(name).map_err(Error::polars(format!("reading `{name}`")))?;
            let column = column
                .cast(&DataType::String)
                .map_err(|_| Error::table(path, format!("column `{name}` is not text")))?;
            let chunked = column.str().map_err(Error::polars(format!("reading `{name}`")))?;
            Ok(chunked.iter().map(|value| value.map(str::to_owned)).collect())
        };
        let required_strings = |name: &str| -> Result<Vec<String>> {
            strings(name)?
                .into_iter()
                .enumerate()
                .map(|(row, value)| {
                    value.ok_or_else(|| Error::table(path, format!("column `{name}` is null in row {row}")))
                })
                .collect()
        };
        let floats = |name: &str| -> Result<Vec<f64>> {
            let column = frame.column(name).map_err(Error::polars(format!("reading `{name}`")))?;
            let column = column
                .cast(&DataType::Float64)
                .map_err(|_| Error::table(path, format!("column `{name}` is not numeric")))?;
            let chunked = column.f64().map_err(Error::polars(format!("reading `{name}`")))?;
            chunked
                .iter()
                .enumerate()
                .map(|(row, value)| {
                    value.ok_or_else(|| Error::table(path, format!("column `{name}` is null in row {row}")))
                })
                .collect()
        };

        let datasets = required_strings(DATASET)?;
        let dataset = datasets.first().cloned().unwrap_or_default();
        if let Some(other) = datasets.iter().find(|name| **name != dataset) {
            return Err(Error::table(path, format!("column `{DATASET}` holds both `{dataset}` and `{other}`")));
        }
        check_name(&dataset).map_err(|reason| Error::table(path, format!("column `{DATASET}`: {reason}")))?;
        let kinds = required_strings(METRIC_KIND)?;
        let kind_name = kinds.first().cloned().unwrap_or_default();
        if let Some(other) = kinds.iter().find(|name| **name != kind_name) {
            return Err(Error::table(path, format!("column `{METRIC_KIND}` holds both `{kind_name}` and `{other}`")));
        }
        let kind = kind_name.parse::<MetricKind>().map_err(|message| Error::table(path, message))?;

        let splits = if names.iter().any(|n| n == SPLIT) {
            strings(SPLIT)?
                .into_iter()
                .map(|value| match value.as_deref() {
                    None => Ok(None),
                    Some("train") => Ok(Some(Split::Train)),
                    Some("test") => Ok(Some(Split::Test)),
                    Some(other) => {
                        Err(Error::table(path, format!("`{SPLIT}` is `{other}`; expected `train`, `test` or null")))
                    }
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![None; frame.height()]
        };
        let cluster_ids = if names.iter().any(|n| n == CLUSTER_ID) {
            let column = frame.column(CLUSTER_ID).map_err(Error::polars("reading `cluster_id`"))?;
            let column = column
                .cast(&DataType::Int64)
                .map_err(|_| Error::table(path, format!("column `{CLUSTER_ID}` is not an integer")))?;
            column.i64().map_err(Error::polars("reading `cluster_id`"))?.iter().collect()
        } else {
            vec![None; frame.height()]
        };

        let n = frame.height();
        let t = models.len();
        let mut scores = vec![0.0; n * t];
        for (index, model) in models.iter().enumerate() {
            for (row, value) in floats(&format!("{SCORE_PREFIX}{model}"))?.into_iter().enumerate() {
                scores[row * t + index] = value;
            }
        }
        let costs = if cost_models.is_empty() {
            None
        } else {
            let mut costs = vec![0.0; n * t];
            for (index, model) in models.iter().enumerate() {
                for (row, value) in floats(&format!("{COST_PREFIX}{model}"))?.into_iter().enumerate() {
                    costs[row * t + index] = value;
                }
            }
            Some(costs)
        };

        let table = ScoredTable {
            dataset,
            kind,
            models,
            query_ids: required_strings(QUERY_ID)?,
            texts: required_strings(TEXT)?,
            splits,
            cluster_ids,
            scores,
            costs,
        };
        table.validate(path)?;
        Ok(table)
    }
}

/// A table together with the file it came from, for error messages.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub path: PathBuf,
    pub table: ScoredTable,
}

/// A dataset name becomes a file name (`<dataset>.parquet`, `cost_quality_<dataset>.svg`, ...):
/// it must be one plain path component, so that no name in the data can point outside the
/// output folder. Refused: an empty name, `.` and `..`, separators (`/`, `\\`), NUL and other
/// control characters, and names over 200 bytes.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name == "." || name == ".." {
        "the name is `.` or `..`"
    } else if name.contains(['/', '\\']) {
        "the name holds a path separator"
    } else if name.chars().any(char::is_control) {
        "the name holds a control character"
    } else if name.len() > 200 {
        "the name is longer than 200 bytes"
    } else {
        return Ok(());
    };
    Err(format!("`{}` cannot name a file: {reason}", name.escape_debug()))
}

/// Check that every table lists the same models in the same order (`docs/method.md`, "Scored tables").
pub fn check_same_models(tables: &[LoadedTable]) -> Result<()> {
    let Some(first) = tables.first() else { return Ok(()) };
    for other in &tables[1..] {
        if other.table.models != first.table.models {
            return Err(Error::ModelListMismatch {
                first_path: first.path.clone(),
                first: first.table.models.clone(),
                second_path: other.path.clone(),
                second: other.table.models.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ScoredTable {
        ScoredTable {
            dataset: "mmlu_test".into(),
            kind: MetricKind::Probability,
            models: vec!["org/a".into(), "b|x".into()],
            query_ids: vec!["0".into(), "1".into()],
            texts: vec!["q0".into(), "q1".into()],
            splits: vec![Some(Split::Test), None],
            cluster_ids: vec![Some(3), None],
            scores: vec![0.25, 0.0, 1.0, 0.5],
            costs: Some(vec![0.1, 0.2, 0.3, 0.4]),
        }
    }

    #[test]
    fn frame_round_trip_keeps_every_field_and_model_order() {
        let table = tiny();
        let frame = table.to_frame().unwrap();
        let names: Vec<_> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "dataset",
                "query_id",
                "text",
                "split",
                "cluster_id",
                "metric_kind",
                "score:org/a",
                "score:b|x",
                "cost:org/a",
                "cost:b|x"
            ]
        );
        assert_eq!(ScoredTable::from_frame(&frame, Path::new("t.parquet")).unwrap(), table);
    }

    #[test]
    fn out_of_range_scores_are_rejected() {
        for bad in [f64::NAN, -0.1, 1.5] {
            let mut table = tiny();
            table.scores[1] = bad;
            let error = table.validate(Path::new("t.parquet")).unwrap_err().to_string();
            assert!(error.contains("`b|x`") && error.contains("[0, 1]"), "{error}");
        }
    }

    #[test]
    fn duplicate_query_ids_are_rejected() {
        let mut table = tiny();
        table.query_ids[1] = "0".into();
        assert!(table.validate(Path::new("t")).unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn dataset_names_map_to_the_reference_kinds() {
        use MetricKind::*;
        for (name, kind) in [
            ("mmlu_test", Some(Probability)),
            ("cmmlu_train", Some(Probability)),
            ("arc_challenge_test", Some(Probability)),
            ("MATH_prealgebra", Some(Probability)),
            ("ceval", Some(Probability)),
            ("gsm8k-test", Some(MultiAttempt)),
            ("humaneval_train", Some(MultiAttempt)),
            ("mbpp", Some(MultiAttempt)),
            ("squad", None),
        ] {
            assert_eq!(MetricKind::for_dataset(name), kind, "{name}");
        }
    }

    #[test]
    fn splits_come_from_the_file_name_suffix() {
        assert_eq!(Split::from_dataset_name("gsm8k-train"), Some(Split::Train));
        assert_eq!(Split::from_dataset_name("mmlu_test"), Some(Split::Test));
        assert_eq!(Split::from_dataset_name("mbpp"), None);
        assert_eq!(Split::from_dataset_name("contest"), None);
    }
}
