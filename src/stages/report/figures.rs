//! The report's figures: the acc_predict bar chart, the training curves and the points of
//! each cost–quality figure.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::baselines::{ORACLE, ORACLE_STRICT, RANDOM, ReportRow, Scope, unique};
use super::cost_quality::CostQualityRow;
use super::verdict::Interval;
use crate::error::{Error, Result};

pub const ACC_FIGURE: &str = "acc_predict";
pub const TRAINING_FIGURE: &str = "training_curves";

/// Which optional figures a report has.
#[derive(Debug, Default)]
pub struct Figures {
    /// Datasets with a cost–quality figure.
    pub cost_quality: Vec<String>,
    pub training: bool,
}

/// The bar chart of acc_predict (%) per dataset and group average: the trained routers (with
/// the 95% bootstrap interval of each group average as an error bar), each LLM, the oracle and
/// the baselines (`task_best`; `best_single` on the group averages).
pub fn accuracy_figure(rows: &[ReportRow], intervals: &[Interval], base: &Path) -> Result<Vec<PathBuf>> {
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
    let routers: Vec<&str> =
        unique(rows.iter().filter(|r| r.router != RANDOM && r.router != ORACLE_STRICT).map(|r| r.router.as_str()));
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
            intervals: categories
                .iter()
                .map(|(scope, name)| {
                    intervals
                        .iter()
                        .find(|i| *scope == Scope::Group && i.group == *name && i.router == *router)
                        .map(|i| (100.0 * i.low, 100.0 * i.high))
                })
                .collect(),
        })
        .collect();
    crate::plot::grouped_bars("acc_predict per dataset", "acc_predict (%)", &labels, &series, base)
}

/// Training curves from `train_log.parquet`: the loss per step, and the validation and test
/// averages of acc_predict at each evaluation.
pub fn training_figure(log: &Path, base: &Path) -> Result<Vec<PathBuf>> {
    const HINT: &str = "`train_log.parquet` is written by `routerdc train` beside the checkpoint; train again, or remove it to report without training curves";
    let frame = crate::io::read_parquet_as(log, "training log", HINT)?;
    let column = |name: &str| -> Result<Vec<Option<f64>>> {
        let series = frame.column(name).and_then(|c| c.cast(&DataType::Float64)).map_err(|_| {
            Error::bad_file(log, format!("the training log has no numeric column `{name}`"), HINT, None)
        })?;
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

/// The points of one table's cost–quality figure (each LLM, `oracle`, `oracle_strict`, each
/// trained router of `routers` as routed), the hull through the LLM points, and each router's
/// and the oracle's λ-sweep curve (sorted by cost).
pub fn cost_quality_figure(
    rows: &[ReportRow],
    cost_rows: &[CostQualityRow],
    dataset: &str,
    routers: &[String],
) -> CostQualityFigure {
    use crate::plot::{LabelledPoint, PointKind};
    // LLM rows are the ones with a Pareto flag.
    let mut points: Vec<LabelledPoint> = cost_rows
        .iter()
        .filter(|r| r.dataset == dataset && r.pareto.is_some())
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
    let hull = super::cost_quality::non_decreasing_hull(&llm_points);
    let marked = [(ORACLE, PointKind::Oracle), (ORACLE_STRICT, PointKind::Oracle)]
        .into_iter()
        .chain(routers.iter().map(|name| (name.as_str(), PointKind::Router)));
    for (router, kind) in marked {
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
    // Each router's curve, and the oracle's (its ceiling).
    let curves = routers
        .iter()
        .map(String::as_str)
        .chain([ORACLE])
        .filter_map(|name| {
            let mut curve: Vec<(f64, f64)> = cost_rows
                .iter()
                .filter(|r| r.dataset == dataset && r.router == name && r.lambda.is_some())
                .filter_map(|r| Some((r.cost?, r.quality?)))
                .collect();
            curve.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            (!curve.is_empty()).then(|| (name.to_owned(), curve))
        })
        .collect();
    CostQualityFigure { points, hull, curves }
}

/// What one cost–quality figure draws.
pub struct CostQualityFigure {
    pub points: Vec<crate::plot::LabelledPoint>,
    pub hull: Vec<(f64, f64)>,
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
}
