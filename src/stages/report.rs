//! report: the evaluation numbers of SPEC §6 for fixed routers, per table and per group of tables.
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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::table::{LoadedTable, ScoredTable, Split, check_same_models};

/// Router names used in `baselines.*` besides the LLMs' own names.
pub const ORACLE: &str = "oracle";
/// The oracle of tables with costs that charges the cheapest model for a query no model solves.
pub const ORACLE_STRICT: &str = "oracle_strict";
pub const RANDOM: &str = "random";
pub const BEST_SINGLE: &str = "best_single";

/// A named set of tables averaged together (`--group ID=a,b,c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub datasets: Vec<String>,
}

impl std::str::FromStr for Group {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (id, list) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not ID=dataset,dataset,..."))?;
        let datasets: Vec<String> =
            list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_owned).collect();
        if id.trim().is_empty() || datasets.is_empty() {
            return Err(format!("`{spec}` needs a group name and at least one dataset"));
        }
        Ok(Group { id: id.trim().to_owned(), datasets })
    }
}

impl From<Group> for String {
    fn from(group: Group) -> String {
        format!("{}={}", group.id, group.datasets.join(","))
    }
}

/// Whether a row describes one table or the mean over a group of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Dataset,
    Group,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Dataset => "dataset",
            Scope::Group => "group",
        }
    }
}

/// One line of `baselines.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub scope: Scope,
    /// The table's dataset name, or the group id for group rows.
    pub dataset: String,
    /// An LLM's name, `oracle`, `random` or `best_single`.
    pub router: String,
    /// The LLM a fixed router sends every query to (LLM rows and `best_single`).
    pub llm: Option<String>,
    pub n_queries: usize,
    pub acc: f64,
    pub acc_predict: f64,
    pub cost: Option<f64>,
}

/// The rows of one table: each LLM in model order, then the oracle and the random router (and,
/// for tables with costs, `oracle_strict`).
///
/// `cost_rate` turns a cost-aware table's target into `quality − cost_rate × cost` (SPEC §6):
/// `acc` compares with its argmax, and the oracle routes by it.
pub fn table_baselines(table: &ScoredTable, cost_rate: f64) -> Vec<ReportRow> {
    let (n, t) = (table.n_queries(), table.n_models());
    let mut argmax_counts = vec![0usize; t];
    let mut credits = vec![0.0; t];
    let mut costs = vec![0.0; t];
    let (mut oracle_acc, mut oracle_credit, mut oracle_cost, mut strict_cost, mut random_credit) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for row in 0..n {
        let scores = table.score_row(row);
        let row_costs = table.cost_row(row);
        let target = table.target_row(row, cost_rate);
        let best = first_argmax(&target);
        argmax_counts[best] += 1;
        let mut row_credit = 0.0;
        for (sum, &score) in credits.iter_mut().zip(scores) {
            let credit = table.kind.credit(score);
            *sum += credit;
            row_credit += credit;
        }
        random_credit += row_credit / t as f64;
        // The oracle: the best target; with costs, the cheapest of the best (first on ties).
        let route = match row_costs {
            None => best,
            Some(c) => {
                (0..t).filter(|&i| target[i] == target[best]).min_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap_or(best)
            }
        };
        oracle_acc += f64::from(u8::from(route == best));
        oracle_credit += table.kind.credit(scores[route]);
        if let Some(c) = row_costs {
            for (sum, &cost) in costs.iter_mut().zip(c) {
                *sum += cost;
            }
            strict_cost += c[route];
            // RouterBench's oracle sends a query that no model solves nowhere: it costs 0.
            if scores.iter().any(|&q| q > 0.0) {
                oracle_cost += c[route];
            }
        }
    }
    let has_costs = table.costs.is_some();
    let mean = |sum: f64| sum / n as f64;
    let row = |router: &str, llm: Option<&String>, acc: f64, acc_predict: f64, cost: f64| ReportRow {
        scope: Scope::Dataset,
        dataset: table.dataset.clone(),
        router: router.to_owned(),
        llm: llm.cloned(),
        n_queries: n,
        acc,
        acc_predict,
        cost: has_costs.then_some(cost),
    };
    let mut rows: Vec<ReportRow> = table
        .models
        .iter()
        .enumerate()
        .map(|(i, model)| row(model, Some(model), mean(argmax_counts[i] as f64), mean(credits[i]), mean(costs[i])))
        .collect();
    rows.push(row(ORACLE, None, mean(oracle_acc), mean(oracle_credit), mean(oracle_cost)));
    if has_costs {
        rows.push(row(ORACLE_STRICT, None, mean(oracle_acc), mean(oracle_credit), mean(strict_cost)));
    }
    let random_cost = costs.iter().map(|&sum| mean(sum)).sum::<f64>() / t as f64;
    rows.push(row(RANDOM, None, 1.0 / t as f64, mean(random_credit), random_cost));
    rows
}

