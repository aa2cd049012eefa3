//! Cost–quality analysis of tables with costs (RouterBench, Hu et al. 2024): each LLM as a point
//! (mean cost, mean quality), the Pareto front, the non-decreasing convex hull (the "zero router":
//! mixing LLMs at random reaches every point on the segments between them) and AIQ, the average
//! quality over a cost range, in two forms that differ:
//!
//! - **paper**: `AIQ = 1/(c_max − c_min) ∫_{c_min}^{c_max} R̃(c) dc`, with `R̃` the hull's
//!   piecewise-linear interpolation, constant at its first quality below the hull's first cost and
//!   at its last quality beyond its last cost;
//! - **code** (RouterBench's `evaluation/AIQ.py`, `calc_AIQ`): the hull is extended with the point
//!   `(c_max, last quality)` and integrated by the trapezoid rule *from its first cost* (not from
//!   `c_min`), then divided by `c_max` (not by `c_max − c_min`). Its hull comes from
//!   `get_non_descreasing_convex_hull_of`, ported in [`routerbench_hull`].
//!
//! `c_min`/`c_max` are the smallest and largest cost among the curves compared (here: the LLMs).

use std::fmt::Write as _;

use polars::prelude::*;

use super::baselines::{ReportRow, Scope};
use crate::error::{Error, Result};
use crate::table::LoadedTable;

/// A (cost, quality) point.
pub type Point = (f64, f64);

/// Indices of the points no other point dominates (no more cost and no less quality, one strictly).
pub fn pareto_front(points: &[Point]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (c, q) = points[i];
            !points.iter().any(|&(c2, q2)| c2 <= c && q2 >= q && (c2 < c || q2 > q))
        })
        .collect()
}

/// The non-decreasing upper convex hull: the upper hull of the points by cost (monotone chain),
/// cut after its highest quality. Returned sorted by cost.
pub fn non_decreasing_hull(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // At one cost only the best quality matters.
    sorted.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut hull: Vec<Point> = Vec::with_capacity(sorted.len());
    for point in sorted {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // Drop b when it lies on or below the segment a → point (keep the chain concave).
            let cross = (b.0 - a.0) * (point.1 - a.1) - (b.1 - a.1) * (point.0 - a.0);
            if cross >= 0.0 {
                hull.pop()
            } else {
                break;
            };
        }
        hull.push(point);
    }
    let best = hull.iter().enumerate().fold(0, |best, (i, p)| if p.1 > hull[best].1 { i } else { best });
    hull.truncate(best + 1);
    hull
}

/// AIQ in the RouterBench paper's form over `[c_min, c_max]`.
pub fn aiq_paper(hull: &[Point], c_min: f64, c_max: f64) -> f64 {
    let Some((&first, &last)) = hull.first().zip(hull.last()) else { return f64::NAN };
    if c_max <= c_min {
        return first.1;
    }
    // The curve: constant before the first point and after the last, linear in between.
    let mut curve = vec![(c_min.min(first.0), first.1)];
    curve.extend_from_slice(hull);
    curve.push((c_max.max(last.0), last.1));
    let area = integrate_clipped(&curve, c_min, c_max);
    area / (c_max - c_min)
}

/// AIQ as RouterBench's code computes it (module docs).
pub fn aiq_code(hull: &[Point], c_max: f64) -> f64 {
    let Some(&last) = hull.last() else { return f64::NAN };
    let mut curve = hull.to_vec();
    curve.push((c_max, last.1));
    let area: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum();
    area / c_max
}

/// The area under a piecewise-linear curve (sorted by x) between `from` and `to`.
fn integrate_clipped(curve: &[Point], from: f64, to: f64) -> f64 {
    let at = |x: f64, a: Point, b: Point| if b.0 == a.0 { b.1 } else { a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0) };
    curve
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let (x0, x1) = (a.0.max(from), b.0.min(to));
            if x1 <= x0 { 0.0 } else { (x1 - x0) * (at(x0, a, b) + at(x1, a, b)) / 2.0 }
        })
        .sum()
}

