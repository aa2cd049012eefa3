//! `routerdc train`: the settings, the checks made before any weight is loaded, the data plan
//! the trainer draws its batches from ([`plan`]) and the training log ([`log`]). Everything
//! here is plain Rust; the network and the losses' arithmetic are libtorch code
//! (`src/torch/model/`), the loop is `src/torch/commands/train/`. The method is described in
//! `docs/method.md`.

pub mod folder;
pub mod log;
pub mod plan;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::tokenize::TruncationSide;
pub use crate::routing::MlpLoss;
use crate::routing::{Similarity, select_split};
use crate::stages::embed::DeviceChoice;
use crate::table::{LoadedTable, Split};

/// Which router `train` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// RouterDC: an encoder and LLM embeddings trained with the dual contrastive losses.
    #[default]
    Routerdc,
    /// k nearest training queries by cosine of frozen embeddings; k chosen by leave-one-out.
    Knn,
    /// k-means over the training queries' frozen embeddings; a query goes to the best LLM (mean
    /// target) of its nearest centroid.
    Cluster,
    /// A small MLP (or, with `--hidden 0`, a linear map) on frozen embeddings predicting each
    /// LLM's target; a query goes to the argmax. Early stopping on held-out training rows.
    Mlp,
}

/// `--batch-tokens`' default (BENCHMARKS.md, "train").
pub const DEFAULT_BATCH_TOKENS: usize = 1024;

fn default_batch_tokens() -> usize {
    DEFAULT_BATCH_TOKENS
}

