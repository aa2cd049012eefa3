//! Whether a trained router beats what a user would do without one, with confidence:
//!
//! - **`task_best`**: for each task, the LLM that is best on that task's *training* rows (mean
//!   credit, minus `cost_rate ×` mean cost for tables with costs), applied to its reported rows.
//!   Training rows are the same table's `train` split when the report shows the `test` split,
//!   or the rows of the table whose name differs only by a `_train`/`-train` suffix instead of
//!   `_test`/`-test`. A task without training rows has no `task_best`, and a group has a
//!   `task_best` average only when each of its tables has one.
//! - **A paired bootstrap**: the queries of each table are resampled with replacement (the same
//!   draws for the router and the baseline), the group average of their per-query credit
//!   difference is taken, `resamples` times from a seeded generator; the 95% interval is the
//!   2.5th and 97.5th percentiles (nearest rank) of those averages. Every comparison draws the
//!   same resamples, so a router's interval does not depend on the other routers reported.

use std::fmt::Write as _;

use super::baselines::{BEST_SINGLE, Group, ReportRow, Scope};
use crate::routing::{self, Rng};
use crate::table::{LoadedTable, ScoredTable, Split};

/// The name of the per-task best LLM's rows.
pub const TASK_BEST: &str = "task_best";

/// The training rows of `reported` (module docs), from `all`, the tables before any split was
/// selected.
fn training_rows(reported: &LoadedTable, all: &[LoadedTable], split: Option<Split>) -> Option<ScoredTable> {
    let train_split = |table: &ScoredTable| table.select_rows(|row| table.splits[row] == Some(Split::Train));
    if split == Some(Split::Test) {
        let same = all.iter().find(|loaded| loaded.path == reported.path)?;
        let rows = train_split(&same.table);
        if rows.n_queries() > 0 {
            return Some(rows);
        }
    }
    let name = &reported.table.dataset;
    let stem = name
        .strip_suffix("_test")
        .map(|s| (s, "_train"))
        .or_else(|| name.strip_suffix("-test").map(|s| (s, "-train")))?;
    let sibling = all.iter().find(|loaded| loaded.table.dataset == format!("{}{}", stem.0, stem.1))?;
    let rows = train_split(&sibling.table);
    Some(if rows.n_queries() > 0 { rows } else { sibling.table.clone() })
}

/// The LLM with the best mean credit (minus `cost_rate ×` mean cost) on `rows`, first on ties.
fn best_llm(rows: &ScoredTable, cost_rate: f64) -> usize {
    let n = rows.n_queries().max(1) as f64;
    let value: Vec<f64> = (0..rows.n_models())
        .map(|model| {
            (0..rows.n_queries())
                .map(|row| {
                    let cost = rows.cost_row(row).map_or(0.0, |costs| costs[model]);
                    rows.kind.credit(rows.score_row(row)[model]) - cost_rate * cost
                })
                .sum::<f64>()
                / n
        })
        .collect();
    routing::first_argmax(&value)
}

/// For each reported table, its `task_best` LLM (`None` where it has no training rows).
pub fn task_best(
    reported: &[LoadedTable],
    all: &[LoadedTable],
    split: Option<Split>,
    cost_rate: f64,
) -> Vec<Option<usize>> {
    reported.iter().map(|loaded| training_rows(loaded, all, split).map(|rows| best_llm(&rows, cost_rate))).collect()
}

/// The `task_best` rows: one per table that has one, one per group whose tables all have one.
pub fn task_best_rows(
    tables: &[LoadedTable],
    groups: &[Group],
    choices: &[Option<usize>],
    cost_rate: f64,
) -> Vec<ReportRow> {
    let per_table: Vec<Option<(Vec<usize>, Option<String>)>> = tables
        .iter()
        .zip(choices)
        .map(|(loaded, choice)| {
            choice.map(|choice| (vec![choice; loaded.table.n_queries()], Some(loaded.table.models[choice].clone())))
        })
        .collect();
    router_rows(tables, groups, TASK_BEST, &per_table, cost_rate)
}

