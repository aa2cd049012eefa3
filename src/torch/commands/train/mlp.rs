//! `routerdc train --router mlp`: the MLP router (`torch/model/mlp.rs`) fitted on the frozen,
//! unit-length embeddings of the training queries (the kNN router's, from `embed`'s cache and
//! workers). A seeded share of each training table's rows (`--validation-ratio`) is held out;
//! the epoch with the best held-out acc_predict is kept, and training stops after `--patience`
//! epochs without a better one. Test rows are evaluated for the closing line only.

use std::time::Instant;

use ndarray::Array2;
use tch::{Device, Kind, Tensor, nn};

use routerdc::error::{Error, Result};
use routerdc::routing::{self, knn::Knn, knn::normalised};
use routerdc::stages::embed::EncoderOptions;
use routerdc::stages::train::folder::{ROUTER_FILE, RouterFile};
use routerdc::stages::train::{self, MlpLoss, TrainConfig};
use routerdc::table::LoadedTable;

use super::knn::{encoder_key, evaluate, test_summary, write_folder};
use super::optim::AdamW;
use crate::torch::model::mlp::{self, Mlp};

/// `[rows × cols]` of an ndarray as a float32 tensor.
fn tensor<T: Copy + Into<f64>>(array: &Array2<T>) -> Tensor {
    let flat: Vec<f32> = array.iter().map(|&value| value.into() as f32).collect();
    Tensor::from_slice(&flat).view([array.nrows() as i64, array.ncols() as i64])
}

/// `[rows × cols]` of a float tensor as f64 rows.
fn array(scores: &Tensor) -> Result<Array2<f64>> {
    let (rows, cols) = scores.size2().map_err(|source| Error::failed("Failed to read the MLP's outputs", source))?;
    let values = Vec::<f64>::try_from(scores.to_kind(Kind::Double).flatten(0, -1))
        .map_err(|source| Error::failed("Failed to read the MLP's outputs", source))?;
    Array2::from_shape_vec((rows as usize, cols as usize), values)
        .map_err(|source| Error::failed("Failed to shape the MLP's outputs", source))
}

/// Routing scores of `mlp` for unit-length `embeddings`.
pub fn scores(mlp: &Mlp, embeddings: &Array2<f32>, loss: MlpLoss) -> Result<Array2<f64>> {
    array(&mlp.scores(&tensor(embeddings), loss))
}

/// The held-out rows: per table, `ratio` of its rows (rounded, at least one when `ratio > 0`,
/// never all of them), drawn with the run's seed. Returns one flag per training row.
fn held_out(tables: &[LoadedTable], ratio: f64, seed: u64) -> Vec<bool> {
    let rows: Vec<usize> = tables.iter().map(|loaded| loaded.table.n_queries()).collect();
    routerdc::stages::train::plan::holdout(&rows, ratio, seed)
        .map_or_else(|| vec![false; rows.iter().sum()], |held| held.concat())
}

/// The best epoch so far, its held-out average and its weights.
type Kept = (usize, f64, Vec<(String, Tensor)>);

