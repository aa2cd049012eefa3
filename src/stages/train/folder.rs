//! A router folder (`train --router knn|cluster|mlp --out DIR`): `router.json` ([`RouterFile`]),
//! which any consumer reads first to learn the kind, and the kind's file: `knn.parquet` (one row
//! per training query) or `centroids.parquet` (one row per k-means centroid, with its cluster's
//! mean target), each `embedding`, `target:<model>`...; or `mlp.safetensors`, the MLP's layers
//! (`layers.<i>.weight`, `layers.<i>.bias`). kNN routing is `routing::knn` (a cluster router is
//! 1-nearest-centroid); the MLP is libtorch code (`torch/model/mlp.rs`).

use std::path::Path;

use ndarray::{Array2, Axis};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::routing::knn::Knn;

/// `router.json`: what a router folder holds, for any consumer to load it without knowing the
/// kind in advance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouterFile {
    /// `knn`, `cluster` (a 1-nearest-centroid router) or `mlp`.
    pub kind: String,
    pub routerdc_version: String,
    /// The LLMs, in target order.
    pub models: Vec<String>,
    /// The encoder as given (`--encoder`), `null` for the bundled default.
    pub encoder: Option<String>,
    /// The embedding cache key of the encoder's files and settings (BLAKE3 of config.json,
    /// tokenizer.json and the weights, with pooling, length and truncation): a router is refused
    /// when the encoder found at load time has another.
    pub encoder_key: String,
    pub pooling: crate::hf::Pooling,
    pub max_length: usize,
    pub truncation: crate::hf::tokenize::TruncationSide,
    /// kNN: the k kept; cluster: 1; mlp: 0 (unused).
    pub k: usize,
    /// Validation average of acc_predict: kNN, leave-one-out for each k of the grid; cluster,
    /// on the training rows for the number of clusters; mlp, on the held-out rows per epoch.
    pub validation: Vec<(usize, f64)>,
    pub cost_rate: f64,
    /// mlp: the hidden layer's width (0: linear) and the loss its outputs were fitted with
    /// (`bce`: routing scores are sigmoid(output)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<super::MlpLoss>,
    /// Each LLM's mean cost per query on the training rows (tables with costs): what
    /// `route --cost-rate` charges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<Vec<f64>>,
}

pub const ROUTER_FILE: &str = "router.json";
/// The stored vectors and targets of a router folder: training queries (`knn`) or centroids
/// (`cluster`).
pub const KNN_FILE: &str = "knn.parquet";
pub const CENTROIDS_FILE: &str = "centroids.parquet";
pub const MLP_FILE: &str = "mlp.safetensors";

/// The data file of a router kind (its vectors or weights), or `None` for a kind this build
/// does not know.
pub fn data_file(kind: &str) -> Option<&'static str> {
    match kind {
        "knn" => Some(KNN_FILE),
        "cluster" => Some(CENTROIDS_FILE),
        "mlp" => Some(MLP_FILE),
        _ => None,
    }
}

/// Whether `path` is a router folder (or its `router.json`) rather than a RouterDC checkpoint.
pub fn router_folder(path: &Path) -> Option<&Path> {
    if path.is_dir() && path.join(ROUTER_FILE).is_file() {
        Some(path)
    } else if path.file_name().is_some_and(|name| name == ROUTER_FILE) {
        path.parent()
    } else {
        None
    }
}

pub fn read_router_file(dir: &Path) -> Result<RouterFile> {
    let path = dir.join(ROUTER_FILE);
    serde_json::from_slice(&crate::io::read_bytes(&path)?).map_err(|error| {
        Error::bad_file(
            &path,
            "not a router's description",
            "a router folder is written by `routerdc train --router knn|cluster|mlp`",
            Some(error.into()),
        )
    })
}

/// Write `knn` as `knn.parquet` rows: `embedding`, then `target:<model>` per LLM.
pub fn write_knn(knn: &Knn, models: &[String], path: &Path) -> Result<()> {
    let mut columns = vec![Column::new(
        "embedding".into(),
        knn.vectors.axis_iter(Axis(0)).map(|row| Series::new("".into(), row.to_vec())).collect::<Vec<_>>(),
    )];
    for (index, model) in models.iter().enumerate() {
        columns.push(Column::new(format!("target:{model}").into(), knn.targets.column(index).to_vec()));
    }
    let mut frame = DataFrame::new_infer_height(columns).map_err(Error::polars("building the kNN router"))?;
    crate::io::write_parquet(&mut frame, path)
}

/// Read what [`write_knn`] wrote.
pub fn read_knn(models: &[String], path: &Path) -> Result<Knn> {
    let hint = "a router folder is written by `routerdc train --router knn|cluster|mlp`";
    let frame = crate::io::read_parquet_as(path, "kNN router", hint)?;
    let bad = |message: String| Error::bad_file(path, message, hint, None);
    let list = frame
        .column("embedding")
        .and_then(|c| c.list().cloned())
        .map_err(|_| bad("no `embedding` list column".into()))?;
    let mut rows = Vec::with_capacity(frame.height());
    for row in list.amortized_iter() {
        let row = row.ok_or_else(|| bad("a null embedding".into()))?;
        let values = row.as_ref().cast(&DataType::Float32).map_err(|_| bad("a non-numeric embedding".into()))?;
        let values: Vec<f32> =
            values.f32().map_err(|_| bad("a non-numeric embedding".into()))?.into_no_null_iter().collect();
        rows.push(values);
    }
    let dim = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|row| row.len() != dim) {
        return Err(bad("embeddings of different sizes".into()));
    }
    let vectors = Array2::from_shape_vec((rows.len(), dim), rows.concat()).map_err(|error| bad(error.to_string()))?;
    let mut targets = Array2::<f64>::zeros((vectors.nrows(), models.len()));
    for (index, model) in models.iter().enumerate() {
        let name = format!("target:{model}");
        let column = frame
            .column(&name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(|_| bad(format!("no numeric `{name}`")))?;
        let values = column.f64().map_err(|_| bad(format!("no numeric `{name}`")))?;
        for (row, value) in values.iter().enumerate() {
            targets[[row, index]] = value
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("`{name}` is null or not finite in row {row}")))?;
        }
    }
    Ok(Knn { vectors, targets })
}
