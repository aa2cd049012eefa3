//! `routerdc train --router knn|cluster|mlp`: embed the training (and test) queries with the
//! frozen encoder (mean pooling, through `embed`'s cache and workers) and keep their vectors and
//! targets; kNN then chooses k from `--k` by leave-one-out on the training rows, the cluster
//! router fits k-means here, the MLP router is fitted in [`super::mlp`]. Each writes a router
//! folder (`router.json` and its data file) that `route` and `report --checkpoint DIR` load.

use std::time::Instant;

use ndarray::Array2;

use routerdc::error::{Error, Result};
use routerdc::hf::{self, Pooling};
use routerdc::routing::{self, knn::Knn};
use routerdc::stages::embed::{self as stage_embed, EncoderOptions};
use routerdc::stages::train::folder::{ROUTER_FILE, RouterFile, write_knn};
use routerdc::stages::train::{self, TrainConfig};
use routerdc::table::LoadedTable;

use crate::torch::commands::embed::TorchEmbedder;
use crate::torch::commands::embed::{device, embed_tables};

/// The encoder settings of a kNN router: mean pooling (the sentence embedding MiniLM-style
/// encoders are trained for), the run's length and truncation, the cache and all cores.
pub fn encoder_options(
    encoder: Option<String>,
    max_length: usize,
    truncation: hf::tokenize::TruncationSide,
    batch_size: usize,
    device: stage_embed::DeviceChoice,
) -> EncoderOptions {
    crate::torch::commands::embed::router_options(encoder, Pooling::Mean, max_length, truncation, batch_size, device)
}

/// The cache key of the encoder `options` name, as found now.
pub fn encoder_key(options: &EncoderOptions) -> Result<String> {
    let files = hf::resolve(options.encoder.as_deref())?;
    let embedder = TorchEmbedder::new(files, options, device(options.device)?)?;
    stage_embed::encoder_key(&embedder.files, options, embedder.tokenizer.max_length)
}

/// `[rows × dim]` of a table's flat vectors.
fn matrix(flat: Vec<f32>, dim: usize) -> Result<Array2<f32>> {
    let rows = flat.len() / dim.max(1);
    Array2::from_shape_vec((rows, dim), flat).map_err(|source| Error::failed("Failed to shape the embeddings", source))
}

/// Per table, acc_predict of routing each query to the argmax of its `scores` rows.
pub(super) fn evaluate(tables: &[LoadedTable], scores: &Array2<f64>, cost_rate: f64) -> Vec<(String, f64, f64)> {
    let mut at = 0;
    tables
        .iter()
        .map(|loaded| {
            let n = loaded.table.n_queries();
            let choices: Vec<usize> =
                (at..at + n).map(|row| routing::first_argmax(&scores.row(row).to_vec())).collect();
            at += n;
            let (acc, acc_predict) = routing::evaluate(&loaded.table, &choices, cost_rate);
            (loaded.table.dataset.clone(), acc, acc_predict)
        })
        .collect()
}