/// RouterBench's `get_non_descreasing_convex_hull_of`, ported as it is (including how it treats
/// points between two others), so that [`aiq_code`] matches its numbers.
pub fn routerbench_hull(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points.to_vec();
    // numpy's default argsort (quicksort) is not stable; for distinct costs the order is the same.
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut hull: Vec<Point> = Vec::new();
    let upsert = |hull: &mut Vec<Point>, x: f64, y: f64| {
        if let Some(existing) = hull.iter_mut().find(|p| p.0 == x) {
            if existing.1 < y {
                existing.1 = y;
            }
        } else {
            hull.push((x, y));
        }
    };
    for i in 0..sorted.len() {
        for j in i..sorted.len() {
            let ((x1, y1), (x2, y2)) = (sorted[i], sorted[j]);
            for &(x, y) in &sorted {
                if x1 < x && x < x2 {
                    let interpolated = y1 + (y2 - y1) * (x - x1) / (x2 - x1);
                    upsert(&mut hull, x, if y < interpolated { interpolated } else { y });
                }
            }
        }
    }
    let (first, last) = (sorted[0], sorted[sorted.len() - 1]);
    if !hull.iter().any(|p| p.0 == last.0) && hull.last().is_none_or(|p| last.1 >= p.1) {
        hull.push(last);
    }
    if !hull.iter().any(|p| p.0 == first.0) {
        hull.insert(0, first);
    }
    hull.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Remove every point whose quality is below its predecessor's (in the sorted list, as numpy's
    // `delete` of the indices found in one pass does).
    let keep: Vec<bool> = (0..hull.len()).map(|i| i == 0 || hull[i].1 >= hull[i - 1].1).collect();
    hull.into_iter().zip(keep).filter_map(|(p, k)| k.then_some(p)).collect()
}

/// One line of `cost_quality.*`: an LLM's (cost, quality) point with its place on the Pareto
/// front and the non-decreasing hull, or the zero router's AIQ over the LLMs' cost range.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQualityRow {
    pub dataset: String,
    pub router: String,
    /// A trained router's point: the routing-time cost penalty λ it was routed with.
    pub lambda: Option<f64>,
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
                lambda: None,
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
        out.push(aiq_row(&table.dataset, ZERO_ROUTER, &points, (c_min, c_max)));
    }
    out
}

pub use crate::routing::cost::{lambda_grid, lambda_grid_of};

/// One point of a router's sweep: routed with penalty `lambda` on its expected `costs`, its mean
/// cost and quality (acc_predict) on the table.
pub fn sweep_point(table: &crate::table::ScoredTable, scores: &[Vec<f64>], costs: &[f64], lambda: f64) -> Point {
    charged_point(table, scores, |_| costs, lambda)
}

/// The mean cost (the table's, per query) and quality of sending each query `row` to the
/// argmax of `scores[row] − lambda × charged(row)`.
fn charged_point<'a>(
    table: &'a crate::table::ScoredTable,
    scores: &[Vec<f64>],
    charged: impl Fn(usize) -> &'a [f64],
    lambda: f64,
) -> Point {
    let n = table.n_queries().max(1) as f64;
    let (mut cost, mut quality) = (0.0, 0.0);
    for (row, row_scores) in scores.iter().enumerate() {
        let choice = crate::routing::first_argmax(&crate::routing::penalised(row_scores, charged(row), lambda));
        cost += table.cost_row(row).map_or(0.0, |costs| costs[choice]);
        quality += table.kind.credit(table.score_row(row)[choice]);
    }
    (cost / n, quality / n)
}

/// A trained router's curve on one table with costs: a point per λ of [`lambda_grid`], each
/// flagged when on the router's own non-decreasing hull, then its AIQ in both forms over the
/// LLMs' cost range `[c_min, c_max]` (the zero router's).
pub fn router_curve(
    table: &crate::table::ScoredTable,
    router: &str,
    scores: &[Vec<f64>],
    costs: &[f64],
    range: (f64, f64),
) -> Vec<CostQualityRow> {
    let grid = lambda_grid(scores, costs);
    let points: Vec<Point> = grid.iter().map(|&lambda| sweep_point(table, scores, costs, lambda)).collect();
    curve_rows(&table.dataset, router, &grid, &points, range)
}

