//! The training log: every step's loss terms and time, and every evaluation's per-table
//! `acc` / `acc_predict`, written as `train_log.parquet` (columns in README) and kept in
//! `last.json` so that a resumed run continues it.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Per table of one evaluation: (dataset, acc, acc_predict).
pub type TableScores = Vec<(String, f64, f64)>;

/// The mean `acc_predict` over the tables of one evaluation (NaN when there are none).
pub fn average(rows: &[(String, f64, f64)]) -> f64 {
    if rows.is_empty() { f64::NAN } else { rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64 }
}

#[derive(Default, Clone, Serialize, Deserialize)]
pub struct TrainLog {
    /// step, total, sample-LLM, cluster, task, orthogonality.
    pub losses: Vec<(usize, f64, f64, f64, f64, f64)>,
    /// Time since the start (data preparation included) when each step finished.
    pub step_seconds: Vec<f64>,
    /// step, seconds, validation and test (dataset, acc, acc_predict).
    pub evaluations: Vec<(usize, f64, TableScores, TableScores)>,
    /// step, seconds the evaluation after it took.
    #[serde(default)]
    pub evaluation_seconds: Vec<(usize, f64)>,
}

impl TrainLog {
    /// One row per step: the loss terms and the time since the start when the step finished
    /// (evaluations run after their step), and for evaluation steps the per-table acc and
    /// acc_predict (`val:<table>:acc_predict`, `test:<table>:acc`, ...) and their average.
    pub fn frame(&self) -> Result<DataFrame> {
        let steps: Vec<i64> = self.losses.iter().map(|l| l.0 as i64).collect();
        let mut columns = vec![
            Column::new("step".into(), &steps),
            Column::new("loss".into(), self.losses.iter().map(|l| l.1).collect::<Vec<_>>()),
            Column::new("loss_sample_llm".into(), self.losses.iter().map(|l| l.2).collect::<Vec<_>>()),
            Column::new("loss_cluster".into(), self.losses.iter().map(|l| l.3).collect::<Vec<_>>()),
            Column::new("loss_task".into(), self.losses.iter().map(|l| l.4).collect::<Vec<_>>()),
            Column::new("loss_orthogonal".into(), self.losses.iter().map(|l| l.5).collect::<Vec<_>>()),
        ];
        let at = |step: i64| self.evaluations.iter().find(|e| e.0 as i64 == step);
        columns.push(Column::new("seconds".into(), &self.step_seconds));
        columns.push(Column::new(
            "eval_seconds".into(),
            steps
                .iter()
                .map(|&s| self.evaluation_seconds.iter().find(|e| e.0 as i64 == s).map(|e| e.1))
                .collect::<Vec<_>>(),
        ));
        columns.push(Column::new(
            "val_average".into(),
            steps.iter().map(|&s| at(s).map(|e| average(&e.2))).collect::<Vec<_>>(),
        ));
        if let Some(first) = self.evaluations.first() {
            for (prefix, pick) in [("val", 2usize), ("test", 3usize)] {
                let tables = if pick == 2 { &first.2 } else { &first.3 };
                for (index, (name, _, _)) in tables.iter().enumerate() {
                    for (metric, value) in [("acc", 1usize), ("acc_predict", 2usize)] {
                        let values: Vec<Option<f64>> = steps
                            .iter()
                            .map(|&s| {
                                at(s).map(|e| {
                                    let rows = if pick == 2 { &e.2 } else { &e.3 };
                                    if value == 1 { rows[index].1 } else { rows[index].2 }
                                })
                            })
                            .collect();
                        columns.push(Column::new(format!("{prefix}:{name}:{metric}").into(), values));
                    }
                }
            }
        }
        DataFrame::new_infer_height(columns).map_err(Error::polars("building the training log"))
    }
}
