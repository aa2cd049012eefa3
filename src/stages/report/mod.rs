//! report: the evaluation numbers (`docs/method.md`, "Evaluation") for fixed routers, per table and per group of tables.
//!
//! For every table: each LLM alone, the oracle (the argmax of each query's score vector, first
//! index on ties) and the random router (its expected value). For every group of tables: the
//! unweighted mean over its tables of each of those, and the best single LLM (the LLM with the
//! highest mean `acc_predict` over the group, first in model order on ties).
//!
//! - `acc`: share of queries where the routed LLM is the argmax of the score vector.
//! - `acc_predict`: mean of the routed LLM's credit: for `probability` tables a score > 0 counts
//!   as 1, otherwise the raw score counts.
//! - `cost` (tables with costs only): mean cost per query of the routed LLM.

mod baselines;
pub mod cost_quality;
mod figures;
pub mod verdict;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use self::baselines::*;
use self::cost_quality::{cost_quality, cost_quality_frame, cost_quality_markdown};
use self::figures::{ACC_FIGURE, Figures, TRAINING_FIGURE, accuracy_figure, cost_quality_figure, training_figure};
use crate::error::{Error, Result};
use crate::routing::select_split;
use crate::table::{LoadedTable, Split};

/// A `--checkpoint` value, `[NAME=]PATH`: a router and, optionally, the name of its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterArg {
    pub name: Option<String>,
    pub path: PathBuf,
}

impl std::str::FromStr for RouterArg {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Self, Self::Err> {
        // A path that exists is a path, `=` or not.
        if !std::path::Path::new(value).exists()
            && let Some((name, path)) = value.split_once('=')
        {
            crate::table::check_name(name).map_err(|why| format!("`{name}` cannot name a router's rows: {why}"))?;
            return Ok(RouterArg { name: Some(name.to_owned()), path: PathBuf::from(path) });
        }
        Ok(RouterArg { name: None, path: PathBuf::from(value) })
    }
}

/// Settings of `routerdc report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportConfig {
    /// Folder of scored tables (`*.parquet`), as written by `routerdc import`.
    #[arg(long, value_name = "DIR")]
    pub tables: PathBuf,
    /// Folder for `baselines.parquet`, `baselines.csv` and `baselines.md`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A group of datasets to average, `ID=name,name,...` (repeatable). Default: one group `all`.
    #[arg(long = "group", value_name = "ID=DATASETS")]
    pub groups: Vec<Group>,
    /// Report only the rows of this split; tables without such rows are left out.
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// For tables with costs, rank LLMs by `quality − cost_rate × cost` for `acc` and the oracle.
    #[arg(long, default_value_t = 0.0)]
    pub cost_rate: f64,
    /// A trained router: `best.safetensors` from `routerdc train` (rows `routerdc`) or a router
    /// folder from `train --router knn|cluster|mlp` (rows named by its kind); `NAME=PATH` names
    /// its rows NAME. Repeatable: every router's rows come first, in this order, and each is
    /// compared with the baselines.
    #[arg(long = "checkpoint", value_name = "[NAME=]FILE|DIR")]
    pub checkpoint: Vec<RouterArg>,
    /// λ of the routing-time cost penalty for the trained routers, as `route --cost-rate`: each
    /// query goes to the argmax of the router's score minus λ × the LLM's mean training cost.
    /// Default: each router's `calibration.json` when it has one, else 0.
    #[arg(long)]
    pub route_cost_rate: Option<f64>,
    /// `NAME=FILE`: the `calibration.json` of the router whose rows are named NAME, when it is
    /// not beside the router (repeatable).
    #[arg(long = "calibration", value_name = "NAME=FILE")]
    pub calibration: Vec<RouterArg>,
    /// The trained routers' encoders with their Linear layers in int8 (CPU; see `embed --quantize`).
    #[arg(long, value_enum, default_value_t = crate::hf::Quantize::None)]
    pub quantize: crate::hf::Quantize,
    /// Resamples of the paired bootstrap behind the verdict's intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap's resamples.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What `run` wrote.