/// The oracle's curve on a table with costs: each query sent to the argmax of its LLMs' quality
/// less λ × their cost *on that query*, for λ from 0 (the oracle) to past where every query goes
/// to its cheapest LLM; points and AIQ as [`router_curve`]'s, named `oracle`. The ceiling a
/// router's curve is measured against.
pub fn oracle_curve(table: &crate::table::ScoredTable, range: (f64, f64)) -> Vec<CostQualityRow> {
    let n = table.n_queries();
    let quality: Vec<Vec<f64>> =
        (0..n).map(|row| table.score_row(row).iter().map(|&score| table.kind.credit(score)).collect()).collect();
    let costs: Vec<&[f64]> = (0..n).filter_map(|row| table.cost_row(row)).collect();
    if costs.len() != n {
        return Vec::new();
    }
    let grid = crate::routing::cost::lambda_grid_per_query(&quality, &costs);
    let points: Vec<Point> =
        grid.iter().map(|&lambda| charged_point(table, &quality, |row| costs[row], lambda)).collect();
    curve_rows(&table.dataset, super::ORACLE, &grid, &points, range)
}

/// The rows of one swept curve: a point per λ of `grid` (flagged when on the curve's own
/// non-decreasing hull), then its AIQ row.
fn curve_rows(dataset: &str, router: &str, grid: &[f64], points: &[Point], range: (f64, f64)) -> Vec<CostQualityRow> {
    let hull = non_decreasing_hull(points);
    let mut out: Vec<CostQualityRow> = grid
        .iter()
        .zip(points)
        .map(|(&lambda, &(cost, quality))| CostQualityRow {
            dataset: dataset.to_owned(),
            router: router.to_owned(),
            lambda: Some(lambda),
            cost: Some(cost),
            quality: Some(quality),
            pareto: None,
            hull: Some(hull.contains(&(cost, quality))),
            aiq_paper: None,
            aiq_code: None,
        })
        .collect();
    out.push(aiq_row(dataset, router, points, range));
    out
}

/// The AIQ row of a curve through `points` (the LLMs' for the zero router, a router's sweep),
/// in both forms over `[c_min, c_max]`.
fn aiq_row(dataset: &str, router: &str, points: &[Point], (c_min, c_max): (f64, f64)) -> CostQualityRow {
    CostQualityRow {
        dataset: dataset.to_owned(),
        router: router.to_owned(),
        lambda: None,
        cost: None,
        quality: None,
        pareto: None,
        hull: None,
        aiq_paper: Some(aiq_paper(&non_decreasing_hull(points), c_min, c_max)),
        aiq_code: Some(aiq_code(&routerbench_hull(points), c_max)),
    }
}

/// The quality of the piecewise-linear `hull` at cost `c` (`None` below its first cost; its
/// last quality beyond its last cost).
fn hull_at(hull: &[Point], c: f64) -> Option<f64> {
    let first = hull.first()?;
    if c < first.0 {
        return None;
    }
    for w in hull.windows(2) {
        let (a, b) = (w[0], w[1]);
        if c <= b.0 {
            return Some(if b.0 == a.0 { b.1 } else { a.1 + (b.1 - a.1) * (c - a.0) / (b.0 - a.0) });
        }
    }
    hull.last().map(|p| p.1)
}

/// The cost ranges within `[c_min, c_max]` where the router's hull lies above the zero router's
/// (by more than 1e-9), found on 1,001 evenly spaced costs.
pub fn above_zero_router(router: &[Point], zero: &[Point], (c_min, c_max): (f64, f64)) -> Vec<(f64, f64)> {
    let mut ranges: Vec<(f64, f64)> = Vec::new();
    let mut open: Option<f64> = None;
    let steps = 1000;
    let mut last = c_min;
    for i in 0..=steps {
        let c = c_min + (c_max - c_min) * i as f64 / steps as f64;
        let above = match (hull_at(router, c), hull_at(zero, c)) {
            (Some(r), Some(z)) => r > z + 1e-9,
            (Some(_), None) => true,
            _ => false,
        };
        match (above, open) {
            (true, None) => open = Some(c),
            (false, Some(start)) => {
                ranges.push((start, last));
                open = None;
            }
            _ => {}
        }
        last = c;
    }
    if let Some(start) = open {
        ranges.push((start, c_max));
    }
    ranges
}

