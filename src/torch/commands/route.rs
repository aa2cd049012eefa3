//! `routerdc route`: a trained router's choice for each query: tables to
//! `<out>/<table>.parquet`, or one JSON object per input line on stdout.

use polars::prelude::*;
use tch::Tensor;

use routerdc::error::{Error, Result};
use routerdc::routing::{charged_argmax, select_split};
use routerdc::stages::embed as stage_embed;
use routerdc::stages::route::RouteConfig;

use super::embed;
use super::train::checkpoint::load_router;

/// `routerdc route`: tables to `<out>/<table>.parquet`, or one JSON object per input line.
pub fn run_route(config: &RouteConfig, quiet: bool) -> Result<()> {
    if let Some(dir) = routerdc::stages::train::folder::router_folder(&config.checkpoint) {
        return route_folder(dir, config, quiet);
    }
    let device = embed::device(config.device)?;
    let mut loaded = load_router(&config.checkpoint, device)?;
    if !loaded.sidecar.settings.freeze_encoder || config.tables.is_none() {
        loaded.quantize(config.quantize)?;
    }
    let models = &loaded.sidecar.models;
    let rate = routerdc::stages::calibrate::cost_rate_for(
        &config.checkpoint,
        config.cost_rate,
        config.calibration.as_deref(),
    )?;
    let charge = routerdc::stages::route::charge(loaded.sidecar.costs.as_deref(), rate, &config.checkpoint)?;
    if let Some(dir) = &config.tables {
        let out = config.out.as_ref().ok_or_else(|| Error::setting("out", "`--tables` needs `--out DIR`"))?;
        let tables = tables_to_route(dir, config, models, &config.checkpoint)?;
        // A router trained with a frozen encoder has the encoder's own weights: its h are
        // `embed`'s vectors, from the embedding cache and parallel workers.
        let frozen = if loaded.sidecar.settings.freeze_encoder {
            let mut options = embed::frozen_options(
                Some(loaded.sidecar.encoder_dir.to_string_lossy().into_owned()),
                loaded.sidecar.max_length,
                loaded.sidecar.truncation,
                config.batch_size,
                config.device,
            );
            options.quantize = config.quantize;
            Some(embed::embed_tables(&tables, &options, quiet)?)
        } else {
            None
        };
        // All files are staged and moved into `--out` together.
        let outputs = routerdc::io::Outputs::new(out)?;
        for (index, table) in tables.iter().enumerate() {
            let texts: Vec<&str> = table.table.texts.iter().map(String::as_str).collect();
            let probs = match &frozen {
                Some((vectors, dim, _, _)) => {
                    let rows = (vectors[index].len() / (*dim).max(1)) as i64;
                    loaded
                        .probabilities_of(&Tensor::from_slice(&vectors[index]).view([rows, *dim as i64]).to(device))?
                }
                None => loaded.probabilities(&texts, config.batch_size)?,
            };
            let path = write_routes(table, models, "prob", &probs, charge.as_deref(), outputs.dir())?;
            if !quiet {
                let path = outputs.final_path(&path);
                eprintln!("{:<28} {:>7} queries routed → {}", table.table.dataset, texts.len(), path.display());
            }
        }
        outputs.commit()?;
        return Ok(());
    }
    let queries = read_queries(config)?;
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let probs = if texts.is_empty() { Vec::new() } else { loaded.probabilities(&texts, config.batch_size)? };
    print_lines(models, "probs", &probs, charge.as_deref())
}

/// The queries on stdin (one per line) or in `--jsonl` (`{"text": ...}` or `{"question": ...}`).
fn read_queries(config: &RouteConfig) -> Result<Vec<String>> {
    let (source, bytes) = match &config.jsonl {
        Some(path) => (path.display().to_string(), routerdc::io::read_bytes(path)?),
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
            ("<stdin>".to_owned(), bytes)
        }
    };
    let mut queries = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    for (number, line) in body.split(|&byte| byte == b'\n').enumerate() {
        if body.is_empty() {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|error| {
            Error::input_from(format!("{source}:{}: not UTF-8 text", number + 1), "give queries as UTF-8 text", error)
        })?;
        let query = if config.jsonl.is_some() {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|error| {
                Error::input_from(
                    format!("{source}:{}: not a JSON object", number + 1),
                    "each line must be a JSON object with `text` or `question`",
                    error,
                )
            })?;
            value
                .get("text")
                .or_else(|| value.get("question"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| Error::input(format!("{source}:{}: no string `text` or `question`", number + 1), ""))?
        } else {
            line.to_owned()
        };
        if query.trim().is_empty() {
            return Err(Error::input(format!("{source}:{}: an empty query", number + 1), "give one query per line"));
        }
        queries.push(query);
    }
    Ok(queries)
}