/// The rows of a router named `name` that routes table i by `per_table[i]` (its choices, and
/// the LLM when one takes the whole table): one per table it routes, one per group whose tables
/// it all routes.
pub fn router_rows(
    tables: &[LoadedTable],
    groups: &[Group],
    name: &str,
    per_table: &[Option<(Vec<usize>, Option<String>)>],
    cost_rate: f64,
) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    for (loaded, routed) in tables.iter().zip(per_table) {
        let Some((choices, llm)) = routed else { continue };
        let row = super::baselines::routed_row(&loaded.table, choices, cost_rate);
        rows.push(ReportRow { router: name.to_owned(), llm: llm.clone(), ..row });
    }
    for group in groups {
        let members: Vec<&ReportRow> = rows.iter().filter(|row| group.datasets.contains(&row.dataset)).collect();
        if members.len() != group.datasets.len() {
            continue;
        }
        let k = members.len() as f64;
        let same_llm = members.iter().all(|row| row.llm == members[0].llm);
        let group_row = ReportRow {
            scope: Scope::Group,
            dataset: group.id.clone(),
            router: name.to_owned(),
            llm: if same_llm { members[0].llm.clone() } else { None },
            n_queries: members.iter().map(|row| row.n_queries).sum(),
            acc: members.iter().map(|row| row.acc).sum::<f64>() / k,
            acc_predict: members.iter().map(|row| row.acc_predict).sum::<f64>() / k,
            cost: members.iter().map(|row| row.cost).sum::<Option<f64>>().map(|sum| sum / k),
        };
        rows.push(group_row);
    }
    rows
}

/// A router's group average minus a baseline's, with its bootstrap interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub group: String,
    pub router: String,
    /// `best_single` or `task_best`.
    pub baseline: String,
    /// The baseline's group average of acc_predict.
    pub baseline_value: f64,
    /// Router minus baseline, group average of acc_predict.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

impl Comparison {
    /// `beats`, `loses to` or `is indistinguishable from`, by the interval.
    pub fn outcome(&self) -> &'static str {
        // Sums of per-query differences are exact only up to rounding: a bound within 1e-12 of
        // 0 counts as 0.
        if self.low > 1e-12 {
            "beats"
        } else if self.high < -1e-12 {
            "loses to"
        } else {
            "is indistinguishable from"
        }
    }
}

/// Per-query credit of routing each query of `table` to `choices[row]`.
fn credits(table: &ScoredTable, choices: impl Fn(usize) -> usize) -> Vec<f64> {
    (0..table.n_queries()).map(|row| table.kind.credit(table.score_row(row)[choices(row)])).collect()
}

/// The paired bootstrap of one group: `pairs` holds, per table, (router, baseline) credits.
pub fn bootstrap(pairs: &[(Vec<f64>, Vec<f64>)], resamples: usize, rng: &mut Rng) -> (f64, f64, f64) {
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let difference = pairs.iter().map(|(a, b)| mean(a) - mean(b)).sum::<f64>() / pairs.len().max(1) as f64;
    let mut averages = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut total = 0.0;
        for (a, b) in pairs {
            let n = a.len();
            if n == 0 {
                continue;
            }
            let mut sum = 0.0;
            for _ in 0..n {
                let i = routing::below(rng, n);
                sum += a[i] - b[i];
            }
            total += sum / n as f64;
        }
        averages.push(total / pairs.len().max(1) as f64);
    }
    averages.sort_by(f64::total_cmp);
    let rank = |p: f64| averages[((p * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    if resamples == 0 { (difference, f64::NAN, f64::NAN) } else { (difference, rank(0.025), rank(0.975)) }
}

/// Each trained router (`routed`, by name) against `best_single` and `task_best`, per group.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    tables: &[LoadedTable],
    groups: &[Group],
    rows: &[ReportRow],
    routed: &[(String, Vec<Vec<usize>>)],
    task_best: &[Option<usize>],
    resamples: usize,
    seed: u64,
) -> Vec<Comparison> {
    let mut out = Vec::new();
    let group_row = |group: &str, router: &str| {
        rows.iter().find(|row| row.scope == Scope::Group && row.dataset == group && row.router == router)
    };
    for group in groups {
        let members: Vec<usize> =
            (0..tables.len()).filter(|&i| group.datasets.contains(&tables[i].table.dataset)).collect();
        for (router, choices) in routed {
            let mut baselines: Vec<(&str, Vec<usize>)> = Vec::new();
            if let Some(best) = group_row(&group.id, BEST_SINGLE).and_then(|row| row.llm.as_ref())
                && let Some(index) = tables[0].table.models.iter().position(|model| model == best)
            {
                baselines.push((BEST_SINGLE, vec![index; tables.len()]));
            }
            if members.iter().all(|&i| task_best[i].is_some()) {
                baselines.push((TASK_BEST, task_best.iter().map(|choice| choice.unwrap_or(0)).collect()));
            }
            for (baseline, per_table) in baselines {
                let pairs: Vec<(Vec<f64>, Vec<f64>)> = members
                    .iter()
                    .map(|&i| {
                        let table = &tables[i].table;
                        (credits(table, |row| choices[i][row]), credits(table, |_| per_table[i]))
                    })
                    .collect();
                // Every comparison draws the same resamples (a generator seeded afresh): a
                // router's interval does not depend on which other routers are in the report.
                let (difference, low, high) = bootstrap(&pairs, resamples, &mut routing::rng(seed));
                let baseline_value = group_row(&group.id, baseline).map_or(f64::NAN, |row| row.acc_predict);
                out.push(Comparison {
                    group: group.id.clone(),
                    router: router.clone(),
                    baseline: baseline.to_owned(),
                    baseline_value,
                    difference,
                    low,
                    high,
                });
            }
        }
    }
    out
}

/// The 95% bootstrap interval of a router's own group average of acc_predict (the same
/// resamples as the comparisons): the error bars of the acc_predict chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub group: String,
    pub router: String,
    pub low: f64,
    pub high: f64,
}

