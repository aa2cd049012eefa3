//! `routerdc route`: the settings, and reading back the routes it wrote for a table (what
//! `report --checkpoint` scores). The routing itself runs on the libtorch side
//! (`src/torch/commands/route.rs`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::stages::embed::DeviceChoice;
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
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// The routed LLM of each query of `table`, from `route --tables`'s file for it (by query id).
pub fn read_routes(dir: &std::path::Path, table: &LoadedTable) -> Result<Vec<usize>> {
    let path = crate::io::named_file(dir, &table.table.dataset, ".parquet")?;
    let frame = crate::io::read_parquet(&path)?;
    let ids =
        frame.column("query_id").and_then(|c| c.str().cloned()).map_err(|_| Error::table(&path, "no `query_id`"))?;
    let index = frame
        .column("llm_index")
        .and_then(|c| c.cast(&polars::prelude::DataType::Int64))
        .map_err(|_| Error::table(&path, "no `llm_index`"))?;
    let index = index.i64().map_err(Error::polars("reading `llm_index`"))?;
    let models = table.table.n_models() as i64;
    let mut by_id = std::collections::HashMap::with_capacity(ids.len());
    for (row, (id, choice)) in ids.iter().zip(index.iter()).enumerate() {
        match (id, choice) {
            (Some(id), Some(choice)) if (0..models).contains(&choice) => by_id.insert(id, choice as usize),
            _ => {
                return Err(Error::table(
                    &path,
                    format!("row {row}: a missing query id or an `llm_index` outside 0..{models}"),
                ));
            }
        };
    }
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