#[derive(Debug)]
pub struct ReportOutput {
    pub rows: Vec<ReportRow>,
    pub markdown: String,
    pub files: Vec<PathBuf>,
}

/// A trained router's routes of a table: its choice and its per-LLM scores for each query.
pub type Routes<'a> = &'a dyn Fn(&LoadedTable) -> Result<crate::stages::route::Routed>;

/// A trained router as the report sees it.
pub struct RouterInput<'a> {
    /// The name of its rows (`routerdc`, `knn`, or the name given).
    pub name: String,
    /// Each LLM's mean cost per query on its training rows, when it was trained with costs: what
    /// `--route-cost-rate` and the cost sweep charge.
    pub costs: Option<Vec<f64>>,
    /// Its `calibration.json`, when it has one: the λ charged unless `--route-cost-rate` is
    /// given, and the target it was fitted to, shown beside what the reported rows give.
    pub calibration: Option<crate::stages::calibrate::Calibration>,
    pub routes: Routes<'a>,
}

/// A trained router's routes of every reported table, as the report scores them.
pub struct RoutedRouter {
    pub name: String,
    /// Its recorded mean training cost per LLM (`RouterInput::costs`).
    pub costs: Option<Vec<f64>>,
    /// Per reported table, its routes (choices charged `--route-cost-rate`).
    pub tables: Vec<crate::stages::route::Routed>,
}

