//! `routerdc calibrate`: the routing-time cost penalty λ that meets a target on calibration rows,
//! kept beside the router (`calibration.json`) for `route` and `report` to use.
//!
//! The router is routed on the calibration rows at every λ of its sweep (2,000 quantiles of the
//! λ where a query's choice changes, `routing::cost::lambda_grid_of`, pooled over the
//! tables), giving per λ the mean cost per
//! query, the mean quality (acc_predict) and the share of calls to the LLM of largest expected
//! cost. The target picks one λ:
//! - `--budget C`: the best quality among the λ whose mean cost is at most C (the smallest such λ
//!   on ties);
//! - `--quality Q`: the least mean cost among the λ whose quality is at least Q;
//! - `--strong-share S`: the best quality among the λ that send at most a share S of the
//!   queries to the dearest LLM (RouteLLM's operating point).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::routing::cost::lambda_grid_of;
use crate::routing::{first_argmax, penalised};
use crate::stages::route::Routed;
use crate::table::{LoadedTable, Split};

/// Settings of `routerdc calibrate`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["budget", "quality", "strong_share"])))]
pub struct CalibrateConfig {
    /// The router: `best.safetensors` (with its `best.json`) or a router folder, trained on
    /// tables with costs.
    #[arg(long, value_name = "FILE|DIR")]
    pub router: PathBuf,
    /// The calibration tables (rows held out from training and test, or `--split` of them).
    #[arg(long, value_name = "DIR")]
    pub tables: PathBuf,
    /// Calibrate on this split's rows only.
    #[arg(long, value_enum, value_name = "SPLIT")]
    pub split: Option<Split>,
    /// Mean cost per query (the tables' cost unit) not to exceed.
    #[arg(long)]
    pub budget: Option<f64>,
    /// Mean quality (acc_predict, a fraction) to keep, at the least cost.
    #[arg(long)]
    pub quality: Option<f64>,
    /// Largest share of queries sent to the LLM of largest expected cost.
    #[arg(long)]
    pub strong_share: Option<f64>,
    /// Folder for `calibration.json`. Default: beside the router (its folder, or beside
    /// `best.safetensors`), where `route` and `report` find it without being told.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

/// What a calibration aims at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Budget(f64),
    Quality(f64),
    StrongShare(f64),
}

/// One λ of the sweep on the calibration rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Operating {
    pub lambda: f64,
    pub cost: f64,
    pub quality: f64,
    pub strong_share: f64,
}

/// `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub routerdc_version: String,
    /// The λ `route` and `report` charge by default.
    pub lambda: f64,
    pub target: Target,
    /// The chosen λ's mean cost, quality and strong share on the calibration rows.
    pub reached: Operating,
    /// The calibration rows: how many, and the BLAKE3 of each table file read.
    pub rows: usize,
    pub tables: Vec<(String, String)>,
    /// Seconds since the Unix epoch when it was written.
    pub written_at: u64,
}

pub const CALIBRATION_FILE: &str = "calibration.json";

/// Where a router's calibration lives: in its folder, or beside its checkpoint file.
pub fn calibration_path(router: &Path) -> PathBuf {
    match crate::stages::train::folder::router_folder(router) {
        Some(dir) => dir.join(CALIBRATION_FILE),
        None => router.parent().unwrap_or(Path::new(".")).join(CALIBRATION_FILE),
    }
}

/// The router's calibration, when there is one: `file` when given (it must exist), else the
/// one beside the router.
pub fn read_calibration(router: &Path, file: Option<&Path>) -> Result<Option<Calibration>> {
    let path = match file {
        Some(file) => file.to_path_buf(),
        None => calibration_path(router),
    };
    if file.is_none() && !path.is_file() {
        return Ok(None);
    }
    serde_json::from_slice(&crate::io::read_bytes(&path)?).map(Some).map_err(|error| {
        Error::bad_file(&path, "not a calibration", "it is written by `routerdc calibrate`", Some(error.into()))
    })
}

/// The routing-time λ for `router`: `given`, else its calibration's (`calibration`, or the file
/// beside it), else 0.
pub fn cost_rate_for(router: &Path, given: Option<f64>, calibration: Option<&Path>) -> Result<f64> {
    match given {
        Some(rate) => Ok(rate),
        None => Ok(read_calibration(router, calibration)?.map_or(0.0, |calibration| calibration.lambda)),
    }
}

/// The target the settings name, checked: a budget and a quality are positive numbers, a share is
/// in [0, 1].
pub fn target(config: &CalibrateConfig) -> Result<Target> {
    let check = |key: &str, value: f64, ok: bool| {
        if ok && value.is_finite() { Ok(()) } else { Err(Error::setting(key, format!("{value} is out of range"))) }
    };
    match (config.budget, config.quality, config.strong_share) {
        (Some(budget), None, None) => check("budget", budget, budget >= 0.0).map(|()| Target::Budget(budget)),
        (None, Some(quality), None) => {
            check("quality", quality, (0.0..=1.0).contains(&quality)).map(|()| Target::Quality(quality))
        }
        (None, None, Some(share)) => {
            check("strong_share", share, (0.0..=1.0).contains(&share)).map(|()| Target::StrongShare(share))
        }
        _ => Err(Error::setting("budget", "give one of --budget, --quality, --strong-share")),
    }
}