/// Settings of `routerdc train` (defaults: the reference implementation's).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Folder of training tables (with cluster ids when the cluster loss is on).
    #[arg(long, value_name = "DIR")]
    pub train: PathBuf,
    /// Folder of test tables, evaluated beside the training tables (never used to pick the checkpoint).
    #[arg(long, value_name = "DIR")]
    pub test: Option<PathBuf>,
    /// Train on this split's rows of the `--train` tables only (tables without any are left out).
    /// Default: every row.
    #[arg(long, value_enum, value_name = "SPLIT")]
    pub train_split: Option<Split>,
    /// Evaluate this split's rows of the `--test` tables only (tables without any are left out);
    /// `--test` may then be the `--train` folder. Default: every row.
    #[arg(long, value_enum, value_name = "SPLIT")]
    pub test_split: Option<Split>,
    /// Folder for `best.safetensors`, `best.json`, `last.*` and `train_log.parquet`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// HF model directory or hub id of the encoder. Default: the bundled all-MiniLM-L6-v2.
    #[arg(long, value_name = "PATH|HUB_ID")]
    pub encoder: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Evaluate (and keep the best checkpoint) every this many steps, and at the end.
    #[arg(long, default_value_t = 50)]
    pub eval_steps: usize,
    /// Queries drawn from each training table per epoch (the table is repeated, then cut).
    #[arg(long, default_value_t = 1000)]
    pub samples_per_table: usize,
    /// Default: 5e-5 for RouterDC (the reference's), 1e-3 for `--router mlp`.
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// RouterDC: the learning rate of the LLM embeddings K, a parameter group of their own.
    /// Default: `--learning-rate`, as the reference trains them (at 5e-5 for 1000 steps they stay
    /// almost where their random start put them).
    #[arg(long, value_name = "LR")]
    #[serde(default)]
    pub llm_learning_rate: Option<f64>,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Positives of the sample-LLM loss: the top_k best LLMs of each query.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Negatives of the sample-LLM loss: the last_k worst LLMs (those scoring > 0.5 excluded).
    #[arg(long, default_value_t = 3)]
    pub last_k: usize,
    /// Negatives per query of the sample-sample (cluster and task) losses.
    #[arg(long, default_value_t = 3)]
    pub negatives: usize,
    /// Weight of the cluster loss (needs cluster ids).
    #[arg(long, default_value_t = 1.0)]
    pub cluster_weight: f64,
    /// Weight of the task-tag loss (groups are the tables).
    #[arg(long, default_value_t = 0.0)]
    pub task_weight: f64,
    /// Weight of the orthogonality regulariser ‖cos(K, K) − I‖_F on the LLM embeddings.
    #[arg(long, default_value_t = 0.0)]
    pub orth_weight: f64,
    /// Never draw a query as its own positive in the sample-sample losses (the reference may).
    #[arg(long)]
    pub exclude_self: bool,
    #[arg(long, value_enum, default_value_t = Similarity::Cosine)]
    pub similarity: Similarity,
    /// τ: logits are similarity / τ.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// For tables with costs, the target is quality − cost_rate × cost.
    #[arg(long, default_value_t = 0.0)]
    pub cost_rate: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest query in tokens; longer ones are cut on `--truncation`'s side.
    #[arg(long, default_value_t = 512)]
    pub max_length: usize,
    #[arg(long, value_enum, default_value_t = TruncationSide::Left)]
    pub truncation: TruncationSide,
    /// Keep the encoder's weights fixed and train the LLM embeddings only (much faster on a CPU).
    #[arg(long)]
    pub freeze_encoder: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Mixed precision: the encoder's matrix products and attention in bfloat16, weights, LayerNorm,
    /// losses and AdamW in float32 (as autocast). Meant for GPUs with bf16; slow on most CPUs.
    #[arg(long)]
    pub bf16: bool,
    /// Length bucketing: sort each window of this many batches by query length before cutting it
    /// into batches, then shuffle those batches (less padding; batches mix fewer tasks). 0 = off.
    #[arg(long, default_value_t = 0)]
    pub length_buckets: usize,
    /// Encode each training batch in passes of at most this many padded tokens: its queries
    /// sorted by length, each pass padded to its own longest query, so one long query no longer
    /// pads the whole batch. The losses still see the whole batch at once (the encoder reads
    /// each query alone). 0 = one pass per batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_TOKENS)]
    #[serde(default = "default_batch_tokens")]
    pub batch_tokens: usize,
    /// Fine-tuning on the CPU: worker threads that encode a step's passes side by side, each on
    /// its share of the cores (one copy of the weights; 0 = automatic: one per core up to 4;
    /// 1 = one pass at a time on every core). The masks and the result do not depend on it
    /// beyond the order in which floats are added.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub workers: usize,
    /// Save `last.safetensors` + `last.json` (weights, optimizer state, log) every this many
    /// steps (0 = at evaluations); an interrupted run loses at most the steps since then.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_steps: usize,
    /// Continue the run saved in `--out` (`last.*`) with the same settings; `--steps` may grow.
    #[arg(long)]
    pub resume: bool,
    /// Evaluate during the run on a fixed, seeded sample of about this many rows of the
    /// validation tables alone, each table keeping its share, and choose the best step on it;
    /// the chosen checkpoint is then evaluated on the full validation and test sets for
    /// `best.json` (the test tables are routed once). 0: the full sets at every evaluation.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub eval_sample: usize,
    /// The router to make: RouterDC (a checkpoint), kNN, cluster or MLP (a router folder,
    /// `router.json`).
    #[arg(long, value_enum, default_value_t = RouterKind::Routerdc)]
    #[serde(default)]
    pub router: RouterKind,
    /// kNN: the values of k tried; the one with the best leave-one-out validation is kept.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100")]
    #[serde(default)]
    pub k: Vec<usize>,
    /// Cluster router: the number of k-means clusters.
    #[arg(long, default_value_t = 5)]
    #[serde(default)]
    pub clusters: usize,
    /// MLP router: width of the hidden layer (ReLU); 0 = a linear map from embedding to targets.
    #[arg(long, default_value_t = 128)]
    #[serde(default)]
    pub hidden: usize,
    /// MLP router: the loss between its outputs and the targets.
    #[arg(long, value_enum, default_value_t = MlpLoss::Mse)]
    #[serde(default)]
    pub loss: MlpLoss,
    /// MLP router: passes over the training rows at most.
    #[arg(long, default_value_t = 200)]
    #[serde(default)]
    pub epochs: usize,
    /// MLP router: stop after this many epochs without a better validation acc_predict.
    #[arg(long, default_value_t = 20)]
    #[serde(default)]
    pub patience: usize,
    /// The share of each training table's rows held out (seeded; at least one row, never all)
    /// for validation: not trained on, they choose the step (RouterDC) or the epoch (MLP).
    /// Default: 0 for RouterDC (its training rows validate, the reference's way), 0.1 for MLP
    /// (0: keep the last epoch).
    #[arg(long)]
    #[serde(default)]
    pub validation_ratio: Option<f64>,
}

