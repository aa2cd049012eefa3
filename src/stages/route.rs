//! `routerdc route`: the settings, and reading back the routes it wrote for a table (what
//! `report --checkpoint` scores). The routing itself runs on the libtorch side
//! (`src/torch/commands/route.rs`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::stages::embed::{DeviceChoice, Quantize};
use crate::table::{LoadedTable, Split};

/// Settings of `routerdc route`.
#[derive(Debug, Clone, clap::Args)]
pub struct RouteConfig {
    /// `best.safetensors` from `routerdc train` (its `best.json` beside it), or a router folder
    /// from `routerdc train --router knn` (its `router.json` inside).
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
    /// λ of the routing-time cost penalty: each query goes to the argmax of the router's
    /// score minus λ × the LLM's mean cost per query on the router's training rows (recorded in
    /// the router; tables with costs only). Default: the router's `calibration.json` (from
    /// `routerdc calibrate`) when it has one, else 0 (the router's own choice).
    #[arg(long)]
    pub cost_rate: Option<f64>,
    /// The `calibration.json` whose λ to charge, when it is not beside the router.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The encoder's Linear layers in int8 (CPU only; see `embed --quantize`).
    #[arg(long, value_enum, default_value_t = Quantize::None)]
    pub quantize: Quantize,
}

/// What a router charges per LLM at routing time: its recorded `costs` at rate `cost_rate`
/// (`None` at rate 0). A rate that is negative or not finite, or a rate on a router that
/// recorded no costs, is a usage error naming `router`.
pub fn charge(costs: Option<&[f64]>, cost_rate: f64, router: &std::path::Path) -> Result<Option<Vec<f64>>> {
    if !(cost_rate >= 0.0 && cost_rate.is_finite()) {
        return Err(Error::setting("cost_rate", format!("{cost_rate} is not a non-negative number")));
    }
    if cost_rate == 0.0 {
        return Ok(None);
    }
    match costs {
        Some(costs) => Ok(Some(costs.iter().map(|cost| cost_rate * cost).collect())),
        None => Err(Error::setting(
            "cost_rate",
            format!(
                "the router `{}` was trained on tables without costs: there is no cost to charge",
                router.display()
            ),
        )),
    }
}

/// What `route --tables` wrote for one table, in the table's query order: the routed LLM of
/// each query and the router's per-LLM scores (`prob:<model>` or `score:<model>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub choices: Vec<usize>,
    pub scores: Vec<Vec<f64>>,
}

/// Read back `route --tables`'s file for `table` (matched by query id).
pub fn read_routes(dir: &std::path::Path, table: &LoadedTable) -> Result<Routed> {
    use polars::prelude::DataType;
    let path = crate::io::named_file(dir, &table.table.dataset, ".parquet")?;
    let frame = crate::io::read_parquet(&path)?;
    let ids =
        frame.column("query_id").and_then(|c| c.str().cloned()).map_err(|_| Error::table(&path, "no `query_id`"))?;
    let index = frame
        .column("llm_index")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|_| Error::table(&path, "no `llm_index`"))?;
    let index = index.i64().map_err(Error::polars("reading `llm_index`"))?;
    let mut score_columns = Vec::with_capacity(table.table.n_models());
    for model in &table.table.models {
        let column = ["prob", "score"]
            .iter()
            .find_map(|prefix| frame.column(&format!("{prefix}:{model}")).ok())
            .and_then(|column| column.cast(&DataType::Float64).ok())
            .ok_or_else(|| Error::table(&path, format!("no numeric `prob:{model}` or `score:{model}`")))?;
        let values: Vec<Option<f64>> =
            column.f64().map_err(Error::polars("reading the routing scores"))?.iter().collect();
        score_columns.push(values);
    }
    let models = table.table.n_models() as i64;
    let mut by_id = std::collections::HashMap::with_capacity(ids.len());
    for (row, (id, choice)) in ids.iter().zip(index.iter()).enumerate() {
        let scores: Option<Vec<f64>> = score_columns.iter().map(|column| column[row]).collect();
        match (id, choice, scores) {
            (Some(id), Some(choice), Some(scores)) if (0..models).contains(&choice) => {
                by_id.insert(id, (choice as usize, scores))
            }
            _ => {
                return Err(Error::table(
                    &path,
                    format!("row {row}: a missing query id or score, or an `llm_index` outside 0..{models}"),
                ));
            }
        };
    }
    let mut routed = Routed { choices: Vec::with_capacity(table.table.n_queries()), scores: Vec::new() };
    for id in &table.table.query_ids {
        let (choice, scores) = by_id
            .remove(id.as_str())
            .ok_or_else(|| Error::table(&path, format!("no route for query `{id}` of the table")))?;
        routed.choices.push(choice);
        routed.scores.push(scores);
    }
    Ok(routed)
}

/// The per-LLM costs a router recorded at training (`costs` in a router folder's `router.json`
/// or a checkpoint's `best.json`); `None` when it was trained on tables without costs.
pub fn router_costs(router: &std::path::Path) -> Result<Option<Vec<f64>>> {
    let file = match crate::stages::train::folder::router_folder(router) {
        Some(dir) => dir.join(crate::stages::train::folder::ROUTER_FILE),
        None => router.with_extension("json"),
    };
    let value: serde_json::Value = serde_json::from_slice(&crate::io::read_bytes(&file)?).map_err(|error| {
        Error::bad_file(&file, "not a router's description", "it is written by `routerdc train`", Some(error.into()))
    })?;
    match value.get("costs") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(costs) => serde_json::from_value(costs.clone()).map(Some).map_err(|error| {
            Error::bad_file(
                &file,
                "`costs` is not a list of numbers",
                "it is written by `routerdc train`",
                Some(error.into()),
            )
        }),
    }
}