/// One JSON object per query: the chosen LLM and the per-LLM values under `key`, in the
/// router's model order (a JSON map would sort the keys).
fn print_lines(models: &[String], key: &str, values: &[Vec<f64>], charge: Option<&[f64]>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    for p in values {
        let entries: Vec<String> = models
            .iter()
            .zip(p)
            .map(|(model, value)| {
                format!("{}:{}", serde_json::Value::from(model.as_str()), serde_json::Value::from(*value))
            })
            .collect();
        let line = format!(
            "{{\"llm\":{},\"{key}\":{{{}}}}}\n",
            serde_json::Value::from(models[charged_argmax(p, charge)].as_str()),
            entries.join(",")
        );
        std::io::Write::write_all(&mut stdout, line.as_bytes())
            .map_err(|source| Error::Write { path: "<stdout>".into(), source })?;
    }
    Ok(())
}

/// What a router folder's `router.json` names, loaded: kNN (or cluster) vectors and targets, or
/// an MLP.
pub(super) enum FolderRouter {
    Knn(routerdc::routing::knn::Knn),
    Mlp(crate::torch::model::mlp::Mlp, routerdc::stages::train::MlpLoss),
}

/// Load a router folder's data file, checked against the router's LLMs.
pub(super) fn load_folder(
    dir: &std::path::Path,
    file: &routerdc::stages::train::folder::RouterFile,
) -> Result<(FolderRouter, std::path::PathBuf)> {
    use routerdc::stages::train::folder::{ROUTER_FILE, data_file, read_knn};
    let Some(data_name) = data_file(&file.kind) else {
        return Err(Error::bad_file(
            dir.join(ROUTER_FILE),
            format!("unknown router kind `{}`", file.kind),
            "this routerdc routes `knn`, `cluster` and `mlp` folders and RouterDC checkpoints",
            None,
        ));
    };
    let path = dir.join(data_name);
    if file.kind != "mlp" {
        return Ok((FolderRouter::Knn(read_knn(&file.models, &path)?), path));
    }
    let hint = "an MLP router folder is written by `routerdc train --router mlp`";
    let named = Tensor::read_safetensors(&path)
        .map_err(|source| Error::bad_file(&path, "not a safetensors file", hint, Some(source.into())))?;
    // The input width is checked against the encoder's vectors when they come.
    let dim = named
        .iter()
        .find(|(name, _)| name == "layers.0.weight")
        .map_or(0, |(_, w)| w.size().last().copied().unwrap_or(0));
    let network = crate::torch::model::mlp::Mlp::from_named(named, dim, file.models.len() as i64)
        .map_err(|message| Error::bad_file(&path, message, hint, None))?;
    Ok((FolderRouter::Mlp(network, file.loss.unwrap_or_default()), path))
}

impl FolderRouter {
    /// The vectors' width the router expects.
    pub(super) fn width(&self) -> usize {
        match self {
            FolderRouter::Knn(knn) => knn.vectors.ncols(),
            FolderRouter::Mlp(network, _) => network.layers[0].0.size()[1] as usize,
        }
    }

    /// An encoder giving vectors of `dim` dimensions fits the router (its data file `path`).
    pub(super) fn check_width(&self, dim: usize, path: &std::path::Path) -> Result<()> {
        if dim == self.width() {
            return Ok(());
        }
        Err(Error::bad_file(
            path,
            format!("the router takes vectors of {} dimensions, the encoder gives {dim}", self.width()),
            "",
            None,
        ))
    }

    /// Per query, per LLM: the neighbours' mean target (kNN, cluster) or the MLP's output.
    pub(super) fn scores(&self, queries: ndarray::Array2<f32>, k: usize) -> Result<Vec<Vec<f64>>> {
        let scores = match self {
            FolderRouter::Knn(knn) => knn.scores(queries.view(), k, false),
            FolderRouter::Mlp(network, loss) => {
                super::train::mlp::scores(network, &routerdc::routing::knn::normalised(queries), *loss)?
            }
        };
        Ok(scores.outer_iter().map(|row| row.to_vec()).collect())
    }
}

