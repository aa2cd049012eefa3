//! The routing core: what a router's decision and its evaluation need, for every consumer
//! (`train`, `report`, `route`, and any later one). Plain Rust over scored tables: no
//! libtorch, no files. The method is described in `docs/method.md`.
//!
//! - the target a router aims at for a query: each LLM's score, minus `cost_rate × cost` when
//!   the table has costs ([`targets`]);
//! - the decision rule: the argmax, the first index on ties ([`first_argmax`]), of a router's
//!   scores less a routing-time cost penalty ([`penalised`], [`expected_costs`]);
//! - how a routing is scored against a table: `acc` and `acc_predict` ([`evaluate`]);
//! - which rows take part ([`select_split`]);
//! - the training choices of the contrastive losses ([`choice`]) and the seeded draws behind
//!   them ([`rng`]).

pub mod choice;
pub mod cost;
pub mod knn;
pub mod rng;

use serde::{Deserialize, Serialize};

pub use self::choice::{LlmChoice, PairChoice, choose_llms, choose_pairs};
pub use self::rng::{Rng, below, rng, shuffle};
use crate::table::{LoadedTable, ScoredTable, Split};

/// How query and LLM embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// cos(h, k_t).
    #[default]
    Cosine,
    /// ⟨h, k_t⟩.
    Inner,
}

/// What the MLP router's outputs are fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MlpLoss {
    /// Mean squared error to the targets (any range; costs included).
    #[default]
    Mse,
    /// Binary cross-entropy of sigmoid(output) to the targets (targets in [0, 1]: no cost rate).
    Bce,
}

/// What routing aims at for query `row` of `table`: the scores, or for a table with costs
/// `score − cost_rate × cost`, in model order.
pub fn targets(table: &ScoredTable, row: usize, cost_rate: f64) -> Vec<f64> {
    let scores = table.score_row(row);
    match table.cost_row(row) {
        Some(costs) => scores.iter().zip(costs).map(|(score, cost)| score - cost_rate * cost).collect(),
        None => scores.to_vec(),
    }
}

/// Each LLM's expected cost per query: its mean cost over every row of `tables` (a router's
/// training rows); `None` when a table has no costs.
pub fn expected_costs(tables: &[LoadedTable]) -> Option<Vec<f64>> {
    let models = tables.first()?.table.n_models();
    let (mut sums, mut rows) = (vec![0.0; models], 0usize);
    for loaded in tables {
        for row in 0..loaded.table.n_queries() {
            for (sum, cost) in sums.iter_mut().zip(loaded.table.cost_row(row)?) {
                *sum += cost;
            }
            rows += 1;
        }
    }
    (rows > 0).then(|| sums.into_iter().map(|sum| sum / rows as f64).collect())
}

/// The routing-time cost penalty: `score_t − λ · cost_t` per LLM (the scores unchanged at
/// λ = 0). A router's choice is the [`first_argmax`] of these.
pub fn penalised(scores: &[f64], costs: &[f64], cost_rate: f64) -> Vec<f64> {
    if cost_rate == 0.0 {
        return scores.to_vec();
    }
    scores.iter().zip(costs).map(|(score, cost)| score - cost_rate * cost).collect()
}

/// A router's choice for one query: the [`first_argmax`] of its scores less the routing-time
/// `charge` per LLM (λ × its expected cost), when there is one.
pub fn charged_argmax(scores: &[f64], charge: Option<&[f64]>) -> usize {
    match charge {
        Some(charge) => first_argmax(&penalised(scores, charge, 1.0)),
        None => first_argmax(scores),
    }
}

/// Index of the largest value, the first one on ties (numpy's `argmax`).
pub fn first_argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate().skip(1) {
        if value > values[best] {
            best = index;
        }
    }
    best
}

/// Each table's rows of `split`; tables without any are left out.
pub fn select_split(tables: Vec<LoadedTable>, split: Split) -> Vec<LoadedTable> {
    tables
        .into_iter()
        .map(|loaded| {
            let table = loaded.table.select_rows(|row| loaded.table.splits[row] == Some(split));
            LoadedTable { path: loaded.path, table }
        })
        .filter(|loaded| loaded.table.n_queries() > 0)
        .collect()
}

/// `acc` and `acc_predict` of routing each query of `table` to `choices[row]`:
/// - `acc`: the share of queries routed to the argmax of their targets;
/// - `acc_predict`: the mean credit of the routed LLM's score (for `probability` tables a score
///   above 0 counts as 1, otherwise the score itself).
pub fn evaluate(table: &ScoredTable, choices: &[usize], cost_rate: f64) -> (f64, f64) {
    let n = table.n_queries().max(1) as f64;
    let (mut hits, mut credit) = (0.0, 0.0);
    for (row, &choice) in choices.iter().enumerate() {
        if first_argmax(&targets(table, row, cost_rate)) == choice {
            hits += 1.0;
        }
        credit += table.kind.credit(table.score_row(row)[choice]);
    }
    (hits / n, credit / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::MetricKind;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(first_argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(first_argmax(&[1.0]), 0);
    }

    #[test]
    fn targets_subtract_the_charged_cost() {
        let table = ScoredTable {
            dataset: "t".into(),
            kind: MetricKind::CostAware,
            models: vec!["a".into(), "b".into()],
            query_ids: vec!["q".into()],
            texts: vec!["x".into()],
            splits: vec![None],
            cluster_ids: vec![None],
            scores: vec![1.0, 0.9],
            costs: Some(vec![0.5, 0.1]),
        };
        assert_eq!(targets(&table, 0, 0.0), vec![1.0, 0.9]);
        assert_eq!(targets(&table, 0, 1.0), vec![0.5, 0.8]);
        assert_eq!(evaluate(&table, &[1], 1.0), (1.0, 0.9));
        assert_eq!(evaluate(&table, &[1], 0.0), (0.0, 0.9));
    }
}
