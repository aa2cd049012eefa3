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
    /// Learning rates of the LLM embeddings to try (`--llm-learning-rate`).
    #[arg(long = "try-llm-learning-rate", value_delimiter = ',', value_name = "LR,...")]
    pub llm_learning_rates: Vec<f64>,
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
    /// The LLM embeddings' learning rate when set apart from `learning_rate`.
    pub llm_learning_rate: Option<f64>,
    pub temperature: f64,
    pub cluster_weight: f64,
    pub task_weight: f64,
    pub top_k: usize,
    pub last_k: usize,
}

impl Trial {
    /// The rate the LLM embeddings train at.
    pub fn llm_learning_rate(&self) -> f64 {
        self.llm_learning_rate.unwrap_or(self.learning_rate)
    }

    /// `base` with this trial's settings, writing into `out`.
    pub fn apply(&self, base: &TrainConfig, out: std::path::PathBuf) -> TrainConfig {
        TrainConfig {
            learning_rate: Some(self.learning_rate),
            llm_learning_rate: Some(self.llm_learning_rate()),
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
        let start = Trial {
            learning_rate: base.learning_rate(),
            llm_learning_rate: base.llm_learning_rate,
            temperature: base.temperature,
            cluster_weight: base.cluster_weight,
            task_weight: base.task_weight,
            top_k: base.top_k,
            last_k: base.last_k,
        };
        let mut trials = vec![start];
        expand(&mut trials, &self.learning_rates, |t, &v| t.learning_rate = v);
        expand(&mut trials, &self.llm_learning_rates, |t, &v| t.llm_learning_rate = Some(v));
        expand(&mut trials, &self.temperatures, |t, &v| t.temperature = v);
        expand(&mut trials, &self.cluster_weights, |t, &v| t.cluster_weight = v);
        expand(&mut trials, &self.task_weights, |t, &v| t.task_weight = v);
        expand(&mut trials, &self.top_ks, |t, &v| t.top_k = v);
        expand(&mut trials, &self.last_ks, |t, &v| t.last_k = v);
        trials
    }
}

/// Each trial once per value, the values varying fastest (none: the trials as they are).
fn expand<T>(trials: &mut Vec<Trial>, values: &[T], set: impl Fn(&mut Trial, &T)) {
    if values.is_empty() {
        return;
    }
    *trials = trials
        .iter()
        .flat_map(|trial| {
            values.iter().map(|value| {
                let mut trial = *trial;
                set(&mut trial, value);
                trial
            })
        })
        .collect();
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
        column("llm_learning_rate", trials.iter().map(Trial::llm_learning_rate).collect()),
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
        // The LLM embeddings follow each trial's learning rate unless given one.
        assert!(trials.iter().all(|t| t.llm_learning_rate() == t.learning_rate));
        // Settings not searched keep train's values.
        assert!(trials.iter().all(|t| t.top_k == cli.tune.train.top_k && t.task_weight == cli.tune.train.task_weight));
        let outcome =
            |validation_average| Outcome { step: 1, validation_average, test_average: f64::NAN, seconds: 1.0 };
        assert_eq!(winner(&[outcome(0.5), outcome(0.7), outcome(0.7)]), Some(1));
        assert_eq!(winner(&[]), None);
        let frame = trials_frame(&trials[..3], &[outcome(0.5), outcome(0.7), outcome(0.6)]).unwrap();
        assert_eq!(frame.height(), 3);
    }

    #[test]
    fn the_llm_learning_rate_is_searched_beside_the_learning_rate_or_kept() {
        let parse = |extra: &[&str]| {
            let args = ["tune", "--train", "t", "--out", "o", "--try-learning-rate", "5e-5,1e-4"];
            Cli::parse_from(args.iter().chain(extra)).tune.trials()
        };
        let rates =
            |trials: Vec<Trial>| trials.iter().map(|t| (t.learning_rate, t.llm_learning_rate())).collect::<Vec<_>>();
        assert_eq!(
            rates(parse(&["--try-llm-learning-rate", "1e-3,1e-2"])),
            [(5e-5, 1e-3), (5e-5, 1e-2), (1e-4, 1e-3), (1e-4, 1e-2)]
        );
        assert_eq!(rates(parse(&["--llm-learning-rate", "0.002"])), [(5e-5, 0.002), (1e-4, 0.002)]);
        let trial = parse(&["--try-llm-learning-rate", "1e-3"])[1];
        let base = Cli::parse_from(["tune", "--train", "t", "--out", "o"]).tune.train;
        let config = trial.apply(&base, "o/trial-002".into());
        assert_eq!((config.learning_rate, config.llm_learning_rate), (Some(1e-4), Some(1e-3)));
    }
}