impl TrainConfig {
    /// The learning rate: `--learning-rate`, else the router kind's default.
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate.unwrap_or(match self.router {
            RouterKind::Mlp => 1e-3,
            _ => 5e-5,
        })
    }

    /// `--validation-ratio`, or the kind's default.
    pub fn validation_ratio(&self) -> f64 {
        self.validation_ratio.unwrap_or(match self.router {
            RouterKind::Mlp => 0.1,
            _ => 0.0,
        })
    }
}

/// The training and test tables, each cut to its `--train-split` / `--test-split` rows.
pub fn load_tables(config: &TrainConfig) -> Result<(Vec<LoadedTable>, Vec<LoadedTable>)> {
    let select = |dir: &std::path::Path, split: Option<Split>, key: &str| -> Result<Vec<LoadedTable>> {
        let tables = crate::io::read_tables(dir)?;
        let Some(split) = split else { return Ok(tables) };
        let selected = select_split(tables, split);
        if selected.is_empty() {
            return Err(Error::setting(
                key,
                format!("no table in `{}` has rows whose split is `{}`", dir.display(), split.as_str()),
            ));
        }
        Ok(selected)
    };
    let train = select(&config.train, config.train_split, "train_split")?;
    let test = match &config.test {
        Some(dir) => select(dir, config.test_split, "test_split")?,
        None => Vec::new(),
    };
    Ok((train, test))
}

/// Check the tables and settings before any weight is loaded.
/// `--validation-ratio`: a share below 1, for RouterDC and MLP routers (kNN and cluster routers
/// choose their settings otherwise).
pub fn check_validation_ratio(config: &TrainConfig) -> Result<()> {
    let ratio = config.validation_ratio();
    if !(0.0..1.0).contains(&ratio) {
        return Err(Error::setting("validation_ratio", "must be at least 0 and below 1"));
    }
    if ratio > 0.0 && ![RouterKind::Routerdc, RouterKind::Mlp].contains(&config.router) {
        return Err(Error::setting(
            "validation_ratio",
            "applies to RouterDC and MLP routers; kNN chooses k by leave-one-out, the cluster router has no setting to choose",
        ));
    }
    Ok(())
}

pub fn check(config: &TrainConfig, train: &[LoadedTable], test: &[LoadedTable]) -> Result<()> {
    let models = train[0].table.n_models();
    let all: Vec<LoadedTable> = train.iter().chain(test).cloned().collect();
    crate::table::check_same_models(&all)?;
    if config.top_k == 0 || config.top_k + config.last_k > models {
        return Err(Error::setting(
            "top_k",
            format!(
                "top_k ({}) + last_k ({}) must be at most the number of LLMs ({models}), top_k at least 1",
                config.top_k, config.last_k
            ),
        ));
    }
    // The settings are kept in best.json and last.json, which hold text.
    for (key, path) in [("out", Some(&config.out)), ("train", Some(&config.train)), ("test", config.test.as_ref())] {
        if path.is_some_and(|path| path.to_str().is_none()) {
            return Err(Error::setting(key, "the path is not UTF-8; the checkpoint's settings record it as text"));
        }
    }
    if config.batch_size < 2 || config.steps == 0 {
        return Err(Error::setting("batch_size", "needs at least 2 queries per batch and 1 step"));
    }
    if config.temperature <= 0.0 || !config.temperature.is_finite() {
        return Err(Error::setting("temperature", "must be a positive number"));
    }
    for (key, rate) in [("learning_rate", config.learning_rate), ("llm_learning_rate", config.llm_learning_rate)] {
        if rate.is_some_and(|rate| rate <= 0.0 || !rate.is_finite()) {
            return Err(Error::setting(key, "must be a positive number"));
        }
    }
    if config.cluster_weight != 0.0 {
        for loaded in train {
            if let Some(row) = loaded.table.cluster_ids.iter().position(Option::is_none) {
                return Err(Error::input(
                    format!(
                        "`{}`: query `{}` has no cluster id, and the cluster loss is on",
                        loaded.path.display(),
                        loaded.table.query_ids[row]
                    ),
                    "run `routerdc cluster` on the training tables first, or pass `--cluster-weight 0`",
                ));
            }
        }
    }
    Ok(())
}