/// The name of a trained router's rows.
pub const ROUTER: &str = "routerdc";

/// A trained router's row for one table: acc and acc_predict as SPEC §6, mean cost of the
/// routed LLMs.
pub fn routed_row(table: &ScoredTable, choices: &[usize], cost_rate: f64) -> ReportRow {
    let (acc, acc_predict) = crate::stages::train::evaluate(table, choices, cost_rate);
    let n = table.n_queries().max(1) as f64;
    let cost = table.costs.as_ref().map(|_| {
        choices.iter().enumerate().map(|(row, &c)| table.cost_row(row).map_or(0.0, |costs| costs[c])).sum::<f64>() / n
    });
    ReportRow {
        scope: Scope::Dataset,
        dataset: table.dataset.clone(),
        router: ROUTER.to_owned(),
        llm: None,
        n_queries: table.n_queries(),
        acc,
        acc_predict,
        cost,
    }
}

/// Index of the largest score, the first one on ties (numpy's `argmax`).
pub fn first_argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (index, &score) in scores.iter().enumerate().skip(1) {
        if score > scores[best] {
            best = index;
        }
    }
    best
}

/// Every row of the report: the tables' rows in table order, then each group's rows.
///
/// With no groups, one group `all` holds every table.
///
/// `routed` holds a trained router's choice for every query of every table (table order); its
/// rows are named [`ROUTER`] and come first.
pub fn baselines(
    tables: &[LoadedTable],
    groups: &[Group],
    cost_rate: f64,
    routed: Option<&[Vec<usize>]>,
) -> Result<Vec<ReportRow>> {
    check_same_models(tables)?;
    let groups = resolve_groups(tables, groups)?;
    let mut rows = Vec::new();
    for (index, loaded) in tables.iter().enumerate() {
        if let Some(choices) = routed.and_then(|routed| routed.get(index)) {
            rows.push(routed_row(&loaded.table, choices, cost_rate));
        }
        rows.extend(table_baselines(&loaded.table, cost_rate));
    }
    let strict = tables.iter().all(|loaded| loaded.table.costs.is_some()).then(|| ORACLE_STRICT.to_owned());
    let routers: Vec<String> = {
        let first = &tables[0].table;
        let router = routed.map(|_| ROUTER.to_owned());
        router
            .into_iter()
            .chain(first.models.iter().cloned())
            .chain([ORACLE.to_owned()])
            .chain(strict)
            .chain([RANDOM.to_owned()])
            .collect()
    };
    let skip = usize::from(routed.is_some());
    let n_models = tables[0].table.n_models();
    for group in &groups {
        let members: Vec<&ReportRow> =
            rows.iter().filter(|row| group.datasets.contains(&row.dataset) && row.scope == Scope::Dataset).collect();
        let mut group_rows = Vec::with_capacity(routers.len() + 1);
        for router in &routers {
            let of_router: Vec<&&ReportRow> = members.iter().filter(|row| &row.router == router).collect();
            let k = of_router.len() as f64;
            let cost = of_router.iter().map(|row| row.cost).sum::<Option<f64>>().map(|sum| sum / k);
            group_rows.push(ReportRow {
                scope: Scope::Group,
                dataset: group.id.clone(),
                router: router.clone(),
                llm: of_router[0].llm.clone(),
                n_queries: of_router.iter().map(|row| row.n_queries).sum(),
                acc: of_router.iter().map(|row| row.acc).sum::<f64>() / k,
                acc_predict: of_router.iter().map(|row| row.acc_predict).sum::<f64>() / k,
                cost,
            });
        }
        let best = (skip + 1..skip + n_models)
            .fold(skip, |best, i| if group_rows[i].acc_predict > group_rows[best].acc_predict { i } else { best });
        group_rows.push(ReportRow { router: BEST_SINGLE.to_owned(), ..group_rows[best].clone() });
        rows.extend(group_rows);
    }
    Ok(rows)
}

