//! The rows of `baselines.*`: each LLM alone, the oracle, the random router and a trained
//! router per table, and their unweighted means and the best single LLM per group of tables.

use std::fmt::Write as _;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::routing::{self, first_argmax};
use crate::table::{LoadedTable, ScoredTable, check_same_models};

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
/// `cost_rate` turns a cost-aware table's target into `quality − cost_rate × cost` (`docs/method.md`, "Costs"):
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
        let target = routing::targets(table, row, cost_rate);
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

/// A trained router's row for one table: acc and acc_predict (`docs/method.md`, "Evaluation"), mean cost of the
/// routed LLMs.
pub fn routed_row(table: &ScoredTable, choices: &[usize], cost_rate: f64) -> ReportRow {
    let (acc, acc_predict) = routing::evaluate(table, choices, cost_rate);
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
pub(super) fn resolve_groups(tables: &[LoadedTable], groups: &[Group]) -> Result<Vec<Group>> {
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
    type Metric = (&'static str, fn(&ReportRow) -> Option<f64>, bool);
    let metrics: [Metric; 3] = [
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

pub(super) fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}