/// Each trained router's [`Interval`] per group.
pub fn intervals(
    tables: &[LoadedTable],
    groups: &[Group],
    routed: &[(String, Vec<Vec<usize>>)],
    resamples: usize,
    seed: u64,
) -> Vec<Interval> {
    let mut out = Vec::new();
    for group in groups {
        let members: Vec<usize> =
            (0..tables.len()).filter(|&i| group.datasets.contains(&tables[i].table.dataset)).collect();
        if members.is_empty() {
            continue;
        }
        for (router, choices) in routed {
            // Against a baseline of zeros, the paired bootstrap resamples the router's average.
            let pairs: Vec<(Vec<f64>, Vec<f64>)> = members
                .iter()
                .map(|&i| {
                    let table = &tables[i].table;
                    (credits(table, |row| choices[i][row]), vec![0.0; table.n_queries()])
                })
                .collect();
            let (_, low, high) = bootstrap(&pairs, resamples, &mut routing::rng(seed));
            out.push(Interval { group: group.id.clone(), router: router.clone(), low, high });
        }
    }
    out
}

/// The "Verdict" section of report.md: per group, each router against the best baseline.
pub fn verdict_markdown(comparisons: &[Comparison], resamples: usize, has_router: bool) -> String {
    let mut out = String::from("## Verdict\n\n");
    if !has_router {
        out.push_str("No trained router in this report (pass `--checkpoint`): the rows below are the baselines.\n\n");
        return out;
    }
    let _ = writeln!(
        out,
        "acc_predict, router minus baseline in points, with the 95% interval of a paired bootstrap \
         ({resamples} resamples of each table's queries). A router *beats* a baseline when the whole \
         interval is above 0.\n"
    );
    let _ = writeln!(out, "| group | router | baseline | baseline (%) | difference | 95% interval | verdict |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---|---|");
    for c in comparisons {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:+.2} | [{:+.2}, {:+.2}] | {} {} {} |",
            c.group,
            c.router,
            c.baseline,
            100.0 * c.baseline_value,
            100.0 * c.difference,
            100.0 * c.low,
            100.0 * c.high,
            c.router,
            c.outcome(),
            c.baseline
        );
    }
    out.push('\n');
    out
}