/// The groups to report: the user's, checked against the tables, or one group `all`.
fn resolve_groups(tables: &[LoadedTable], groups: &[Group]) -> Result<Vec<Group>> {
    let names: Vec<&String> = tables.iter().map(|loaded| &loaded.table.dataset).collect();
    for (i, loaded) in tables.iter().enumerate() {
        if let Some(other) = tables[..i].iter().find(|other| other.table.dataset == loaded.table.dataset) {
            return Err(Error::setting(
                "tables",
                format!(
                    "`{}` and `{}` both hold dataset `{}`",
                    other.path.display(),
                    loaded.path.display(),
                    loaded.table.dataset
                ),
            ));
        }
    }
    if groups.is_empty() {
        return Ok(vec![Group { id: "all".into(), datasets: names.into_iter().cloned().collect() }]);
    }
    for (i, group) in groups.iter().enumerate() {
        let setting = format!("group {}", group.id);
        if groups[..i].iter().any(|other| other.id == group.id) {
            return Err(Error::setting(setting, "the group name is used twice"));
        }
        if names.contains(&&group.id) {
            return Err(Error::setting(setting, "a group cannot have the name of a dataset"));
        }
        if let Some(unknown) = group.datasets.iter().find(|name| !names.contains(name)) {
            return Err(Error::setting(
                setting,
                format!("no table holds dataset `{unknown}`; the tables hold {names:?}"),
            ));
        }
    }
    Ok(groups.to_vec())
}

/// The rows as a frame with the columns of `baselines.csv`.
pub fn to_frame(rows: &[ReportRow]) -> Result<DataFrame> {
    let mut columns = vec![
        Column::new("scope".into(), rows.iter().map(|row| row.scope.as_str()).collect::<Vec<_>>()),
        Column::new("dataset".into(), rows.iter().map(|row| row.dataset.as_str()).collect::<Vec<_>>()),
        Column::new("router".into(), rows.iter().map(|row| row.router.as_str()).collect::<Vec<_>>()),
        Column::new("llm".into(), rows.iter().map(|row| row.llm.as_deref()).collect::<Vec<_>>()),
        Column::new("n_queries".into(), rows.iter().map(|row| row.n_queries as u64).collect::<Vec<_>>()),
        Column::new("acc".into(), rows.iter().map(|row| row.acc).collect::<Vec<_>>()),
        Column::new("acc_predict".into(), rows.iter().map(|row| row.acc_predict).collect::<Vec<_>>()),
    ];
    if rows.iter().any(|row| row.cost.is_some()) {
        columns.push(Column::new("cost".into(), rows.iter().map(|row| row.cost).collect::<Vec<_>>()));
    }
    DataFrame::new_infer_height(columns).map_err(Error::polars("building the baselines frame"))
}