#[allow(clippy::too_many_arguments)]
pub fn mlp_router(
    config: &TrainConfig,
    options: &EncoderOptions,
    train_tables: &[LoadedTable],
    test_tables: &[LoadedTable],
    training: &Knn,
    test_vectors: Array2<f32>,
    started: Instant,
    quiet: bool,
) -> Result<()> {
    if config.epochs == 0 {
        return Err(Error::setting("epochs", "must be at least 1"));
    }
    if config.loss == MlpLoss::Bce && training.targets.iter().any(|&y| !(0.0..=1.0).contains(&y)) {
        return Err(Error::setting(
            "loss",
            "`bce` needs targets in [0, 1], and a cost rate makes some negative: use `--loss mse`",
        ));
    }
    let held = held_out(train_tables, config.validation_ratio(), config.seed);
    let fit_rows: Vec<i64> = (0..held.len()).filter(|&row| !held[row]).map(|row| row as i64).collect();
    let held_rows: Vec<i64> = (0..held.len()).filter(|&row| held[row]).map(|row| row as i64).collect();
    // The held-out rows as tables of their own, for acc_predict per table.
    let mut at = 0;
    let held_tables: Vec<LoadedTable> = train_tables
        .iter()
        .map(|loaded| {
            let offset = at;
            at += loaded.table.n_queries();
            LoadedTable { path: loaded.path.clone(), table: loaded.table.select_rows(|row| held[offset + row]) }
        })
        .filter(|loaded| loaded.table.n_queries() > 0)
        .collect();

    tch::manual_seed(config.seed as i64);
    let embeddings = tensor(&training.vectors);
    let targets = tensor(&training.targets);
    let held_embeddings = embeddings.index_select(0, &Tensor::from_slice(&held_rows));
    let (dim, llms) = (training.vectors.ncols() as i64, training.targets.ncols() as i64);
    let store = nn::VarStore::new(Device::Cpu);
    let mut network = Mlp::new(&store.root(), dim, config.hidden as i64, llms);
    let mut optimizer = AdamW::new(&store, config.learning_rate(), config.weight_decay);
    let mut rng = routing::rng(config.seed);
    let mut order = fit_rows.clone();
    let mut validation: Vec<(usize, f64)> = Vec::new();
    let mut best: Option<Kept> = None;
    let bar = routerdc::progress::bar(config.epochs as u64, "mlp", quiet);
    for epoch in 1..=config.epochs {
        routing::shuffle(&mut order, &mut rng);
        for batch in order.chunks(config.batch_size.max(1)) {
            let index = Tensor::from_slice(batch);
            let prediction = network.forward(&embeddings.index_select(0, &index));
            let loss = mlp::loss(&prediction, &targets.index_select(0, &index), config.loss);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
        bar.inc(1);
        if held_rows.is_empty() {
            continue;
        }
        let scores = array(&network.scores(&held_embeddings, config.loss))?;
        let average = train::log::average(&evaluate(&held_tables, &scores, config.cost_rate));
        validation.push((epoch, average));
        if best.as_ref().is_none_or(|(_, value, _)| average > *value) {
            best = Some((epoch, average, network.named()));
        } else if best.as_ref().is_some_and(|(kept, _, _)| epoch - kept >= config.patience.max(1)) {
            break;
        }
    }
    bar.finish_and_clear();
    let epochs_run = validation.last().map_or(config.epochs, |(epoch, _)| *epoch);
    let kept = match &best {
        Some((epoch, _, saved)) => {
            network.load(saved);
            *epoch
        }
        None => config.epochs,
    };
    let test = if test_tables.is_empty() {
        Vec::new()
    } else {
        evaluate(test_tables, &scores(&network, &normalised(test_vectors), config.loss)?, config.cost_rate)
    };
    let file = RouterFile {
        kind: "mlp".into(),
        routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
        models: train_tables[0].table.models.clone(),
        encoder: config.encoder.clone(),
        encoder_key: encoder_key(options)?,
        pooling: options.pooling,
        max_length: config.max_length,
        truncation: config.truncation,
        k: 0,
        validation,
        cost_rate: config.cost_rate,
        hidden: Some(config.hidden),
        loss: Some(config.loss),
        costs: routing::expected_costs(train_tables),
    };
    let named = network.named();
    write_folder(&config.out, &file, |path| {
        Tensor::write_safetensors(&named, path).map_err(|source| Error::failed("Failed to save the MLP router", source))
    })?;
    if !quiet {
        let chosen = match &best {
            Some((epoch, value, _)) => {
                format!("kept epoch {epoch} of {epochs_run} (held-out acc_predict {:.2})", 100.0 * value)
            }
            None => format!("{kept} epochs, none held out"),
        };
        eprintln!(
            "MLP router ({}, {} loss) on {} training queries ({} held out): {chosen}{}; {:.1} s; wrote {}",
            if config.hidden == 0 { "linear".to_owned() } else { format!("hidden {}", config.hidden) },
            match config.loss {
                MlpLoss::Mse => "mse",
                MlpLoss::Bce => "bce",
            },
            fit_rows.len(),
            held_rows.len(),
            test_summary(&test),
            started.elapsed().as_secs_f64(),
            config.out.join(ROUTER_FILE).display()
        );
    }
    Ok(())
}
