//! The data side of a training run: which queries each step trains on, and which pairs the
//! sample-sample losses compare. Every draw comes from one seeded generator, so a run's data
//! depend on the seed and the settings alone: `--resume` replays them to where it stopped.
//!
//! Sampling follows the reference: each training table's rows are repeated and cut to
//! `samples_per_table` queries, the list is shuffled each epoch, and consecutive batches are cut
//! from it (optionally length-bucketed).

use super::TrainConfig;
use crate::routing::{self, PairChoice, Rng, choose_pairs, shuffle};
use crate::table::LoadedTable;

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
                targets: routing::targets(table, row, cost_rate),
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

/// The epoch order and the pair draws of a run, from one seeded generator.
pub struct Plan {
    rng: Rng,
    order: Vec<usize>,
    cursor: usize,
    /// Token count of each example, for length bucketing.
    lengths: Vec<usize>,
}

/// One step's batch (positions in the example list) and its cluster and task pairs (when
/// those losses are on).
pub struct Batch {
    pub rows: Vec<usize>,
    pub cluster_pairs: Option<PairChoice>,
    pub task_pairs: Option<PairChoice>,
}

impl Plan {
    pub fn new(config: &TrainConfig, lengths: Vec<usize>) -> Plan {
        let mut plan = Plan { rng: routing::rng(config.seed), order: Vec::new(), cursor: 0, lengths };
        plan.new_epoch(config);
        plan
    }

    fn new_epoch(&mut self, config: &TrainConfig) {
        let order = epoch_order(self.lengths.len(), &mut self.rng);
        self.order = bucket(order, &self.lengths, config.batch_size, config.length_buckets, &mut self.rng);
        self.cursor = 0;
    }

    /// The next batch and the cluster and task pairs for it.
    pub fn next(&mut self, config: &TrainConfig, examples: &[Example]) -> Batch {
        if self.cursor + config.batch_size > self.order.len() {
            self.new_epoch(config);
        }
        let rows = self.order[self.cursor..self.cursor + config.batch_size].to_vec();
        self.cursor += config.batch_size;
        let mut pairs = |groups: Vec<i64>| choose_pairs(&groups, config.negatives, config.exclude_self, &mut self.rng);
        let cluster_pairs =
            (config.cluster_weight != 0.0).then(|| pairs(rows.iter().map(|&i| examples[i].cluster).collect()));
        let task_pairs =
            (config.task_weight != 0.0).then(|| pairs(rows.iter().map(|&i| examples[i].table as i64).collect()));
        Batch { rows, cluster_pairs, task_pairs }
    }
}

/// `--validation-ratio`: which rows of tables with `rows[t]` rows each are held out for
/// validation (true) rather than trained on: `ratio` of each table's rows, rounded, at least one
/// and never all (none of a table with fewer than two rows), drawn from `seed`. `None` when
/// `ratio` is 0.
pub fn holdout(rows: &[usize], ratio: f64, seed: u64) -> Option<Vec<Vec<bool>>> {
    if ratio <= 0.0 {
        return None;
    }
    let held = |count: usize| if count < 2 { 0 } else { ((ratio * count as f64).round() as usize).clamp(1, count - 1) };
    Some(pick_rows(rows, &mut routing::rng(seed), held))
}

/// `--eval-sample n`: a fixed sample of about `n` of the rows of tables with `rows[t]` rows
/// each, drawn from `seed`, as one keep-mask per table; `None` when `n` is 0 or reaches every
/// row. Each table keeps its share of `n` (at least one row), so that every table's score is
/// measured, as the averages weigh tables equally.
pub fn eval_sample(rows: &[usize], n: usize, seed: u64) -> Option<Vec<Vec<bool>>> {
    let total: usize = rows.iter().sum();
    if n == 0 || n >= total {
        return None;
    }
    let share = |count: usize| ((n as f64 * count as f64 / total as f64).round() as usize).clamp(1, count.max(1));
    // Its own stream: the sample does not depend on, or move, the training draws.
    Some(pick_rows(rows, &mut routing::rng(seed ^ 0x6576_616c_5f73_616d), share))
}

/// Per table of `rows[t]` rows, `how_many(rows[t])` of them drawn without replacement, as a mask.
fn pick_rows(rows: &[usize], rng: &mut Rng, how_many: impl Fn(usize) -> usize) -> Vec<Vec<bool>> {
    rows.iter()
        .map(|&count| {
            let mut order: Vec<usize> = (0..count).collect();
            shuffle(&mut order, rng);
            let mut mask = vec![false; count];
            for &row in order.iter().take(how_many(count)) {
                mask[row] = true;
            }
            mask
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{MetricKind, ScoredTable};

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

    #[test]
    fn eval_samples_keep_each_tables_share_fixed_by_the_seed() {
        let rows = [1000, 300, 7];
        let keep = eval_sample(&rows, 200, 42).unwrap();
        let kept: Vec<usize> = keep.iter().map(|mask| mask.iter().filter(|&&k| k).count()).collect();
        // 200 × 1000 / 1307 = 153.0, × 300 / 1307 = 45.9, × 7 / 1307 = 1.07: one at least.
        assert_eq!(kept, vec![153, 46, 1]);
        assert_eq!(eval_sample(&rows, 200, 42).unwrap(), keep);
        assert_ne!(eval_sample(&rows, 200, 43).unwrap(), keep);
        assert!(keep[0][..153].iter().any(|&k| !k), "a sample, not the first rows");
        assert_eq!(eval_sample(&rows, 0, 42), None);
        assert_eq!(eval_sample(&rows, 1307, 42), None);
    }

    #[test]
    fn holdouts_take_the_ratio_of_each_table_never_all_of_it() {
        let rows = [100, 10, 2];
        let held = holdout(&rows, 0.1, 42).unwrap();
        let counts: Vec<usize> = held.iter().map(|mask| mask.iter().filter(|&&h| h).count()).collect();
        assert_eq!(counts, vec![10, 1, 1]);
        assert_eq!(holdout(&rows, 0.1, 42).unwrap(), held);
        assert_ne!(holdout(&rows, 0.1, 7).unwrap(), held);
        assert_eq!(holdout(&[4], 0.9, 1).unwrap()[0].iter().filter(|&&h| h).count(), 3, "one row stays to train on");
        assert_eq!(holdout(&rows, 0.0, 42), None);
        assert_eq!(holdout(&[1, 0], 0.5, 42).unwrap(), vec![vec![false], vec![]]);
    }
}