/// Every trained router's curve (a [`router_curve`]) on every table with costs, for the routers
/// that recorded costs; `llm_rows` are the tables' LLM and zero-router rows (their cost range).
pub fn router_curves(
    tables: &[LoadedTable],
    llm_rows: &[CostQualityRow],
    routed: &[super::RoutedRouter],
) -> Vec<CostQualityRow> {
    let mut out = Vec::new();
    for (index, loaded) in tables.iter().enumerate().filter(|(_, loaded)| loaded.table.costs.is_some()) {
        let table = &loaded.table;
        let llm_costs: Vec<f64> = llm_rows
            .iter()
            .filter(|r| r.dataset == table.dataset && table.models.contains(&r.router))
            .filter_map(|r| r.cost)
            .collect();
        let c_min = llm_costs.iter().copied().fold(f64::INFINITY, f64::min);
        let c_max = llm_costs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for router in routed {
            if let Some(costs) = &router.costs {
                out.extend(router_curve(table, &router.name, &router.tables[index].scores, costs, (c_min, c_max)));
            }
        }
        if !routed.is_empty() {
            out.extend(oracle_curve(table, (c_min, c_max)));
        }
    }
    out
}

pub fn cost_quality_frame(rows: &[CostQualityRow]) -> Result<DataFrame> {
    let columns = vec![
        Column::new("dataset".into(), rows.iter().map(|r| r.dataset.as_str()).collect::<Vec<_>>()),
        Column::new("router".into(), rows.iter().map(|r| r.router.as_str()).collect::<Vec<_>>()),
        Column::new("lambda".into(), rows.iter().map(|r| r.lambda).collect::<Vec<_>>()),
        Column::new("cost".into(), rows.iter().map(|r| r.cost).collect::<Vec<_>>()),
        Column::new("quality".into(), rows.iter().map(|r| r.quality).collect::<Vec<_>>()),
        Column::new("pareto".into(), rows.iter().map(|r| r.pareto).collect::<Vec<_>>()),
        Column::new("hull".into(), rows.iter().map(|r| r.hull).collect::<Vec<_>>()),
        Column::new("aiq_paper".into(), rows.iter().map(|r| r.aiq_paper).collect::<Vec<_>>()),
        Column::new("aiq_code".into(), rows.iter().map(|r| r.aiq_code).collect::<Vec<_>>()),
    ];
    DataFrame::new_infer_height(columns).map_err(Error::polars("building the cost-quality frame"))
}

