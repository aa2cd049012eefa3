//! `routerdc tune`: a grid search over RouterDC's settings, each trial a `train` run chosen on
//! validation only (by default a held-out tenth of the training rows), every trial logged in
//! `trials.parquet`, the winner's checkpoint kept as the search's `best.*`.

use polars::prelude::*;

use super::train::TrainConfig;
use crate::error::{Error, Result};

/// Settings of `routerdc tune`: `train`'s settings, and the values to try for some of them
/// (each list empty: `train`'s value alone). Every combination is one trial.
#[derive(Debug, Clone, clap::Args)]
pub struct TuneConfig {
    #[command(flatten)]
    pub train: TrainConfig,
    /// Learning rates to try (comma-separated).
    #[arg(long = "try-learning-rate", value_delimiter = ',', value_name = "LR,...")]
    pub learning_rates: Vec<f64>,
    /// Temperatures τ to try.
    #[arg(long = "try-temperature", value_delimiter = ',', value_name = "TAU,...")]
    pub temperatures: Vec<f64>,
    /// Cluster-loss weights to try.
    #[arg(long = "try-cluster-weight", value_delimiter = ',', value_name = "W,...")]
    pub cluster_weights: Vec<f64>,
    /// Task-loss weights to try.
    #[arg(long = "try-task-weight", value_delimiter = ',', value_name = "W,...")]
    pub task_weights: Vec<f64>,
    /// top_k values to try.
    #[arg(long = "try-top-k", value_delimiter = ',', value_name = "K,...")]
    pub top_ks: Vec<usize>,
    /// last_k values to try.
    #[arg(long = "try-last-k", value_delimiter = ',', value_name = "K,...")]
    pub last_ks: Vec<usize>,
}

/// The settings one trial changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub learning_rate: f64,
    pub temperature: f64,
    pub cluster_weight: f64,
    pub task_weight: f64,
    pub top_k: usize,
    pub last_k: usize,
}

impl Trial {
    /// `base` with this trial's settings, writing into `out`.
    pub fn apply(&self, base: &TrainConfig, out: std::path::PathBuf) -> TrainConfig {
        TrainConfig {
            learning_rate: Some(self.learning_rate),
            temperature: self.temperature,
            cluster_weight: self.cluster_weight,
            task_weight: self.task_weight,
            top_k: self.top_k,
            last_k: self.last_k,
            out,
            ..base.clone()
        }
    }
}

impl TuneConfig {
    /// Every combination of the values to try, in order (the last setting varies fastest).
    pub fn trials(&self) -> Vec<Trial> {
        let base = &self.train;
        let or = |values: &[f64], default: f64| if values.is_empty() { vec![default] } else { values.to_vec() };
        let or_k = |values: &[usize], default: usize| if values.is_empty() { vec![default] } else { values.to_vec() };
        let mut trials = Vec::new();
        for &learning_rate in &or(&self.learning_rates, base.learning_rate()) {
            for &temperature in &or(&self.temperatures, base.temperature) {
                for &cluster_weight in &or(&self.cluster_weights, base.cluster_weight) {
                    for &task_weight in &or(&self.task_weights, base.task_weight) {
                        for &top_k in &or_k(&self.top_ks, base.top_k) {
                            for &last_k in &or_k(&self.last_ks, base.last_k) {
                                trials.push(Trial {
                                    learning_rate,
                                    temperature,
                                    cluster_weight,
                                    task_weight,
                                    top_k,
                                    last_k,
                                });
                            }
                        }
                    }
                }
            }
        }
        trials
    }
}

/// What a finished trial measured: the step its validation chose, that validation average and the
/// test average at that step (NaN without test tables), and its wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub step: usize,
    pub validation_average: f64,
    pub test_average: f64,
    pub seconds: f64,
}

/// The winner: the best validation average, the first trial on ties.
pub fn winner(outcomes: &[Outcome]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, outcome) in outcomes.iter().enumerate() {
        if best.is_none_or(|best| outcome.validation_average > outcomes[best].validation_average) {
            best = Some(index);
        }
    }
    best
}

/// `trials.parquet`: one row per trial, its settings and its outcome.
pub fn trials_frame(trials: &[Trial], outcomes: &[Outcome]) -> Result<DataFrame> {
    let column = |name: &str, values: Vec<f64>| Column::new(name.into(), values);
    DataFrame::new_infer_height(vec![
        Column::new("trial".into(), (1..=trials.len() as i64).collect::<Vec<_>>()),
        column("learning_rate", trials.iter().map(|t| t.learning_rate).collect()),
        column("temperature", trials.iter().map(|t| t.temperature).collect()),
        column("cluster_weight", trials.iter().map(|t| t.cluster_weight).collect()),
        column("task_weight", trials.iter().map(|t| t.task_weight).collect()),
        Column::new("top_k".into(), trials.iter().map(|t| t.top_k as i64).collect::<Vec<_>>()),
        Column::new("last_k".into(), trials.iter().map(|t| t.last_k as i64).collect::<Vec<_>>()),
        Column::new("step".into(), outcomes.iter().map(|o| o.step as i64).collect::<Vec<_>>()),
        column("validation_average", outcomes.iter().map(|o| o.validation_average).collect()),
        column("test_average", outcomes.iter().map(|o| o.test_average).collect()),
        column("seconds", outcomes.iter().map(|o| o.seconds).collect()),
    ])
    .map_err(Error::polars("building the trials table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tune: TuneConfig,
    }

    #[test]
    fn trials_cover_the_grid_and_the_winner_is_the_first_best() {
        let cli = Cli::parse_from([
            "tune",
            "--train",
            "t",
            "--out",
            "o",
            "--try-learning-rate",
            "0.005,0.05",
            "--try-temperature",
            "1,0.1,0.05",
        ]);
        let trials = cli.tune.trials();
        assert_eq!(trials.len(), 6);
        assert_eq!((trials[0].learning_rate, trials[0].temperature), (0.005, 1.0));
        assert_eq!((trials[5].learning_rate, trials[5].temperature), (0.05, 0.05));
        // Settings not searched keep train's values.
        assert!(trials.iter().all(|t| t.top_k == cli.tune.train.top_k && t.task_weight == cli.tune.train.task_weight));
        let outcome =
            |validation_average| Outcome { step: 1, validation_average, test_average: f64::NAN, seconds: 1.0 };
        assert_eq!(winner(&[outcome(0.5), outcome(0.7), outcome(0.7)]), Some(1));
        assert_eq!(winner(&[]), None);
        let frame = trials_frame(&trials[..3], &[outcome(0.5), outcome(0.7), outcome(0.6)]).unwrap();
        assert_eq!(frame.height(), 3);
    }
}