/// Every λ of the router's sweep on the calibration rows (pooled over the tables).
pub fn sweep(tables: &[LoadedTable], routed: &[Routed], costs: &[f64]) -> Vec<Operating> {
    let scores: Vec<Vec<f64>> = routed.iter().flat_map(|r| r.scores.iter().cloned()).collect();
    let dearest = (0..costs.len()).fold(0, |best, t| if costs[t] > costs[best] { t } else { best });
    let n = scores.len().max(1) as f64;
    // 2,000 quantiles of the λ where a choice changes: fine enough that a budget lands within
    // a step of the curve.
    lambda_grid_of(&scores, costs, 2000)
        .into_iter()
        .map(|lambda| {
            let (mut cost, mut quality, mut strong) = (0.0, 0.0, 0.0);
            for (loaded, routed) in tables.iter().zip(routed) {
                let table = &loaded.table;
                for (row, row_scores) in routed.scores.iter().enumerate() {
                    let choice = first_argmax(&penalised(row_scores, costs, lambda));
                    cost += table.cost_row(row).map_or(0.0, |costs| costs[choice]);
                    quality += table.kind.credit(table.score_row(row)[choice]);
                    strong += f64::from(u8::from(choice == dearest));
                }
            }
            Operating { lambda, cost: cost / n, quality: quality / n, strong_share: strong / n }
        })
        .collect()
}

/// The λ of `sweep` that meets `target` (module docs); a target no λ meets is a usage error that
/// names the flag and what the router reaches.
pub fn choose(sweep: &[Operating], target: Target, oracle_quality: f64) -> Result<Operating> {
    let chosen = match target {
        Target::Budget(budget) => best_quality(sweep.iter().filter(|o| o.cost <= budget)).ok_or_else(|| {
            let least = sweep.iter().map(|o| o.cost).fold(f64::INFINITY, f64::min);
            Error::setting("budget", format!("{budget} is below the least mean cost the router reaches ({least})"))
        })?,
        Target::Quality(quality) => {
            if quality > oracle_quality {
                return Err(Error::setting(
                    "quality",
                    format!("{quality} is above the oracle's quality on these rows ({oracle_quality})"),
                ));
            }
            sweep
                .iter()
                .filter(|o| o.quality >= quality)
                .fold(None::<&Operating>, |best, o| match best {
                    Some(b) if b.cost <= o.cost => Some(b),
                    _ => Some(o),
                })
                .ok_or_else(|| {
                    let most = sweep.iter().map(|o| o.quality).fold(f64::NEG_INFINITY, f64::max);
                    Error::setting(
                        "quality",
                        format!("{quality} is above the best quality the router reaches ({most})"),
                    )
                })?
        }
        Target::StrongShare(share) => {
            best_quality(sweep.iter().filter(|o| o.strong_share <= share)).ok_or_else(|| {
                Error::setting("strong_share", format!("no λ sends at most {share} of the queries to the dearest LLM"))
            })?
        }
    };
    Ok(*chosen)
}

/// The operating point of best quality, the first (smallest λ) on ties.
fn best_quality<'a>(candidates: impl Iterator<Item = &'a Operating>) -> Option<&'a Operating> {
    candidates.fold(None, |best, o| match best {
        Some(b) if b.quality >= o.quality => Some(b),
        _ => Some(o),
    })
}

/// The oracle's mean quality on the tables' rows (the best score of each query).
pub fn oracle_quality(tables: &[LoadedTable]) -> f64 {
    let (mut total, mut rows) = (0.0, 0usize);
    for loaded in tables {
        let table = &loaded.table;
        for row in 0..table.n_queries() {
            total += table.score_row(row).iter().map(|&s| table.kind.credit(s)).fold(f64::NEG_INFINITY, f64::max);
            rows += 1;
        }
    }
    total / rows.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lambda: f64, cost: f64, quality: f64, strong_share: f64) -> Operating {
        Operating { lambda, cost, quality, strong_share }
    }

    #[test]
    fn each_target_picks_its_operating_point() {
        // Cost and quality fall as λ grows; a dip in quality at λ = 2.
        let sweep = [at(0.0, 3.0, 0.9, 1.0), at(1.0, 2.0, 0.8, 0.5), at(2.0, 1.5, 0.6, 0.25), at(3.0, 1.0, 0.7, 0.0)];
        assert_eq!(choose(&sweep, Target::Budget(2.5), 1.0).unwrap().lambda, 1.0);
        assert_eq!(choose(&sweep, Target::Budget(1.6), 1.0).unwrap().lambda, 3.0, "best quality within budget");
        assert_eq!(choose(&sweep, Target::Quality(0.75), 1.0).unwrap().lambda, 1.0, "least cost keeping 0.75");
        assert_eq!(choose(&sweep, Target::StrongShare(0.3), 1.0).unwrap().lambda, 3.0);
        let error = choose(&sweep, Target::Budget(0.5), 1.0).unwrap_err().to_string();
        assert!(error.contains("budget") && error.contains("least mean cost"), "{error}");
        let error = choose(&sweep, Target::Quality(0.95), 0.9).unwrap_err().to_string();
        assert!(error.contains("quality") && error.contains("oracle"), "{error}");
        let error = choose(&sweep, Target::Quality(0.95), 1.0).unwrap_err().to_string();
        assert!(error.contains("best quality the router reaches"), "{error}");
    }
}