/// The comparison columns of `baselines.*`, filled on each router's group rows:
/// `acc_predict_low`/`_high` (the 95% interval of its own average), `vs_<baseline>` (router
/// minus baseline, acc_predict) and `vs_<baseline>_low`/`_high` (its 95% interval), for
/// `best_single` and `task_best`.
pub fn comparison_columns(
    rows: &[ReportRow],
    comparisons: &[Comparison],
    intervals: &[Interval],
) -> Vec<polars::prelude::Column> {
    use polars::prelude::*;
    let own = |row: &ReportRow| {
        intervals.iter().find(|i| row.scope == Scope::Group && i.group == row.dataset && i.router == row.router)
    };
    let mut columns = vec![
        Column::new("acc_predict_low".into(), rows.iter().map(|row| own(row).map(|i| i.low)).collect::<Vec<_>>()),
        Column::new("acc_predict_high".into(), rows.iter().map(|row| own(row).map(|i| i.high)).collect::<Vec<_>>()),
    ];
    for baseline in [BEST_SINGLE, TASK_BEST] {
        let find = |row: &ReportRow| {
            comparisons.iter().find(|c| {
                row.scope == Scope::Group && c.group == row.dataset && c.router == row.router && c.baseline == baseline
            })
        };
        let pick = |value: fn(&Comparison) -> f64| rows.iter().map(|row| find(row).map(value)).collect::<Vec<_>>();
        columns.push(Column::new(format!("vs_{baseline}").into(), pick(|c| c.difference)));
        columns.push(Column::new(format!("vs_{baseline}_low").into(), pick(|c| c.low)));
        columns.push(Column::new(format!("vs_{baseline}_high").into(), pick(|c| c.high)));
    }
    columns
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::table::MetricKind;

    fn table(name: &str, scores: &[[f64; 2]], splits: &[Option<Split>]) -> LoadedTable {
        let n = scores.len();
        LoadedTable {
            path: PathBuf::from(format!("{name}.parquet")),
            table: ScoredTable {
                dataset: name.into(),
                kind: MetricKind::MultiAttempt,
                models: vec!["a".into(), "b".into()],
                query_ids: (0..n).map(|i| i.to_string()).collect(),
                texts: vec!["q".into(); n],
                splits: splits.to_vec(),
                cluster_ids: vec![None; n],
                scores: scores.concat(),
                costs: None,
            },
        }
    }

    #[test]
    fn task_best_is_chosen_on_training_rows_and_scored_on_the_others() {
        use Split::{Test, Train};
        // `a` is better on the training rows, `b` on the test rows: task_best is `a`, scored on test.
        let both = table(
            "mmlu",
            &[[1.0, 0.0], [1.0, 0.5], [0.0, 1.0], [0.2, 1.0]],
            &[Some(Train), Some(Train), Some(Test), Some(Test)],
        );
        let reported = crate::routing::select_split(vec![both.clone()], Test);
        assert_eq!(task_best(&reported, std::slice::from_ref(&both), Some(Test), 0.0), vec![Some(0)]);
        let rows =
            task_best_rows(&reported, &[Group { id: "all".into(), datasets: vec!["mmlu".into()] }], &[Some(0)], 0.0);
        assert_eq!(rows.len(), 2);
        assert!((rows[0].acc_predict - 0.1).abs() < 1e-12 && rows[0].llm.as_deref() == Some("a"));
        // Without the test split selected, the same table's training rows are not used (they
        // are reported too); a `_train` sibling is.
        assert_eq!(task_best(std::slice::from_ref(&both), std::slice::from_ref(&both), None, 0.0), vec![None]);
        let train = table("gsm8k_train", &[[0.0, 1.0], [0.0, 0.5]], &[None, None]);
        let test = table("gsm8k_test", &[[1.0, 0.0]], &[None]);
        let all = vec![test.clone(), train];
        assert_eq!(task_best(&all, &all, None, 0.0), vec![Some(1), None]);
    }

    #[test]
    fn bootstrap_intervals_are_seeded_and_cover_a_known_difference() {
        // Router credit 1 on 80% of 400 queries, the baseline on 50%, paired: difference 0.3.
        let router: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 5 != 0))).collect();
        let baseline: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let pairs = vec![(router, baseline)];
        let (difference, low, high) = bootstrap(&pairs, 1000, &mut routing::rng(7));
        assert!((difference - 0.3).abs() < 1e-12);
        assert!(low < 0.3 && 0.3 < high && low > 0.2 && high < 0.4, "[{low}, {high}]");
        assert_eq!(bootstrap(&pairs, 1000, &mut routing::rng(7)), (difference, low, high));
        assert_ne!(bootstrap(&pairs, 1000, &mut routing::rng(8)), (difference, low, high));
        // Identical credits: no difference, an interval of width 0.
        let same = vec![(pairs[0].1.clone(), pairs[0].1.clone())];
        assert_eq!(bootstrap(&same, 100, &mut routing::rng(1)), (0.0, 0.0, 0.0));
        let c = Comparison {
            group: "g".into(),
            router: "r".into(),
            baseline: "b".into(),
            baseline_value: 0.5,
            difference,
            low,
            high,
        };
        assert_eq!(c.outcome(), "beats");
    }
}
