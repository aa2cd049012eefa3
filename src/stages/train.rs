//! `routerdc train` (SPEC §4–6): the settings, the data the trainer draws, the choice of
//! positives and negatives for the two contrastive losses, and the evaluation of a router's
//! choices. Everything here is plain Rust; the network, the losses' arithmetic and the loop are
//! libtorch code in `routerdc-torch` (`src/torch/train.rs`).

use std::path::PathBuf;

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::encoder::tokenize::TruncationSide;
use crate::error::{Error, Result};
use crate::stages::embed::DeviceChoice;
use crate::stages::report::first_argmax;
use crate::table::{LoadedTable, ScoredTable, Split};

/// How query and LLM embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    #[default]
    Cosine,
    Inner,
}

/// Settings of `routerdc train` (defaults: the reference's, SPEC §5).
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
    #[arg(long, default_value_t = 5e-5)]
    pub learning_rate: f64,
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
    /// For tables with costs, the target is quality − cost_rate × cost (SPEC §6).
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
    /// Save `last.safetensors` + `last.json` (weights, optimizer state, log) every this many
    /// steps (0 = at evaluations); an interrupted run loses at most the steps since then.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_steps: usize,
    /// Continue the run saved in `--out` (`last.*`) with the same settings; `--steps` may grow.
    #[arg(long)]
    pub resume: bool,
}

/// The seeded generator every random choice of a run draws from.
pub type Rng = Xoshiro256PlusPlus;

pub fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// A uniform index below `n` (n > 0), without modulo bias.
pub fn below(rng: &mut Rng, n: usize) -> usize {
    let n = n as u64;
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return (x % n) as usize;
        }
    }
}

/// Fisher–Yates.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

/// The training and test tables, each cut to its `--train-split` / `--test-split` rows.
pub fn load_tables(config: &TrainConfig) -> Result<(Vec<LoadedTable>, Vec<LoadedTable>)> {
    let select = |dir: &std::path::Path, split: Option<Split>, key: &str| -> Result<Vec<LoadedTable>> {
        let tables = crate::io::read_tables(dir)?;
        let Some(split) = split else { return Ok(tables) };
        let selected = crate::stages::report::select_split(tables, split);
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
    if config.batch_size < 2 || config.steps == 0 {
        return Err(Error::setting("batch_size", "needs at least 2 queries per batch and 1 step"));
    }
    if config.temperature <= 0.0 || !config.temperature.is_finite() {
        return Err(Error::setting("temperature", "must be a positive number"));
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

/// One training example: where it comes from and what it is compared by.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub table: usize,
    pub row: usize,
    /// Target per LLM (score, or quality − cost_rate × cost).
    pub targets: Vec<f64>,
    pub cluster: i64,
}

/// The reference's sampling: each table's rows repeated and cut to `per_table` (all rows when
/// `per_table` is 0), one list for the run; [`epoch_order`] shuffles it each epoch.
pub fn examples(tables: &[LoadedTable], per_table: usize, cost_rate: f64) -> Vec<Example> {
    let mut out = Vec::new();
    for (index, loaded) in tables.iter().enumerate() {
        let table = &loaded.table;
        let n = table.n_queries();
        if n == 0 {
            continue;
        }
        let count = if per_table == 0 { n } else { per_table };
        for i in 0..count {
            let row = i % n;
            out.push(Example {
                table: index,
                row,
                targets: table.target_row(row, cost_rate),
                cluster: table.cluster_ids[row].unwrap_or(-1),
            });
        }
    }
    out
}

/// Positions into the example list for one epoch, shuffled.
pub fn epoch_order(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    order
}

/// Length bucketing of an epoch order: each window of `window × batch` positions is sorted by
/// `lengths` and cut into batches, whose order within the window is then shuffled.
pub fn bucket(order: Vec<usize>, lengths: &[usize], batch: usize, window: usize, rng: &mut Rng) -> Vec<usize> {
    if window == 0 || batch == 0 {
        return order;
    }
    let mut out = Vec::with_capacity(order.len());
    for chunk in order.chunks(batch * window) {
        let mut sorted = chunk.to_vec();
        sorted.sort_by_key(|&i| lengths[i]);
        let mut batches: Vec<&[usize]> = sorted.chunks(batch).collect();
        shuffle(&mut batches, rng);
        out.extend(batches.into_iter().flatten());
    }
    out
}

/// The sample-LLM loss's choices for a batch (SPEC §5), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmChoice {
    /// `[B × top_k]`: the i-th best LLM of each query.
    pub positives: Vec<i64>,
    /// `[B × top_k]`: 1 when that positive scored > 0.
    pub positive_mask: Vec<f32>,
    /// `[B × last_k]`: the lowest-scoring LLMs.
    pub negatives: Vec<i64>,
    /// `[B × last_k]`: true when that negative scored > 0.5 (left out).
    pub negative_excluded: Vec<bool>,
}

/// Rank each query's LLMs by target, best first (ties: lower index first).
pub fn choose_llms(targets: &[&[f64]], top_k: usize, last_k: usize) -> LlmChoice {
    let mut choice =
        LlmChoice { positives: vec![], positive_mask: vec![], negatives: vec![], negative_excluded: vec![] };
    for row in targets {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &p in &order[..top_k] {
            choice.positives.push(p as i64);
            choice.positive_mask.push(if row[p] > 0.0 { 1.0 } else { 0.0 });
        }
        // The last_k lowest, lowest first (ties: lower index first).
        let mut ascending: Vec<usize> = (0..row.len()).collect();
        ascending.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
        for &n in &ascending[..last_k] {
            choice.negatives.push(n as i64);
            choice.negative_excluded.push(row[n] > 0.5);
        }
    }
    choice
}

/// The sample-sample loss's choices for a batch: for each kept anchor, one positive of its
/// group and `h` negatives of other groups (SPEC §5). Anchors with fewer than `h` candidates
/// for negatives are skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairChoice {
    pub anchors: Vec<i64>,
    pub positives: Vec<i64>,
    /// `[anchors × h]`.
    pub negatives: Vec<i64>,
}