/// The routes of a router folder (kNN, cluster, MLP): tables to `<out>/<table>.parquet`
/// (`score:<model>` columns hold the router's per-LLM scores), or one JSON object per query with
/// `scores`.
fn route_folder(dir: &std::path::Path, config: &RouteConfig, quiet: bool) -> Result<()> {
    let file = routerdc::stages::train::folder::read_router_file(dir)?;
    let mut options = folder_encoder(dir, &file, config.batch_size, config.device)?;
    options.quantize = config.quantize;
    let (router, data_path) = load_folder(dir, &file)?;
    let rate = routerdc::stages::calibrate::cost_rate_for(dir, config.cost_rate, config.calibration.as_deref())?;
    let charge = routerdc::stages::route::charge(file.costs.as_deref(), rate, dir)?;
    let route = |flat: Vec<f32>, dim: usize| -> Result<Vec<Vec<f64>>> {
        let rows = flat.len() / dim.max(1);
        let queries = ndarray::Array2::from_shape_vec((rows, dim), flat)
            .map_err(|source| Error::failed("Failed to shape the embeddings", source))?;
        router.check_width(dim, &data_path)?;
        router.scores(queries, file.k)
    };
    let models = &file.models;
    if let Some(tables_dir) = &config.tables {
        let out = config.out.as_ref().ok_or_else(|| Error::setting("out", "`--tables` needs `--out DIR`"))?;
        let tables =
            tables_to_route(tables_dir, config, models, &dir.join(routerdc::stages::train::folder::ROUTER_FILE))?;
        let (vectors, dim, _, _) = embed::embed_tables(&tables, &options, quiet)?;
        let outputs = routerdc::io::Outputs::new(out)?;
        for (table, flat) in tables.iter().zip(vectors) {
            write_routes(table, models, "score", &route(flat, dim)?, charge.as_deref(), outputs.dir())?;
        }
        outputs.commit()?;
        return Ok(());
    }
    let queries = read_queries(config)?;
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    if texts.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let (flat, dim, _, _) = embed::embed_texts(&texts, &options, true)?;
    let embedding = started.elapsed().as_secs_f64();
    // One query at a time, as a service decides: the router's own time per query, apart from
    // the encoder's.
    let mut scores = Vec::with_capacity(texts.len());
    let mut times = Vec::with_capacity(texts.len());
    for vector in flat.chunks(dim.max(1)) {
        let started = std::time::Instant::now();
        scores.extend(route(vector.to_vec(), dim)?);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    print_lines(models, "scores", &scores, charge.as_deref())?;
    if !quiet {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((q * (times.len() - 1) as f64).round() as usize).min(times.len() - 1)];
        eprintln!(
            "{} queries: embedded in {embedding:.2} s (encoder load included); the {} router took {:.3} ms per query (median; p99 {:.3} ms) beside the encoder",
            texts.len(),
            file.kind,
            at(0.5),
            at(0.99)
        );
    }
    Ok(())
}

/// The encoder settings of a router folder, checked: the encoder found now must be the one
/// the router was trained with.
pub(super) fn folder_encoder(
    dir: &std::path::Path,
    file: &routerdc::stages::train::folder::RouterFile,
    batch_size: usize,
    device: routerdc::stages::embed::DeviceChoice,
) -> Result<routerdc::stages::embed::EncoderOptions> {
    use routerdc::stages::train::folder::ROUTER_FILE;
    let options =
        super::train::knn::encoder_options(file.encoder.clone(), file.max_length, file.truncation, batch_size, device);
    let found = super::train::knn::encoder_key(&options)?;
    if found != file.encoder_key {
        return Err(Error::bad_file(
            dir.join(ROUTER_FILE),
            format!(
                "the encoder found now (`{}`) is not the one the router was trained with",
                file.encoder.as_deref().unwrap_or("the bundled default")
            ),
            "install the encoder the router was trained with, or train the router again with this one",
            None,
        ));
    }
    Ok(options)
}

/// The tables of `dir` to route (`--split`'s rows), each checked before anything is computed or
/// written: it lists the router's `models` (the router named by `router`) and has a text for
/// every query.
fn tables_to_route(
    dir: &std::path::Path,
    config: &RouteConfig,
    models: &[String],
    router: &std::path::Path,
) -> Result<Vec<routerdc::table::LoadedTable>> {
    let mut tables = routerdc::io::read_tables(dir)?;
    if let Some(split) = config.split {
        tables = select_split(tables, split);
    }
    for table in &tables {
        if table.table.models != models {
            return Err(Error::ModelListMismatch {
                first_path: router.to_path_buf(),
                first: models.to_vec(),
                second_path: table.path.clone(),
                second: table.table.models.clone(),
            });
        }
        stage_embed::check_texts(table)?;
    }
    Ok(tables)
}

/// `<dir>/<table>.parquet`: `query_id`, the chosen `llm` and `llm_index` (the argmax of each
/// row of `values` less `charge`), and `<prefix>:<model>` columns with the values; returns its path.
fn write_routes(
    table: &routerdc::table::LoadedTable,
    models: &[String],
    prefix: &str,
    values: &[Vec<f64>],
    charge: Option<&[f64]>,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let choices: Vec<usize> = values.iter().map(|v| charged_argmax(v, charge)).collect();
    let mut columns = vec![
        Column::new("query_id".into(), &table.table.query_ids),
        Column::new("llm".into(), choices.iter().map(|&c| models[c].as_str()).collect::<Vec<_>>()),
        Column::new("llm_index".into(), choices.iter().map(|&c| c as i64).collect::<Vec<_>>()),
    ];
    for (index, model) in models.iter().enumerate() {
        columns
            .push(Column::new(format!("{prefix}:{model}").into(), values.iter().map(|v| v[index]).collect::<Vec<_>>()));
    }
    let mut frame = DataFrame::new_infer_height(columns).map_err(Error::polars("building the routes"))?;
    let path = routerdc::io::named_file(dir, &table.table.dataset, ".parquet")?;
    routerdc::io::write_parquet(&mut frame, &path)?;
    Ok(path)
}