pub fn run(config: &TrainConfig, quiet: bool) -> Result<()> {
    let started = Instant::now();
    let (train_tables, test_tables) = train::load_tables(config)?;
    let all: Vec<LoadedTable> = train_tables.iter().chain(&test_tables).cloned().collect();
    routerdc::table::check_same_models(&all)?;
    for loaded in &all {
        stage_embed::check_texts(loaded)?;
    }
    let grid: Vec<usize> = config.k.iter().copied().filter(|&k| k > 0).collect();
    if grid.is_empty() {
        return Err(Error::setting("k", "give at least one k above 0 (`--k 5,10,25`)"));
    }
    let models = train_tables[0].table.models.clone();
    let options =
        encoder_options(config.encoder.clone(), config.max_length, config.truncation, config.batch_size, config.device);
    let (vectors, dim, _, _) = embed_tables(&all, &options, quiet)?;
    let train_rows: usize = train_tables.iter().map(|loaded| loaded.table.n_queries()).sum();
    let flat: Vec<f32> = vectors.concat();
    let all_vectors = matrix(flat, dim)?;
    let train_vectors = all_vectors.slice(ndarray::s![..train_rows, ..]).to_owned();
    let test_vectors = all_vectors.slice(ndarray::s![train_rows.., ..]).to_owned();
    let mut targets = Array2::<f64>::zeros((train_rows, models.len()));
    let mut row = 0;
    for loaded in &train_tables {
        for query in 0..loaded.table.n_queries() {
            let target = routing::targets(&loaded.table, query, config.cost_rate);
            targets.row_mut(row).assign(&ndarray::Array1::from(target));
            row += 1;
        }
    }
    let knn = Knn::new(train_vectors, targets);
    if config.router == train::RouterKind::Mlp {
        return super::mlp::mlp_router(
            config,
            &options,
            &train_tables,
            &test_tables,
            &knn,
            test_vectors,
            started,
            quiet,
        );
    }
    if config.router == train::RouterKind::Cluster {
        let per_table: Vec<Array2<f32>> =
            vectors.into_iter().take(train_tables.len()).map(|flat| matrix(flat, dim)).collect::<Result<_>>()?;
        return cluster_router(
            config,
            &options,
            &train_tables,
            &test_tables,
            &per_table,
            &knn,
            test_vectors,
            started,
            quiet,
        );
    }

    // Leave-one-out on the training rows: the neighbours once for the largest k, every k from them.
    let largest = grid.iter().copied().max().unwrap_or(1);
    let neighbours = knn.neighbours(knn.vectors.view(), largest, true);
    let mut validation = Vec::with_capacity(grid.len());
    for &k in &grid {
        let per_table = evaluate(&train_tables, &knn.scores_of(&neighbours, k), config.cost_rate);
        validation.push((k, train::log::average(&per_table)));
    }
    let (k, best) = validation
        .iter()
        .copied()
        .fold((grid[0], f64::NEG_INFINITY), |best, (k, v)| if v > best.1 { (k, v) } else { best });
    let test = if test_tables.is_empty() {
        Vec::new()
    } else {
        evaluate(&test_tables, &knn.scores(test_vectors.view(), k, false), config.cost_rate)
    };

    let file = RouterFile {
        kind: "knn".into(),
        routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
        models: models.clone(),
        encoder: config.encoder.clone(),
        encoder_key: encoder_key(&options)?,
        pooling: options.pooling,
        max_length: config.max_length,
        truncation: config.truncation,
        k,
        validation: validation.clone(),
        cost_rate: config.cost_rate,
        hidden: None,
        loss: None,
        costs: routing::expected_costs(&train_tables),
    };
    write_folder(&config.out, &file, |path| write_knn(&knn, &file.models, path))?;
    if !quiet {
        let tried: Vec<String> = validation.iter().map(|(k, v)| format!("k={k}: {:.2}", 100.0 * v)).collect();
        eprintln!("kNN over {train_rows} training queries; leave-one-out validation acc_predict {}", tried.join(", "));
        let test_line = test_summary(&test);
        eprintln!(
            "kept k = {k} (validation {:.2}{test_line}) in {:.1} s; wrote {}",
            100.0 * best,
            started.elapsed().as_secs_f64(),
            config.out.join(ROUTER_FILE).display()
        );
    }
    Ok(())
}