pub fn choose_pairs(groups: &[i64], h: usize, exclude_self: bool, rng: &mut Rng) -> PairChoice {
    let mut choice = PairChoice::default();
    for (q, &group) in groups.iter().enumerate() {
        let same: Vec<usize> = (0..groups.len()).filter(|&j| groups[j] == group && !(exclude_self && j == q)).collect();
        let mut other: Vec<usize> = (0..groups.len()).filter(|&j| groups[j] != group).collect();
        if other.len() < h || same.is_empty() {
            continue;
        }
        let positive = same[below(rng, same.len())];
        // h draws without replacement: a partial Fisher–Yates.
        for i in 0..h {
            let j = i + below(rng, other.len() - i);
            other.swap(i, j);
        }
        choice.anchors.push(q as i64);
        choice.positives.push(positive as i64);
        choice.negatives.extend(other[..h].iter().map(|&j| j as i64));
    }
    choice
}

/// `acc` and `acc_predict` (SPEC §6) of routing each query of `table` to `choices[row]`.
pub fn evaluate(table: &ScoredTable, choices: &[usize], cost_rate: f64) -> (f64, f64) {
    let n = table.n_queries().max(1) as f64;
    let (mut hits, mut credit) = (0.0, 0.0);
    for (row, &choice) in choices.iter().enumerate() {
        let target = table.target_row(row, cost_rate);
        if first_argmax(&target) == choice {
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
    fn llm_choice_orders_by_score_and_excludes_good_negatives() {
        let rows: [&[f64]; 2] = [&[0.2, 0.9, 0.0, 0.6, 0.0], &[0.0, 0.0, 0.0, 0.0, 0.0]];
        let choice = choose_llms(&rows, 2, 2);
        assert_eq!(choice.positives, vec![1, 3, 0, 1]);
        assert_eq!(choice.positive_mask, vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(choice.negatives, vec![2, 4, 0, 1]);
        assert_eq!(choice.negative_excluded, vec![false, false, false, false]);
        let high: [&[f64]; 1] = [&[0.9, 0.8, 0.7]];
        assert_eq!(choose_llms(&high, 1, 2).negative_excluded, vec![true, true]);
    }

    #[test]
    fn pairs_respect_groups_and_skip_anchors_without_enough_negatives() {
        let groups = [0, 0, 1, 1, 2, 0];
        let mut rng = rng(7);
        for _ in 0..50 {
            let choice = choose_pairs(&groups, 3, true, &mut rng);
            for (i, &a) in choice.anchors.iter().enumerate() {
                let a = a as usize;
                let p = choice.positives[i] as usize;
                assert!(groups[p] == groups[a] && p != a);
                let negs = &choice.negatives[i * 3..i * 3 + 3];
                assert!(negs.iter().all(|&n| groups[n as usize] != groups[a]));
                let mut unique = negs.to_vec();
                unique.dedup();
                assert_eq!(unique.len(), 3);
            }
            // Group 0 has 3 others; groups 1 and 2 have 4 and 5 candidates; query 4 has no partner.
            assert!(!choice.anchors.contains(&4));
        }
        let with_self = choose_pairs(&[0, 1, 1, 1], 3, false, &mut rng);
        assert_eq!(with_self.anchors, vec![0], "query 0 is its own positive");
        assert_eq!(with_self.positives, vec![0]);
    }

    #[test]
    fn sampling_cycles_each_table_to_the_count() {
        let table = |n: usize| ScoredTable {
            dataset: "t".into(),
            kind: MetricKind::Probability,
            models: vec!["a".into()],
            query_ids: (0..n).map(|i| i.to_string()).collect(),
            texts: vec!["q".into(); n],
            splits: vec![None; n],
            cluster_ids: vec![Some(0); n],
            scores: vec![1.0; n],
            costs: None,
        };
        let tables =
            vec![LoadedTable { path: "a".into(), table: table(3) }, LoadedTable { path: "b".into(), table: table(10) }];
        let examples = examples(&tables, 7, 0.0);
        let rows: Vec<(usize, usize)> = examples.iter().map(|e| (e.table, e.row)).collect();
        assert_eq!(&rows[..7], &[(0, 0), (0, 1), (0, 2), (0, 0), (0, 1), (0, 2), (0, 0)]);
        assert_eq!(&rows[7..], &(0..7).map(|r| (1, r)).collect::<Vec<_>>()[..]);
    }
}

/// Settings of `routerdc route`.
#[derive(Debug, Clone, clap::Args)]
pub struct RouteConfig {
    /// `best.safetensors` from `routerdc train` (its `best.json` beside it).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Route every query of these tables instead of reading stdin; needs `--out`.
    #[arg(long, value_name = "DIR", requires = "out")]
    pub tables: Option<PathBuf>,
    /// Folder for one `<table>.parquet` of `query_id`, `llm`, `llm_index`, `prob:<model>`...
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With `--tables`: route only this split's rows (tables without any are left out).
    #[arg(long, value_enum, value_name = "SPLIT", requires = "tables")]
    pub split: Option<Split>,
    /// Read JSON lines (`{"text": ...}` or `{"question": ...}`) from this file instead of plain
    /// lines from stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "tables")]
    pub jsonl: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// The routed LLM of each query of `table`, from `route --tables`'s file for it (by query id).
pub fn read_routes(dir: &std::path::Path, table: &LoadedTable) -> Result<Vec<usize>> {
    let path = dir.join(format!("{}.parquet", table.table.dataset));
    let frame = crate::io::read_parquet(&path)?;
    let ids =
        frame.column("query_id").and_then(|c| c.str().cloned()).map_err(|_| Error::table(&path, "no `query_id`"))?;
    let ids: Vec<&str> = ids.iter().map(|id| id.unwrap_or_default()).collect();
    let index = frame
        .column("llm_index")
        .and_then(|c| c.cast(&polars::prelude::DataType::Int64))
        .map_err(|_| Error::table(&path, "no `llm_index`"))?;
    let index = index.i64().map_err(Error::polars("reading `llm_index`"))?;
    let by_id: std::collections::HashMap<&str, usize> =
        ids.iter().zip(index.iter()).map(|(id, i)| (*id, i.unwrap_or(0) as usize)).collect();
    table
        .table
        .query_ids
        .iter()
        .map(|id| {
            by_id
                .get(id.as_str())
                .copied()
                .ok_or_else(|| Error::table(&path, format!("no route for query `{id}` of the table")))
        })
        .collect()
}