pub fn cost_quality_markdown(rows: &[CostQualityRow]) -> String {
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

/// The verdict on cost: for each router with a curve, per table, both AIQs beside the zero
/// router's and the mean-cost ranges where its hull lies above the zero router's. Empty when no
/// router has a curve.
pub fn curves_markdown(rows: &[CostQualityRow]) -> String {
    let mut out = String::new();
    let curves: Vec<&CostQualityRow> =
        rows.iter().filter(|r| r.router != ZERO_ROUTER && r.lambda.is_none() && r.aiq_paper.is_some()).collect();
    if !curves.is_empty() {
        out.push_str(
            "### Against the zero router (cost and quality)\n\n\
             Each router's curve: its points routed with the penalty λ from 0 (cost ignored) to the \
             cheapest LLM for every query, their non-decreasing hull, its AIQ over the LLMs' cost \
             range, and where it lies above the zero router's hull. The oracle's curve (each query \
             charged its own costs) is the ceiling.\n\n\
             | dataset | router | AIQ (paper) | zero router | AIQ (code) | zero router | above the zero router for mean costs in |\n\
             |---|---|---:|---:|---:|---:|---|\n",
        );
        for curve in curves {
            let Some(zero) = rows.iter().find(|r| r.dataset == curve.dataset && r.router == ZERO_ROUTER) else {
                continue;
            };
            // LLM rows are the ones with a Pareto flag; a router's points have a λ.
            let points = |keep: &dyn Fn(&CostQualityRow) -> bool| -> Vec<Point> {
                rows.iter()
                    .filter(|r| r.dataset == curve.dataset && keep(r))
                    .filter_map(|r| Some((r.cost?, r.quality?)))
                    .collect()
            };
            let llm_points = points(&|r| r.pareto.is_some());
            let router_points = points(&|r| r.router == curve.router && r.lambda.is_some());
            let c_min = llm_points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let c_max = llm_points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
            let ranges = above_zero_router(
                &non_decreasing_hull(&router_points),
                &non_decreasing_hull(&llm_points),
                (c_min, c_max),
            );
            let ranges = if ranges.is_empty() {
                "nowhere".to_owned()
            } else {
                ranges.iter().map(|(a, b)| format!("[{a:.3e}, {b:.3e}]")).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {ranges} |",
                curve.dataset,
                curve.router,
                curve.aiq_paper.unwrap_or(f64::NAN),
                zero.aiq_paper.unwrap_or(f64::NAN),
                curve.aiq_code.unwrap_or(f64::NAN),
                zero.aiq_code.unwrap_or(f64::NAN),
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three LLMs: cheap and weak, mid, expensive and strong; plus a dominated one.
    const POINTS: [Point; 4] = [(1.0, 0.4), (2.0, 0.7), (4.0, 0.8), (3.0, 0.5)];

    #[test]
    fn the_pareto_front_leaves_out_dominated_llms() {
        assert_eq!(pareto_front(&POINTS), [0, 1, 2]);
        assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.5)]), [0, 1], "equal points dominate neither");
    }

    #[test]
    fn the_hull_is_concave_and_non_decreasing() {
        assert_eq!(non_decreasing_hull(&POINTS), [(1.0, 0.4), (2.0, 0.7), (4.0, 0.8)]);
        // (2, 0.5) lies below the segment (1, 0.4)–(3, 0.8): not on the hull. A dearer, worse
        // point (5, 0.6) ends the non-decreasing hull at (3, 0.8).
        assert_eq!(non_decreasing_hull(&[(1.0, 0.4), (2.0, 0.5), (3.0, 0.8), (5.0, 0.6)]), [(1.0, 0.4), (3.0, 0.8)]);
    }

    #[test]
    fn aiq_in_both_forms_by_hand() {
        let hull = non_decreasing_hull(&POINTS);
        // Paper: over [1, 4]: trapezoids (1→2) 0.55 + (2→4) 1.5 = 2.05, / 3.
        assert!((aiq_paper(&hull, 1.0, 4.0) - 2.05 / 3.0).abs() < 1e-15);
        // Code: same area from the hull's first cost, / c_max = 4.
        assert!((aiq_code(&hull, 4.0) - 2.05 / 4.0).abs() < 1e-15);
        // Paper form, a range beyond the hull: flat at 0.4 on [0, 1] and at 0.8 on [4, 5].
        assert!((aiq_paper(&hull, 0.0, 5.0) - (0.4 + 2.05 + 0.8) / 5.0).abs() < 1e-15);
    }

    #[test]
    fn a_router_curve_follows_the_penalty_through_known_breakpoints() {
        use crate::table::{MetricKind, ScoredTable};
        // Two LLMs: `cheap` costs 1 per query, `dear` 3. The router prefers `dear` by 1.0, 0.4,
        // 0 (a tie: the first LLM) and 0.6 on the four queries, so its choice moves to `cheap`
        // at λ = 0.5, 0.2, never and 0.3 (the score gap over the cost gap of 2).
        let scores = vec![vec![0.0, 1.0], vec![0.2, 0.6], vec![0.5, 0.5], vec![0.3, 0.9]];
        let costs = [1.0, 3.0];
        let table = ScoredTable {
            dataset: "t".into(),
            kind: MetricKind::MultiAttempt,
            models: vec!["cheap".into(), "dear".into()],
            query_ids: (0..4).map(|i| i.to_string()).collect(),
            texts: vec!["q".into(); 4],
            splits: vec![None; 4],
            cluster_ids: vec![None; 4],
            // Quality of (cheap, dear) per query; each query's cost is the LLM's.
            scores: vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            costs: Some(vec![1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0]),
        };
        let grid = lambda_grid(&scores, &costs);
        assert_eq!(grid[0], 0.0);
        assert!((grid.last().unwrap() - 0.5 * 1.01).abs() < 1e-12, "{grid:?}");
        let points: Vec<Point> = grid.iter().map(|&l| sweep_point(&table, &scores, &costs, l)).collect();
        // λ = 0: dear, dear, cheap, dear → cost (3+3+1+3)/4, quality (1+1+1+1)/4.
        assert_eq!(points[0], (2.5, 1.0));
        // Past 0.2: q1 moves to cheap (quality 1 there too); past 0.3 q3 does (quality 0); past
        // 0.5 every query is on cheap.
        let at = |lambda: f64| sweep_point(&table, &scores, &costs, lambda);
        assert_eq!(at(0.25), (2.0, 1.0));
        assert_eq!(at(0.35), (1.5, 0.75));
        assert_eq!(at(0.6), (1.0, 0.5));
        for point in &points {
            assert!([(2.5, 1.0), (2.0, 1.0), (1.5, 0.75), (1.0, 0.5)].contains(point), "{point:?}");
        }
        // The curve's hull: (1, 0.5) → (1.5, 0.75) → (2, 1.0) (collinear, so the middle one
        // drops), and (2.5, 1.0) adds nothing; the AIQ over the LLMs' range [1, 3] is the area
        // 0.75 (from 1 to 2 under the line from 0.5 to 1.0) + 1.0 (flat at 1 from 2 to 3), over 2.
        let rows = router_curve(&table, "r", &scores, &costs, (1.0, 3.0));
        let aiq = rows.last().unwrap();
        assert_eq!((aiq.router.as_str(), aiq.lambda), ("r", None));
        assert!((aiq.aiq_paper.unwrap() - (0.75 + 1.0) / 2.0).abs() < 1e-12, "{aiq:?}");
        assert!(rows.iter().any(|r| r.cost == Some(2.0) && r.hull == Some(true)));
        // The oracle, charged each query's own cost: at λ = 0 the best LLM of each query, the
        // first on ties (dear, cheap, cheap, dear: cost 2, quality 1); past λ = 0.5 (q0 and q3's
        // quality gap 1 over the cost gap 2) every query on cheap (cost 1, quality 0.5).
        let oracle = oracle_curve(&table, (1.0, 3.0));
        let sweep: Vec<Point> = oracle.iter().filter_map(|r| Some((r.cost?, r.quality?))).collect();
        assert_eq!((sweep[0], *sweep.last().unwrap()), ((2.0, 1.0), (1.0, 0.5)));
        assert!((oracle.last().unwrap().aiq_paper.unwrap() - 0.875).abs() < 1e-12);
        // Above the zero router (the LLMs alone: (1, 0.5) and (3, 0.5)) wherever it reaches.
        let ranges = above_zero_router(&non_decreasing_hull(&points), &[(1.0, 0.5)], (1.0, 3.0));
        assert_eq!(ranges.len(), 1);
        assert!(ranges[0].0 > 1.0 && ranges[0].0 < 1.01 && ranges[0].1 == 3.0, "{ranges:?}");
    }

    #[test]
    fn routerbench_hull_matches_its_code_on_these_points() {
        // Worked through `get_non_descreasing_convex_hull_of` by hand: (2, 0.7) is kept (above the
        // 1→4 line at 0.533), (3, 0.5) is lifted to the 2→4 line at 0.75, then the pass that
        // drops points below their predecessor keeps all four.
        let hull = routerbench_hull(&POINTS);
        assert_eq!(hull, [(1.0, 0.4), (2.0, 0.7), (3.0, 0.75), (4.0, 0.8)]);
    }
}