/// Read the tables, compute the baselines and write `baselines.{parquet,csv,md}`, beside the
/// rows of every trained router in `routers` (their choices, charged `--route-cost-rate`).
pub fn run(config: &ReportConfig, routers: &[RouterInput<'_>]) -> Result<ReportOutput> {
    // Every table as read (task_best's training rows come from there), and the reported rows:
    // a copy only when a split is selected.
    let all = crate::io::read_tables(&config.tables)?;
    let selected = config.split.map(|split| select_split(all.clone(), split));
    let tables: &[LoadedTable] = selected.as_deref().unwrap_or(&all);
    if let Some(split) = config.split
        && tables.is_empty()
    {
        return Err(Error::setting(
            "split",
            format!("no table in `{}` has `{}` rows", config.tables.display(), split.as_str()),
        ));
    }
    if !(config.cost_rate >= 0.0 && config.cost_rate.is_finite()) {
        return Err(Error::setting("cost_rate", format!("{} is not a non-negative number", config.cost_rate)));
    }
    if let Some(rate) = config.route_cost_rate
        && !(rate >= 0.0 && rate.is_finite())
    {
        return Err(Error::setting("route_cost_rate", format!("{rate} is not a non-negative number")));
    }
    // A router's rows must not be mistaken for an LLM's or a baseline's.
    for name in routers.iter().map(|router| &router.name) {
        let taken = [ORACLE, ORACLE_STRICT, RANDOM, BEST_SINGLE, verdict::TASK_BEST].contains(&name.as_str())
            || tables.iter().any(|loaded| loaded.table.models.contains(name));
        if taken {
            return Err(Error::setting(
                "checkpoint",
                format!("a router named `{name}` would be mistaken for the LLM or baseline of that name"),
            ));
        }
    }
    // Each router's routes, its choices re-made with the routing-time charge when one is set.
    let mut routed: Vec<RoutedRouter> = Vec::new();
    for router in routers {
        let tables_routed = tables.iter().map(router.routes).collect::<Result<Vec<_>>>()?;
        let rate = config.route_cost_rate.or(router.calibration.as_ref().map(|c| c.lambda)).unwrap_or(0.0);
        if rate != 0.0 && router.costs.is_none() {
            return Err(Error::setting(
                "route_cost_rate",
                format!("the router `{}` was trained on tables without costs: there is no cost to charge", router.name),
            ));
        }
        let charge = crate::stages::route::charge(router.costs.as_deref(), rate, std::path::Path::new(&router.name))?;
        let tables_routed = match &charge {
            Some(charge) => tables_routed
                .into_iter()
                .map(|mut routed| {
                    routed.choices = routed
                        .scores
                        .iter()
                        .map(|scores| crate::routing::charged_argmax(scores, Some(charge)))
                        .collect();
                    routed
                })
                .collect(),
            None => tables_routed,
        };
        routed.push(RoutedRouter { name: router.name.clone(), costs: router.costs.clone(), tables: tables_routed });
    }
    // Each router's name and choices per table, as the rows and the verdict take them.
    let choices: Vec<(String, Vec<Vec<usize>>)> = routed
        .iter()
        .map(|router| (router.name.clone(), router.tables.iter().map(|r| r.choices.clone()).collect()))
        .collect();
    let groups = resolve_groups(tables, &config.groups)?;
    // The routers' rows first, in the order given, then the baselines.
    let mut rows = Vec::new();
    for (name, routed) in &choices {
        let per_table: Vec<Option<(Vec<usize>, Option<String>)>> =
            routed.iter().map(|choices| Some((choices.clone(), None))).collect();
        rows.extend(verdict::router_rows(tables, &groups, name, &per_table, config.cost_rate));
    }
    rows.extend(baselines(tables, &config.groups, config.cost_rate, None)?);
    let task_best = verdict::task_best(tables, &all, config.split, config.cost_rate);
    rows.extend(verdict::task_best_rows(tables, &groups, &task_best, config.cost_rate));
    let comparisons = verdict::compare(tables, &groups, &rows, &choices, &task_best, config.bootstrap, config.seed);
    let mut cost_rows = cost_quality(&rows, tables);
    cost_rows.extend(cost_quality::router_curves(tables, &cost_rows, &routed));
    // The verdict first: against the baselines, then each router's curve against the zero router,
    // then whether each calibrated target holds on these rows.
    let mut markdown = verdict::verdict_markdown(&comparisons, config.bootstrap, !choices.is_empty());
    markdown.push_str(&cost_quality::curves_markdown(&cost_rows));
    markdown.push_str(&calibration_markdown(config, routers, &routed, tables));
    markdown.push_str(&to_markdown(&rows));
    let mut frame = to_frame(&rows)?;
    let intervals = verdict::intervals(tables, &groups, &choices, config.bootstrap, config.seed);
    for column in verdict::comparison_columns(&rows, &comparisons, &intervals) {
        frame.with_column(column).map_err(Error::polars("adding the comparison columns"))?;
    }
    let mut cost_frame = if cost_rows.is_empty() { None } else { Some(cost_quality_frame(&cost_rows)?) };
    if !cost_rows.is_empty() {
        markdown.push_str(&cost_quality_markdown(&cost_rows));
    }
    // Every file is written into a staging folder and moved into `--out` together at the end.
    let outputs = crate::io::Outputs::new(&config.out)?;
    let out = outputs.dir();
    let files = ["baselines.parquet", "baselines.csv", "baselines.md"].map(|name| out.join(name));
    crate::io::write_parquet(&mut frame, &files[0])?;
    crate::io::write_csv(&mut frame, &files[1])?;
    let mut written = files.to_vec();
    if let Some(cost_frame) = &mut cost_frame {
        let (parquet, csv) = (out.join("cost_quality.parquet"), out.join("cost_quality.csv"));
        crate::io::write_parquet(cost_frame, &parquet)?;
        crate::io::write_csv(cost_frame, &csv)?;
        written.extend([parquet, csv]);
    }
    let mut figures = Figures::default();
    for loaded in tables.iter().filter(|loaded| loaded.table.costs.is_some()) {
        let dataset = &loaded.table.dataset;
        let names: Vec<String> = choices.iter().map(|(name, _)| name.clone()).collect();
        let figure = cost_quality_figure(&rows, &cost_rows, dataset, &names);
        let base = crate::io::named_file(out, &format!("cost_quality_{dataset}"), "")?;
        written.extend(crate::plot::cost_quality(
            &format!("{dataset}: cost and quality"),
            &figure.points,
            &figure.hull,
            &figure.curves,
            &base,
        )?);
        figures.cost_quality.push(dataset.clone());
    }
    written.extend(accuracy_figure(&rows, &intervals, &out.join(ACC_FIGURE))?);
    // The training log sits beside a checkpoint file, or in a router folder.
    let run_dirs = config
        .checkpoint
        .iter()
        .map(|router| router.path.as_path())
        .filter_map(|path| if path.is_dir() { Some(path) } else { path.parent() });
    if let Some(log) = run_dirs.map(|dir| dir.join("train_log.parquet")).find(|log| log.is_file()) {
        written.extend(training_figure(&log, &out.join(TRAINING_FIGURE))?);
        figures.training = true;
    }
    crate::io::write_text(&markdown, &files[2])?;
    let report = report_markdown(config, &markdown, &figures);
    let report_path = out.join("report.md");
    crate::io::write_text(&report, &report_path)?;
    written.push(report_path);
    let written = written.iter().map(|path| outputs.final_path(path)).collect();
    outputs.commit()?;
    Ok(ReportOutput { rows, markdown, files: written })
}

/// For each router with a calibration (and no `--route-cost-rate` over it): its target, λ, the
/// mean cost and quality it reached on the calibration rows, and what the reported rows give at
/// that λ (pooled over the tables), with the cost ratio.
fn calibration_markdown(
    config: &ReportConfig,
    routers: &[RouterInput<'_>],
    routed: &[RoutedRouter],
    tables: &[LoadedTable],
) -> String {
    if config.route_cost_rate.is_some() {
        return String::new();
    }
    let mut lines = Vec::new();
    for (router, routes) in routers.iter().zip(routed) {
        let Some(calibration) = &router.calibration else { continue };
        let (mut cost, mut quality, mut n) = (0.0, 0.0, 0usize);
        for (loaded, routes) in tables.iter().zip(&routes.tables) {
            for (row, &choice) in routes.choices.iter().enumerate() {
                cost += loaded.table.cost_row(row).map_or(0.0, |costs| costs[choice]);
                quality += loaded.table.kind.credit(loaded.table.score_row(row)[choice]);
                n += 1;
            }
        }
        let (cost, quality) = (cost / n.max(1) as f64, quality / n.max(1) as f64);
        let target = match calibration.target {
            crate::stages::calibrate::Target::Budget(budget) => format!("budget {budget}"),
            crate::stages::calibrate::Target::Quality(q) => format!("quality {:.2}%", 100.0 * q),
            crate::stages::calibrate::Target::StrongShare(s) => format!("strong share {:.1}%", 100.0 * s),
        };
        lines.push(format!(
            "| {} | {target} | {:.6} | {:.6} | {:.2} | {:.6} | {:.2} | {:.3} |",
            router.name,
            calibration.lambda,
            calibration.reached.cost,
            100.0 * calibration.reached.quality,
            cost,
            100.0 * quality,
            cost / calibration.reached.cost
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "### Calibrated operating points\n\nEach router routed with the λ of its `calibration.json`: \
         what it reached on the calibration rows and what these rows give (pooled over the tables).\n\n\
         | router | target | λ | calibration cost | calibration quality (%) | cost here | quality here (%) | cost here / calibration |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n{}\n\n",
        lines.join("\n")
    )
}

/// `report.md`: the figures and the paper-style tables in one page.
fn report_markdown(config: &ReportConfig, tables: &str, figures: &Figures) -> String {
    let mut out = String::from("# routerdc report\n\n");
    let _ = writeln!(
        out,
        "Tables: `{}`{}{}.\n",
        config.tables.display(),
        config.split.map(|split| format!(", rows of the `{}` split", split.as_str())).unwrap_or_default(),
        config.checkpoint.iter().map(|router| format!("; router from `{}`", router.path.display())).collect::<String>()
    );
    let _ = writeln!(out, "![acc_predict per dataset]({ACC_FIGURE}.png)\n");
    out.push_str(tables);
    if figures.training {
        let _ = writeln!(out, "## Training\n\n![training curves]({TRAINING_FIGURE}.png)\n");
    }
    for dataset in &figures.cost_quality {
        let _ = writeln!(out, "## Cost and quality: {dataset}\n\n![cost and quality](cost_quality_{dataset}.png)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::table::{MetricKind, ScoredTable};

    fn table(dataset: &str, kind: MetricKind, models: &[&str], scores: &[&[f64]]) -> LoadedTable {
        let n = scores.len();
        LoadedTable {
            path: Path::new(dataset).with_extension("parquet"),
            table: ScoredTable {
                dataset: dataset.into(),
                kind,
                models: models.iter().map(|m| (*m).to_owned()).collect(),
                query_ids: (0..n).map(|i| i.to_string()).collect(),
                texts: vec![String::new(); n],
                splits: vec![None; n],
                cluster_ids: vec![None; n],
                scores: scores.concat(),
                costs: None,
            },
        }
    }

    fn find<'a>(rows: &'a [ReportRow], dataset: &str, router: &str) -> &'a ReportRow {
        rows.iter().find(|r| r.dataset == dataset && r.router == router).unwrap()
    }

    #[test]
    fn probability_scores_count_as_correct_when_positive() {
        // Hand computation: a is correct on q0 and q2 (2/3); b on q0 and q1 (2/3); argmax is
        // a, b, a (acc 2/3, 1/3); the oracle is correct on all three; random = mean of 2/3, 2/3.
        let t = table("mmlu", MetricKind::Probability, &["a", "b"], &[&[0.9, 0.2], &[0.0, 0.7], &[0.4, 0.0]]);
        let rows = table_baselines(&t.table, 0.0);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-15;
        let a = find(&rows, "mmlu", "a");
        assert!(close(a.acc, 2.0 / 3.0) && close(a.acc_predict, 2.0 / 3.0));
        let b = find(&rows, "mmlu", "b");
        assert!(close(b.acc, 1.0 / 3.0) && close(b.acc_predict, 2.0 / 3.0));
        let oracle = find(&rows, "mmlu", ORACLE);
        assert!(close(oracle.acc, 1.0) && close(oracle.acc_predict, 1.0));
        let random = find(&rows, "mmlu", RANDOM);
        assert!(close(random.acc, 0.5) && close(random.acc_predict, 2.0 / 3.0));
    }

    #[test]
    fn ties_and_all_zero_rows_go_to_the_first_model() {
        // Every row ties (or is all zero), so the first model is the argmax of each.
        let t = table("gsm8k", MetricKind::MultiAttempt, &["a", "b", "c"], &[&[0.0, 0.0, 0.0], &[0.5, 0.5, 0.2]]);
        let rows = table_baselines(&t.table, 0.0);
        assert_eq!([find(&rows, "gsm8k", "a").acc, find(&rows, "gsm8k", "b").acc], [1.0, 0.0]);
        assert_eq!(find(&rows, "gsm8k", ORACLE).acc_predict, 0.25);
        assert_eq!(find(&rows, "gsm8k", "c").acc_predict, 0.1);
        assert!((find(&rows, "gsm8k", RANDOM).acc_predict - (1.2 / 3.0) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn a_single_model_is_its_own_oracle() {
        let t = table("mbpp", MetricKind::MultiAttempt, &["only"], &[&[0.3], &[0.0]]);
        let rows = baselines(&[t], &[], 0.0, None).unwrap();
        for router in ["only", ORACLE, RANDOM, BEST_SINGLE] {
            let row = find(&rows, if router == BEST_SINGLE { "all" } else { "mbpp" }, router);
            assert_eq!((row.acc, row.acc_predict), (1.0, 0.15), "{router}");
        }
    }

    #[test]
    fn groups_average_tables_unweighted_and_pick_the_best_single_llm() {
        let x = table("x", MetricKind::MultiAttempt, &["a", "b"], &[&[1.0, 0.0]]);
        let y = table("y", MetricKind::MultiAttempt, &["a", "b"], &[&[0.0, 1.0], &[0.0, 1.0], &[0.0, 0.5]]);
        let groups = ["g=x,y".parse::<Group>().unwrap(), "only_y=y".parse().unwrap()];
        let rows = baselines(&[x, y], &groups, 0.0, None).unwrap();
        // a: (1 + 0) / 2 = 0.5; b: (0 + 2.5/3) / 2 = 0.41666…: a is best over g, b over only_y.
        assert_eq!(find(&rows, "g", "a").acc_predict, 0.5);
        assert_eq!(find(&rows, "g", "a").n_queries, 4);
        assert_eq!(find(&rows, "g", BEST_SINGLE).llm.as_deref(), Some("a"));
        assert_eq!(find(&rows, "only_y", BEST_SINGLE).llm.as_deref(), Some("b"));
    }

    #[test]
    fn groups_are_checked_against_the_tables() {
        let x = table("x", MetricKind::MultiAttempt, &["a"], &[&[1.0]]);
        for (spec, message) in [("g=x,nope", "no table holds dataset `nope`"), ("x=x", "name of a dataset")] {
            let error = baselines(std::slice::from_ref(&x), &[spec.parse().unwrap()], 0.0, None).unwrap_err();
            assert!(error.is_usage() && error.to_string().contains(message), "{error}");
        }
        assert!("nogroup".parse::<Group>().is_err() && "g=".parse::<Group>().is_err());
    }

    #[test]
    fn with_costs_the_oracle_takes_the_cheapest_of_the_best() {
        // q0: a and b both solve it, b is cheaper; q1: nobody solves it (RouterBench: cost 0,
        // strict: the cheapest model, b at 0.1); q2: only a solves it.
        let mut t = table("arc", MetricKind::CostAware, &["a", "b"], &[&[1.0, 1.0], &[0.0, 0.0], &[0.8, 0.0]]);
        t.table.costs = Some(vec![0.5, 0.2, 0.3, 0.1, 0.7, 0.05]);
        let rows = table_baselines(&t.table, 0.0);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-15;
        let oracle = find(&rows, "arc", ORACLE);
        assert!(close(oracle.acc_predict, 1.8 / 3.0) && close(oracle.cost.unwrap(), (0.2 + 0.7) / 3.0));
        // acc: argmax is a (first) on q0 and q1, a on q2; the oracle routes b, b, a.
        assert!(close(oracle.acc, 1.0 / 3.0));
        let strict = find(&rows, "arc", ORACLE_STRICT);
        assert!(close(strict.cost.unwrap(), (0.2 + 0.1 + 0.7) / 3.0));
        assert!(close(find(&rows, "arc", "a").cost.unwrap(), 1.5 / 3.0));
        assert!(close(find(&rows, "arc", RANDOM).cost.unwrap(), (1.5 / 3.0 + 0.35 / 3.0) / 2.0));
        // With a cost rate of 1, q2's target is a: 0.1, b: -0.05, so a stays best there; on q0
        // b (1 - 0.2) beats a (1 - 0.5), so b becomes the argmax: b's acc counts q0 and q1.
        let rated = table_baselines(&t.table, 1.0);
        assert!(close(find(&rated, "arc", "b").acc, 2.0 / 3.0));
    }

    #[test]
    fn a_split_keeps_its_rows_and_drops_tables_without_them() {
        let mut x = table("x", MetricKind::MultiAttempt, &["a", "b"], &[&[1.0, 0.0], &[0.0, 0.5], &[0.25, 1.0]]);
        x.table.splits = vec![Some(Split::Test), Some(Split::Train), Some(Split::Test)];
        let y = table("y", MetricKind::MultiAttempt, &["a", "b"], &[&[1.0, 0.0]]);
        let kept = select_split(vec![x, y], Split::Test);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].table.query_ids, ["0", "2"]);
        assert_eq!(kept[0].table.scores, [1.0, 0.0, 0.25, 1.0]);
    }

    #[test]
    fn tables_with_other_model_lists_are_refused() {
        let x = table("x", MetricKind::MultiAttempt, &["a", "b"], &[&[1.0, 0.0]]);
        let y = table("y", MetricKind::MultiAttempt, &["b", "a"], &[&[1.0, 0.0]]);
        let error = baselines(&[x, y], &[], 0.0, None).unwrap_err();
        assert!(matches!(error, Error::ModelListMismatch { .. }), "{error}");
        assert!(error.to_string().contains("[\"a\", \"b\"]") && error.to_string().contains("[\"b\", \"a\"]"));
    }
}