/// The report as markdown: one table per metric, routers down, datasets then groups across,
/// values in percent (cost in dollars per query).
pub fn to_markdown(rows: &[ReportRow]) -> String {
    let datasets: Vec<&str> = unique(rows.iter().filter(|r| r.scope == Scope::Dataset).map(|r| r.dataset.as_str()));
    let groups: Vec<&str> = unique(rows.iter().filter(|r| r.scope == Scope::Group).map(|r| r.dataset.as_str()));
    let routers: Vec<&str> = unique(rows.iter().filter(|r| r.scope == Scope::Dataset).map(|r| r.router.as_str()));
    let lookup = |dataset: &str, router: &str| rows.iter().find(|r| r.dataset == dataset && r.router == router);

    let mut out = String::new();
    let metrics: [(&str, fn(&ReportRow) -> Option<f64>, bool); 3] = [
        ("acc_predict (%)", |r| Some(r.acc_predict), true),
        ("acc (%)", |r| Some(r.acc), true),
        ("cost ($ per query)", |r| r.cost, false),
    ];
    for (title, value, percent) in metrics {
        if rows.iter().all(|r| value(r).is_none()) {
            continue;
        }
        let format = |v: Option<f64>| match v {
            Some(v) if percent => format!("{:.2}", 100.0 * v),
            Some(v) => format!("{v:.6}"),
            None => "–".into(),
        };
        let _ = writeln!(out, "## {title}\n");
        let header: Vec<String> =
            datasets.iter().map(|d| (*d).to_owned()).chain(groups.iter().map(|g| format!("avg {g}"))).collect();
        let _ = writeln!(out, "| router | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len()));
        for router in &routers {
            let cells: Vec<String> =
                datasets.iter().chain(&groups).map(|dataset| format(lookup(dataset, router).and_then(value))).collect();
            let _ = writeln!(out, "| {router} | {} |", cells.join(" | "));
        }
        for group in &groups {
            let Some(best) = lookup(group, BEST_SINGLE) else { continue };
            let llm = best.llm.as_deref().unwrap_or_default();
            let group_datasets: Vec<&str> = rows
                .iter()
                .filter(|r| r.scope == Scope::Dataset && r.router == llm)
                .map(|r| r.dataset.as_str())
                .collect();
            let cells: Vec<String> = datasets
                .iter()
                .map(|dataset| {
                    if group_datasets.contains(dataset) {
                        format(lookup(dataset, llm).and_then(value))
                    } else {
                        "–".into()
                    }
                })
                .chain(groups.iter().map(|g| if g == group { format(value(best)) } else { "–".into() }))
                .collect();
            let _ = writeln!(out, "| best single ({group}): {llm} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
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
    /// For tables with costs, rank LLMs by `quality − cost_rate × cost` (SPEC §6) for `acc` and the oracle.
    #[arg(long, default_value_t = 0.0)]
    pub cost_rate: f64,
    /// A trained router (`best.safetensors` from `routerdc train`): its rows (`routerdc`) come first.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
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

/// One line of `cost_quality.*`: an LLM's (cost, quality) point with its place on the Pareto
/// front and the non-decreasing hull, or the zero router's AIQ over the LLMs' cost range.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQualityRow {
    pub dataset: String,
    pub router: String,
    pub cost: Option<f64>,
    pub quality: Option<f64>,
    pub pareto: Option<bool>,
    pub hull: Option<bool>,
    pub aiq_paper: Option<f64>,
    pub aiq_code: Option<f64>,
}

/// The name of the router that mixes LLMs at random (the non-decreasing convex hull).
pub const ZERO_ROUTER: &str = "zero_router";

/// Cost–quality rows of every table with costs (`cost_quality` module docs).
pub fn cost_quality(rows: &[ReportRow], tables: &[LoadedTable]) -> Vec<CostQualityRow> {
    use crate::stages::cost_quality::{aiq_code, aiq_paper, non_decreasing_hull, pareto_front, routerbench_hull};
    let mut out = Vec::new();
    for loaded in tables.iter().filter(|loaded| loaded.table.costs.is_some()) {
        let table = &loaded.table;
        let llm_rows: Vec<&ReportRow> = table
            .models
            .iter()
            .filter_map(|m| {
                rows.iter().find(|r| r.scope == Scope::Dataset && r.dataset == table.dataset && &r.router == m)
            })
            .collect();
        let points: Vec<(f64, f64)> = llm_rows.iter().map(|r| (r.cost.unwrap_or(0.0), r.acc_predict)).collect();
        let front = pareto_front(&points);
        let hull = non_decreasing_hull(&points);
        for (i, row) in llm_rows.iter().enumerate() {
            out.push(CostQualityRow {
                dataset: table.dataset.clone(),
                router: row.router.clone(),
                cost: Some(points[i].0),
                quality: Some(points[i].1),
                pareto: Some(front.contains(&i)),
                hull: Some(hull.contains(&points[i])),
                aiq_paper: None,
                aiq_code: None,
            });
        }
        let c_min = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let c_max = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        out.push(CostQualityRow {
            dataset: table.dataset.clone(),
            router: ZERO_ROUTER.to_owned(),
            cost: None,
            quality: None,
            pareto: None,
            hull: None,
            aiq_paper: Some(aiq_paper(&hull, c_min, c_max)),
            aiq_code: Some(aiq_code(&routerbench_hull(&points), c_max)),
        });
    }
    out
}

fn cost_quality_frame(rows: &[CostQualityRow]) -> Result<DataFrame> {
    let columns = vec![
        Column::new("dataset".into(), rows.iter().map(|r| r.dataset.as_str()).collect::<Vec<_>>()),
        Column::new("router".into(), rows.iter().map(|r| r.router.as_str()).collect::<Vec<_>>()),
        Column::new("cost".into(), rows.iter().map(|r| r.cost).collect::<Vec<_>>()),
        Column::new("quality".into(), rows.iter().map(|r| r.quality).collect::<Vec<_>>()),
        Column::new("pareto".into(), rows.iter().map(|r| r.pareto).collect::<Vec<_>>()),
        Column::new("hull".into(), rows.iter().map(|r| r.hull).collect::<Vec<_>>()),
        Column::new("aiq_paper".into(), rows.iter().map(|r| r.aiq_paper).collect::<Vec<_>>()),
        Column::new("aiq_code".into(), rows.iter().map(|r| r.aiq_code).collect::<Vec<_>>()),
    ];
    DataFrame::new_infer_height(columns).map_err(Error::polars("building the cost-quality frame"))
}

fn cost_quality_markdown(rows: &[CostQualityRow]) -> String {
    let mut out = String::from(
        "## Cost and quality\n\n| dataset | Pareto front (cheapest first) | zero router AIQ (paper) | AIQ (RouterBench code) |\n|---|---|---:|---:|\n",
    );
    for zero in rows.iter().filter(|r| r.router == ZERO_ROUTER) {
        let mut front: Vec<&CostQualityRow> =
            rows.iter().filter(|r| r.dataset == zero.dataset && r.pareto == Some(true)).collect();
        front.sort_by(|a, b| a.cost.unwrap_or(0.0).total_cmp(&b.cost.unwrap_or(0.0)));
        let names: Vec<&str> = front.iter().map(|r| r.router.as_str()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.4} | {:.4} |",
            zero.dataset,
            names.join(", "),
            zero.aiq_paper.unwrap_or(f64::NAN),
            zero.aiq_code.unwrap_or(f64::NAN)
        );
    }
    out.push('\n');
    out
}

/// The points of one table's cost–quality figure (each LLM, `oracle`, `oracle_strict`) and the
/// hull through the LLM points.
pub fn cost_quality_figure(
    rows: &[ReportRow],
    cost_rows: &[CostQualityRow],
    dataset: &str,
) -> (Vec<crate::plot::LabelledPoint>, Vec<(f64, f64)>) {
    use crate::plot::{LabelledPoint, PointKind};
    let mut points: Vec<LabelledPoint> = cost_rows
        .iter()
        .filter(|r| r.dataset == dataset && r.router != ZERO_ROUTER)
        .filter_map(|r| {
            Some(LabelledPoint {
                label: r.router.clone(),
                cost: r.cost?,
                quality: r.quality?,
                kind: if r.pareto == Some(true) { PointKind::ParetoLlm } else { PointKind::Llm },
            })
        })
        .collect();
    let llm_points: Vec<(f64, f64)> = points.iter().map(|p| (p.cost, p.quality)).collect();
    let hull = crate::stages::cost_quality::non_decreasing_hull(&llm_points);
    for (router, kind) in [(ORACLE, PointKind::Oracle), (ORACLE_STRICT, PointKind::Oracle), (ROUTER, PointKind::Router)]
    {
        if let Some(row) = rows.iter().find(|r| r.scope == Scope::Dataset && r.dataset == dataset && r.router == router)
        {
            points.push(LabelledPoint {
                label: router.to_owned(),
                cost: row.cost.unwrap_or(0.0),
                quality: row.acc_predict,
                kind,
            });
        }
    }
    (points, hull)
}

/// What `run` wrote.
#[derive(Debug)]
pub struct ReportOutput {
    pub rows: Vec<ReportRow>,
    pub markdown: String,
    pub files: Vec<PathBuf>,
}

/// Read the tables, compute the baselines and write `baselines.{parquet,csv,md}`. With a
/// checkpoint, `routes` gives, for a table, the router's choice for each of its queries.
pub fn run(config: &ReportConfig, routes: Option<&dyn Fn(&LoadedTable) -> Result<Vec<usize>>>) -> Result<ReportOutput> {
    let mut tables = crate::io::read_tables(&config.tables)?;
    if let Some(split) = config.split {
        tables = select_split(tables, split);
        if tables.is_empty() {
            return Err(Error::setting(
                "split",
                format!("no table in `{}` has `{}` rows", config.tables.display(), split.as_str()),
            ));
        }
    }
    if !(config.cost_rate >= 0.0 && config.cost_rate.is_finite()) {
        return Err(Error::setting("cost_rate", format!("{} is not a non-negative number", config.cost_rate)));
    }
    let routed = match routes {
        Some(routes) => Some(tables.iter().map(routes).collect::<Result<Vec<_>>>()?),
        None => None,
    };
    let rows = baselines(&tables, &config.groups, config.cost_rate, routed.as_deref())?;
    let mut markdown = to_markdown(&rows);
    let mut frame = to_frame(&rows)?;
    let cost_rows = cost_quality(&rows, &tables);
    let mut cost_frame = if cost_rows.is_empty() { None } else { Some(cost_quality_frame(&cost_rows)?) };
    if !cost_rows.is_empty() {
        markdown.push_str(&cost_quality_markdown(&cost_rows));
    }
    let files = ["baselines.parquet", "baselines.csv", "baselines.md"].map(|name| config.out.join(name));
    crate::io::write_parquet(&mut frame, &files[0])?;
    crate::io::write_csv(&mut frame, &files[1])?;
    let mut written = files.to_vec();
    if let Some(cost_frame) = &mut cost_frame {
        let (parquet, csv) = (config.out.join("cost_quality.parquet"), config.out.join("cost_quality.csv"));
        crate::io::write_parquet(cost_frame, &parquet)?;
        crate::io::write_csv(cost_frame, &csv)?;
        written.extend([parquet, csv]);
    }
    let mut figures = Figures::default();
    for loaded in tables.iter().filter(|loaded| loaded.table.costs.is_some()) {
        let dataset = &loaded.table.dataset;
        let (points, hull) = cost_quality_figure(&rows, &cost_rows, dataset);
        let base = config.out.join(format!("cost_quality_{dataset}"));
        written.extend(crate::plot::cost_quality(&format!("{dataset}: cost and quality"), &points, &hull, &base)?);
        figures.cost_quality.push(dataset.clone());
    }
    written.extend(accuracy_figure(&rows, &config.out.join(ACC_FIGURE))?);
    if let Some(log) = config.checkpoint.as_deref().and_then(Path::parent).map(|dir| dir.join("train_log.parquet")) {
        if log.is_file() {
            written.extend(training_figure(&log, &config.out.join(TRAINING_FIGURE))?);
            figures.training = true;
        }
    }
    crate::io::write_text(&markdown, &files[2])?;
    let report = report_markdown(config, &markdown, &figures);
    let report_path = config.out.join("report.md");
    crate::io::write_text(&report, &report_path)?;
    written.push(report_path);
    Ok(ReportOutput { rows, markdown, files: written })
}

const ACC_FIGURE: &str = "acc_predict";
const TRAINING_FIGURE: &str = "training_curves";

/// Which optional figures a report has.
#[derive(Debug, Default)]
struct Figures {
    /// Datasets with a cost–quality figure.
    cost_quality: Vec<String>,
    training: bool,
}

/// The bar chart of acc_predict (%) per dataset and group average: each LLM, the oracle and,
/// when there is one, the trained router.
fn accuracy_figure(rows: &[ReportRow], base: &Path) -> Result<Vec<PathBuf>> {
    // Each dataset, then each group's average.
    let categories: Vec<(Scope, &str)> = [Scope::Dataset, Scope::Group]
        .into_iter()
        .flat_map(|scope| {
            unique(rows.iter().filter(|r| r.scope == scope).map(|r| r.dataset.as_str()))
                .into_iter()
                .map(move |name| (scope, name))
        })
        .collect();
    let labels: Vec<String> = categories
        .iter()
        .map(|(scope, name)| if *scope == Scope::Group { format!("avg {name}") } else { (*name).to_owned() })
        .collect();
    let routers: Vec<&str> = unique(
        rows.iter()
            .filter(|r| r.scope == Scope::Dataset && r.router != RANDOM && r.router != ORACLE_STRICT)
            .map(|r| r.router.as_str()),
    );
    let series: Vec<crate::plot::BarSeries> = routers
        .iter()
        .map(|router| crate::plot::BarSeries {
            label: (*router).to_owned(),
            values: categories
                .iter()
                .map(|(scope, name)| {
                    rows.iter()
                        .find(|r| r.scope == *scope && r.dataset == *name && r.router == *router)
                        .map(|r| 100.0 * r.acc_predict)
                })
                .collect(),
        })
        .collect();
    crate::plot::grouped_bars("acc_predict per dataset", "acc_predict (%)", &labels, &series, base)
}

/// Training curves from `train_log.parquet`: the loss per step, and the validation and test
/// averages of acc_predict at each evaluation.
fn training_figure(log: &Path, base: &Path) -> Result<Vec<PathBuf>> {
    let frame = crate::io::read_parquet(log)?;
    let column = |name: &str| -> Result<Vec<Option<f64>>> {
        let series = frame
            .column(name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(|_| Error::table(log, format!("the training log has no numeric column `{name}`")))?;
        Ok(series.f64().map_err(Error::polars("reading the training log"))?.iter().collect())
    };
    let steps = column("step")?;
    let pairs = |values: Vec<Option<f64>>| -> Vec<(f64, f64)> {
        steps.iter().zip(values).filter_map(|(step, value)| Some(((*step)?, value?))).collect()
    };
    let loss = pairs(column("loss")?);
    let mut scores = vec![(
        "validation average".to_owned(),
        pairs(column("val_average")?).into_iter().map(|(step, value)| (step, 100.0 * value)).collect::<Vec<_>>(),
    )];
    let test_columns: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|name| name.to_string())
        .filter(|name| name.starts_with("test:") && name.ends_with(":acc_predict"))
        .collect();
    if !test_columns.is_empty() {
        let columns = test_columns.iter().map(|name| column(name)).collect::<Result<Vec<_>>>()?;
        let average: Vec<Option<f64>> = (0..steps.len())
            .map(|row| {
                let values: Option<Vec<f64>> = columns.iter().map(|c| c[row]).collect();
                values.map(|v| 100.0 * v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect();
        scores.push(("test average".to_owned(), pairs(average)));
    }
    crate::plot::training_curves("training", &loss, &scores, base)
}

/// `report.md`: the figures and the paper-style tables in one page.
fn report_markdown(config: &ReportConfig, tables: &str, figures: &Figures) -> String {
    let mut out = String::from("# routerdc report\n\n");
    let _ = writeln!(
        out,
        "Tables: `{}`{}{}.\n",
        config.tables.display(),
        config.split.map(|split| format!(", rows of the `{}` split", split.as_str())).unwrap_or_default(),
        config
            .checkpoint
            .as_ref()
            .map(|checkpoint| format!("; router `{}` from `{}`", ROUTER, checkpoint.display()))
            .unwrap_or_default()
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
    use crate::table::MetricKind;

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