/// `router.json` and the data file of `file.kind` (written by `write_data` to the path it is
/// given), into `out` together.
pub(super) fn write_folder(
    out: &std::path::Path,
    file: &RouterFile,
    write_data: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<()> {
    let data = routerdc::stages::train::folder::data_file(&file.kind)
        .ok_or_else(|| Error::setting("router", format!("no folder layout for `{}`", file.kind)))?;
    let outputs = routerdc::io::Outputs::new(out)?;
    let json = serde_json::to_string_pretty(file).map_err(Error::serialize(ROUTER_FILE))?;
    write_data(&outputs.dir().join(data))?;
    routerdc::io::write_text(&json, &outputs.dir().join(ROUTER_FILE))?;
    outputs.commit()?;
    Ok(())
}

/// `--router cluster`: k-means (linfa, as `routerdc cluster`) over the training vectors; each
/// training query is then assigned to its nearest centroid by cosine (the rule routing uses),
/// and each centroid keeps its queries' mean target (the mean over all training queries for a
/// centroid that gets none).
#[allow(clippy::too_many_arguments)]
fn cluster_router(
    config: &TrainConfig,
    options: &EncoderOptions,
    train_tables: &[LoadedTable],
    test_tables: &[LoadedTable],
    per_table: &[Array2<f32>],
    training: &Knn,
    test_vectors: Array2<f32>,
    started: Instant,
    quiet: bool,
) -> Result<()> {
    use routerdc::stages::cluster::{self, ClusterConfig, FitOn, Reduce};
    if config.clusters == 0 {
        return Err(Error::setting("clusters", "must be at least 1"));
    }
    let settings = ClusterConfig {
        tables: config.train.clone(),
        out: config.out.clone(),
        embeddings: None,
        k: config.clusters,
        seed: config.seed,
        max_iterations: 1000,
        tolerance: 1e-4,
        restarts: 3,
        max_per_table: 0,
        fit_on: FitOn::All,
        reduce: Reduce::None,
        dims: 5,
        encoder: options.clone(),
    };
    let clustering = cluster::cluster(&settings, train_tables, per_table)?;
    let models = train_tables[0].table.models.clone();
    let centres = Knn::new(clustering.centroids.clone(), Array2::zeros((config.clusters, models.len())));
    let nearest = centres.neighbours(training.vectors.view(), 1, false);
    let overall = training.targets.mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(models.len()));
    let mut targets = Array2::<f64>::zeros((config.clusters, models.len()));
    let mut counts = vec![0usize; config.clusters];
    for (row, centre) in nearest.iter().enumerate() {
        if let Some(&centre) = centre.first() {
            let mut sum = targets.row_mut(centre);
            sum += &training.targets.row(row);
            counts[centre] += 1;
        }
    }
    for (centre, &count) in counts.iter().enumerate() {
        let mut row = targets.row_mut(centre);
        if count == 0 {
            row.assign(&overall);
        } else {
            row /= count as f64;
        }
    }
    let router = Knn::new(clustering.centroids, targets);
    let validation = train::log::average(&evaluate(
        train_tables,
        &router.scores(training.vectors.view(), 1, false),
        config.cost_rate,
    ));
    let test = if test_tables.is_empty() {
        Vec::new()
    } else {
        evaluate(test_tables, &router.scores(test_vectors.view(), 1, false), config.cost_rate)
    };
    let file = RouterFile {
        kind: "cluster".into(),
        routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
        models,
        encoder: config.encoder.clone(),
        encoder_key: encoder_key(options)?,
        pooling: options.pooling,
        max_length: config.max_length,
        truncation: config.truncation,
        k: 1,
        validation: vec![(config.clusters, validation)],
        cost_rate: config.cost_rate,
        hidden: None,
        loss: None,
        costs: routing::expected_costs(train_tables),
    };
    write_folder(&config.out, &file, |path| write_knn(&router, &file.models, path))?;
    if !quiet {
        let test_line = test_summary(&test);
        eprintln!(
            "cluster router: {} clusters over {} training queries (sizes {counts:?}); training acc_predict {:.2}{test_line}; {:.1} s; wrote {}",
            config.clusters,
            training.vectors.nrows(),
            100.0 * validation,
            started.elapsed().as_secs_f64(),
            config.out.join(ROUTER_FILE).display()
        );
    }
    Ok(())
}

/// `; test acc_predict NN.NN` when there were test tables, for the closing line.
pub(super) fn test_summary(test: &[(String, f64, f64)]) -> String {
    if test.is_empty() { String::new() } else { format!("; test acc_predict {:.2}", 100.0 * train::log::average(test)) }
}
