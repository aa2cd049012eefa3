//! The training loop of `routerdc train`, checkpoints, and routing with a checkpoint.
//!
//! Data: every training query is tokenised once; each step takes the next `batch_size`
//! examples of the shuffled epoch (tables cycled to `samples_per_table` queries, SPEC §5) and
//! pads them to the batch's longest query. Evaluation routes every query of the training
//! tables (validation) and of the test tables; the checkpoint with the best validation
//! average is kept as `best.safetensors` + `best.json` (never chosen by test scores).

use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use routerdc::encoder::tokenize::TextTokenizer;
use routerdc::encoder::{self, EncoderConfig, EncoderFiles};
use routerdc::error::{Error, Result};
use routerdc::stages::embed;
use routerdc::stages::train::{self, Similarity, TrainConfig};
use routerdc::table::LoadedTable;

use super::encoder::{load_weights, pad_batch};
use super::router::{Router, orthogonality_loss, sample_llm_loss, sample_sample_loss};

/// `best.json`: what a checkpoint needs besides its tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sidecar {
    pub routerdc_version: String,
    /// The LLMs in embedding order.
    pub models: Vec<String>,
    /// The encoder's directory (its config and tokenizer are read from there).
    pub encoder_dir: PathBuf,
    pub encoder_config: serde_json::Value,
    pub max_length: usize,
    pub truncation: routerdc::encoder::tokenize::TruncationSide,
    pub similarity: Similarity,
    pub temperature: f64,
    pub settings: TrainConfig,
    pub step: usize,
    /// acc_predict per training table at that step, and their average.
    pub validation: Vec<(String, f64)>,
    pub validation_average: f64,
    pub test: Vec<(String, f64)>,
}

/// One evaluation: per table (acc, acc_predict).
struct Evaluation {
    validation: Vec<(String, f64, f64)>,
    test: Vec<(String, f64, f64)>,
}

fn average(rows: &[(String, f64, f64)]) -> f64 {
    if rows.is_empty() { f64::NAN } else { rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64 }
}

/// `embed`'s settings that give a frozen encoder's h: first token, the router's length and
/// truncation, the embedding cache and parallel workers.
fn frozen_options(
    encoder: Option<String>,
    max_length: usize,
    truncation: routerdc::encoder::tokenize::TruncationSide,
    batch_size: usize,
    device: routerdc::stages::embed::DeviceChoice,
) -> embed::EncoderOptions {
    embed::EncoderOptions {
        encoder,
        pooling: routerdc::encoder::Pooling::First,
        max_length,
        truncation,
        batch_size,
        device,
        workers: 0,
        no_cache: false,
    }
}

/// Token ids of every query of every table, table by table.
fn tokenise(tables: &[LoadedTable], tokenizer: &TextTokenizer) -> Result<Vec<Vec<Vec<u32>>>> {
    tables
        .iter()
        .map(|loaded| {
            let texts: Vec<&str> = loaded.table.texts.iter().map(String::as_str).collect();
            tokenizer.encode(&texts)
        })
        .collect()
}

/// h for every query of `ids`, without gradients: length-sorted batches, eval mode.
fn encode_all(router: &Router, ids: &[Vec<u32>], batch_size: usize, pad: i64, device: Device) -> Tensor {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut parts = Vec::new();
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
        let (input, mask) = pad_batch(&batch, pad, device);
        parts.push(tch::no_grad(|| router.encode(&input, &mask, false)));
    }
    let sorted = Tensor::cat(&parts, 0);
    let mut inverse = vec![0i64; ids.len()];
    for (position, &row) in order.iter().enumerate() {
        inverse[row] = position as i64;
    }
    sorted.index_select(0, &Tensor::from_slice(&inverse).to(device))
}

/// The routed LLM of every query.
fn route(router: &Router, h: &Tensor) -> Vec<usize> {
    let choices = tch::no_grad(|| router.logits(h).argmax(1, false)).to_device(Device::Cpu);
    Vec::<i64>::try_from(&choices).unwrap_or_default().into_iter().map(|c| c as usize).collect()
}

struct Data {
    tables: Vec<LoadedTable>,
    ids: Vec<Vec<Vec<u32>>>,
    /// Precomputed h per table when the encoder is frozen.
    frozen: Option<Vec<Tensor>>,
}

pub fn run_train(config: &TrainConfig, quiet: bool) -> Result<()> {
    let (train_tables, test_tables) = train::load_tables(config)?;
    train::check(config, &train_tables, &test_tables)?;
    for loaded in train_tables.iter().chain(&test_tables) {
        embed::check_texts(loaded)?;
    }
    let models = train_tables[0].table.models.clone();
    let files = encoder::resolve(config.encoder.as_deref())?;
    let encoder_config = EncoderConfig::read(&files.config)?;
    let device = super::embed::device(config.device)?;
    let max_length = config.max_length.min(encoder_config.max_position_embeddings as usize);
    let tokenizer = TextTokenizer::load(&files, max_length, config.truncation)?;
    std::fs::create_dir_all(&config.out).map_err(|source| Error::Write { path: config.out.clone(), source })?;

    tch::manual_seed(config.seed as i64);
    let mut store = nn::VarStore::new(device);
    let router =
        Router::new(&store.root(), &encoder_config, models.len() as i64, config.similarity, config.temperature);
    load_weights(&mut store, "backbone.", &files.weights)?;
    let pad = encoder_config.pad_token_id;
    if config.freeze_encoder {
        for (name, variable) in store.variables() {
            if name.starts_with("backbone.") {
                let _ = variable.set_requires_grad(false);
            }
        }
    }
    let mut optimizer = AdamW::new(&store, config.learning_rate, config.weight_decay);

    // A frozen encoder's vectors are `embed`'s (first token, same length and truncation): they
    // come from the embedding cache and its parallel workers.
    let embed_options =
        frozen_options(config.encoder.clone(), config.max_length, config.truncation, config.batch_size, config.device);
    let started = Instant::now();
    // One pass over the training and test tables together: the encoder is loaded once.
    let mut frozen = if config.freeze_encoder {
        let tables: Vec<LoadedTable> = train_tables.iter().chain(&test_tables).cloned().collect();
        let (vectors, dim, _, _) = super::embed::embed_tables(&tables, &embed_options, quiet)?;
        let tensors: Vec<Tensor> = vectors
            .into_iter()
            .map(|flat| {
                let rows = (flat.len() / dim.max(1)) as i64;
                Tensor::from_slice(&flat).view([rows, dim as i64]).to(device)
            })
            .collect();
        Some(tensors)
    } else {
        None
    };
    let mut prepare = |tables: Vec<LoadedTable>| -> Result<Data> {
        let ids = tokenise(&tables, &tokenizer)?;
        let frozen = frozen.as_mut().map(|all| all.drain(..tables.len()).collect());
        Ok(Data { tables, ids, frozen })
    };
    let train_data = prepare(train_tables)?;
    let test_data = prepare(test_tables)?;
    // After the frozen vectors (float32, shared with `embed`'s cache) are made.
    super::layers::set_bf16(config.bf16);
    if !quiet && config.freeze_encoder {
        eprintln!("encoded the queries once (frozen encoder) in {:.1} s", started.elapsed().as_secs_f64());
    }

    let evaluate = |data: &Data| -> Vec<(String, f64, f64)> {
        data.tables
            .iter()
            .enumerate()
            .map(|(t, loaded)| {
                let h = match &data.frozen {
                    Some(h) => h[t].shallow_clone(),
                    None => encode_all(&router, &data.ids[t], config.batch_size, pad, device),
                };
                let (acc, acc_predict) = train::evaluate(&loaded.table, &route(&router, &h), config.cost_rate);
                (loaded.table.dataset.clone(), acc, acc_predict)
            })
            .collect()
    };

    let examples = train::examples(&train_data.tables, config.samples_per_table, config.cost_rate);
    let lengths: Vec<usize> = examples.iter().map(|e| train_data.ids[e.table][e.row].len()).collect();
    let mut plan = Plan::new(config, lengths);
    let mut log = TrainLog::default();
    let mut best: Option<f64> = None;
    let mut first_step = 1;
    if config.resume {
        let state = load_last(config, &mut store, &mut optimizer)?;
        // The data side is replayed: its draws depend only on the seed and the settings.
        for _ in 0..state.step {
            plan.next(config, &examples);
        }
        first_step = state.step + 1;
        best = state.best;
        log = state.log;
        if !quiet {
            eprintln!("resuming after step {} from {}", state.step, config.out.join("last.safetensors").display());
        }
    }
    let bar = routerdc::progress::steps_bar(config.steps as u64, quiet);
    bar.set_position(first_step as u64 - 1);
    let (top_k, last_k, negatives) = (config.top_k as i64, config.last_k as i64, config.negatives as i64);
    let mut step_time = 0.0;
    let checkpoint_steps =
        if config.checkpoint_steps == 0 { config.eval_steps.max(1) } else { config.checkpoint_steps };
    for step in first_step..=config.steps {
        let step_started = Instant::now();
        // Dropout draws depend on the step alone, so a resumed run draws what the uninterrupted one did.
        tch::manual_seed((config.seed as i64).wrapping_mul(1_000_003).wrapping_add(step as i64));
        let (rows, cluster_pairs, task_pairs) = plan.next(config, &examples);
        let batch: Vec<&train::Example> = rows.iter().map(|&i| &examples[i]).collect();

        let h = match &train_data.frozen {
            Some(h) => {
                let rows: Vec<Tensor> = batch.iter().map(|e| h[e.table].get(e.row as i64)).collect();
                Tensor::stack(&rows, 0)
            }
            None => {
                let ids: Vec<&[u32]> = batch.iter().map(|e| train_data.ids[e.table][e.row].as_slice()).collect();
                let (input, mask) = pad_batch(&ids, pad, device);
                router.encode(&input, &mask, true)
            }
        };
        let logits = router.logits(&h);
        let targets: Vec<&[f64]> = batch.iter().map(|e| e.targets.as_slice()).collect();
        let llm_loss =
            sample_llm_loss(&logits, &train::choose_llms(&targets, config.top_k, config.last_k), top_k, last_k);
        let mut loss = llm_loss.shallow_clone();
        let mut cluster_loss = 0.0;
        if let Some(pairs) = cluster_pairs {
            let term = sample_sample_loss(&h, &pairs, negatives, config.temperature);
            cluster_loss = term.double_value(&[]);
            loss = loss + term * config.cluster_weight;
        }
        let mut task_loss = 0.0;
        if let Some(pairs) = task_pairs {
            let term = sample_sample_loss(&h, &pairs, negatives, config.temperature);
            task_loss = term.double_value(&[]);
            loss = loss + term * config.task_weight;
        }
        let mut orth_loss = 0.0;
        if config.orth_weight != 0.0 {
            let term = orthogonality_loss(&router.llm_embeddings);
            orth_loss = term.double_value(&[]);
            loss = loss + term * config.orth_weight;
        }
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        let total = loss.double_value(&[]);
        // The first step pays one-off costs (allocations, kernel set-up); time the others.
        if step > 1 {
            step_time += step_started.elapsed().as_secs_f64();
        }
        bar.set_message(format!("loss {total:.4}"));
        bar.inc(1);
        log.losses.push((step, total, llm_loss.double_value(&[]), cluster_loss, task_loss, orth_loss));
        log.step_seconds.push(started.elapsed().as_secs_f64());

        if step % config.eval_steps.max(1) == 0 || step == config.steps {
            let evaluation = Evaluation { validation: evaluate(&train_data), test: evaluate(&test_data) };
            let validation_average = average(&evaluation.validation);
            log.evaluations.push((
                step,
                started.elapsed().as_secs_f64(),
                evaluation.validation.clone(),
                evaluation.test.clone(),
            ));
            if !quiet {
                bar.println(format!(
                    "step {step}: loss {total:.4}, validation acc_predict {:.4}, test {:.4}",
                    validation_average,
                    average(&evaluation.test)
                ));
            }
            if best.is_none_or(|best| validation_average > best) {
                best = Some(validation_average);
                let sidecar = Sidecar {
                    routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
                    models: models.clone(),
                    encoder_dir: std::fs::canonicalize(&files.dir).unwrap_or_else(|_| files.dir.clone()),
                    encoder_config: serde_json::from_slice(&routerdc::io::read_bytes(&files.config)?)
                        .unwrap_or_default(),
                    max_length,
                    truncation: config.truncation,
                    similarity: config.similarity,
                    temperature: config.temperature,
                    settings: config.clone(),
                    step,
                    validation: evaluation.validation.iter().map(|r| (r.0.clone(), r.2)).collect(),
                    validation_average,
                    test: evaluation.test.iter().map(|r| (r.0.clone(), r.2)).collect(),
                };
                save_checkpoint(&store, &sidecar, &config.out.join("best"))?;
            }
        }
        if step % checkpoint_steps == 0 || step == config.steps {
            save_last(config, &store, &optimizer, &LastState { step, best, log: log.clone() })?;
        }
    }
    bar.finish_and_clear();
    let log_path = config.out.join("train_log.parquet");
    routerdc::io::write_parquet(&mut log.frame()?, &log_path)?;
    if !quiet {
        let per_step = if config.steps > 1 { step_time / (config.steps - 1) as f64 } else { f64::NAN };
        eprintln!(
            "trained {} steps in {:.1} s ({per_step:.3} s/step after the first, evaluations excluded); \
             best validation acc_predict {:.4}; wrote {} and {}",
            config.steps,
            started.elapsed().as_secs_f64(),
            best.unwrap_or(f64::NAN),
            config.out.join("best.safetensors").display(),
            log_path.display()
        );
    }
    Ok(())
}

/// `<base>.safetensors` and `<base>.json`, each written to a temporary name and renamed.
fn save_checkpoint(store: &nn::VarStore, sidecar: &Sidecar, base: &Path) -> Result<()> {
    let tensors = base.with_extension("safetensors");
    let partial = base.with_extension("partial.safetensors");
    store.save(&partial).map_err(|error| Error::input(format!("saving `{}`: {error}", tensors.display()), ""))?;
    std::fs::rename(&partial, &tensors).map_err(|source| Error::Write { path: tensors.clone(), source })?;
    let json = serde_json::to_string_pretty(sidecar).unwrap_or_default();
    routerdc::io::write_text(&json, &base.with_extension("json"))
}

/// A router loaded from `best.safetensors` + `best.json`.
pub struct LoadedRouter {
    pub sidecar: Sidecar,
    pub router: Router,
    pub tokenizer: TextTokenizer,
    pub pad: i64,
    pub device: Device,
    _store: nn::VarStore,
}

pub fn load_router(checkpoint: &Path, device: Device) -> Result<LoadedRouter> {
    let sidecar_path = checkpoint.with_extension("json");
    let sidecar: Sidecar = serde_json::from_slice(&routerdc::io::read_bytes(&sidecar_path)?).map_err(|error| {
        Error::input(
            format!("`{}`: {error}", sidecar_path.display()),
            "a checkpoint is `best.safetensors` with its `best.json`",
        )
    })?;
    let files = EncoderFiles::in_dir(&sidecar.encoder_dir)?;
    let config = EncoderConfig::read(&files.config)?;
    let tokenizer = TextTokenizer::load(&files, sidecar.max_length, sidecar.truncation)?;
    let mut store = nn::VarStore::new(device);
    let router =
        Router::new(&store.root(), &config, sidecar.models.len() as i64, sidecar.similarity, sidecar.temperature);
    store.load(checkpoint).map_err(|error| {
        Error::input(
            format!("`{}`: {error}", checkpoint.display()),
            "the checkpoint must come from `routerdc train` with the encoder named in its .json",
        )
    })?;
    Ok(LoadedRouter { pad: config.pad_token_id, sidecar, router, tokenizer, device, _store: store })
}

impl LoadedRouter {
    /// Per-LLM probabilities (softmax of the logits), `[n × T]` row-major.
    pub fn probabilities(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f64>>> {
        let ids = self.tokenizer.encode(texts)?;
        let h = encode_all(&self.router, &ids, batch_size, self.pad, self.device);
        Ok(self.probabilities_of(&h))
    }

    /// Per-LLM probabilities of queries already encoded, h `[n × d]`.
    pub fn probabilities_of(&self, h: &Tensor) -> Vec<Vec<f64>> {
        let probs = tch::no_grad(|| self.router.logits(h).softmax(1, Kind::Double)).to_device(Device::Cpu);
        let t = self.sidecar.models.len();
        let flat = Vec::<f64>::try_from(&probs.contiguous().view(-1)).unwrap_or_default();
        flat.chunks(t.max(1)).map(<[f64]>::to_vec).collect()
    }
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct TrainLog {
    /// step, total, sample-LLM, cluster, task, orthogonality.
    losses: Vec<(usize, f64, f64, f64, f64, f64)>,
    /// Time since the start (data preparation included) when each step finished.
    step_seconds: Vec<f64>,
    /// step, seconds, validation and test (dataset, acc, acc_predict).
    evaluations: Vec<(usize, f64, Vec<(String, f64, f64)>, Vec<(String, f64, f64)>)>,
}

impl TrainLog {
    /// One row per step: the loss terms and the time since the start when the step finished
    /// (evaluations run after their step), and for evaluation steps the per-table acc and
    /// acc_predict (`val:<table>:acc_predict`, `test:<table>:acc`, ...) and their average.
    fn frame(&self) -> Result<DataFrame> {
        let steps: Vec<i64> = self.losses.iter().map(|l| l.0 as i64).collect();
        let mut columns = vec![
            Column::new("step".into(), &steps),
            Column::new("loss".into(), self.losses.iter().map(|l| l.1).collect::<Vec<_>>()),
            Column::new("loss_sample_llm".into(), self.losses.iter().map(|l| l.2).collect::<Vec<_>>()),
            Column::new("loss_cluster".into(), self.losses.iter().map(|l| l.3).collect::<Vec<_>>()),
            Column::new("loss_task".into(), self.losses.iter().map(|l| l.4).collect::<Vec<_>>()),
            Column::new("loss_orthogonal".into(), self.losses.iter().map(|l| l.5).collect::<Vec<_>>()),
        ];
        let at = |step: i64| self.evaluations.iter().find(|e| e.0 as i64 == step);
        columns.push(Column::new("seconds".into(), &self.step_seconds));
        columns.push(Column::new(
            "val_average".into(),
            steps.iter().map(|&s| at(s).map(|e| average(&e.2))).collect::<Vec<_>>(),
        ));
        if let Some(first) = self.evaluations.first() {
            for (prefix, pick) in [("val", 2usize), ("test", 3usize)] {
                let tables = if pick == 2 { &first.2 } else { &first.3 };
                for (index, (name, _, _)) in tables.iter().enumerate() {
                    for (metric, value) in [("acc", 1usize), ("acc_predict", 2usize)] {
                        let values: Vec<Option<f64>> = steps
                            .iter()
                            .map(|&s| {
                                at(s).map(|e| {
                                    let rows = if pick == 2 { &e.2 } else { &e.3 };
                                    if value == 1 { rows[index].1 } else { rows[index].2 }
                                })
                            })
                            .collect();
                        columns.push(Column::new(format!("{prefix}:{name}:{metric}").into(), values));
                    }
                }
            }
        }
        DataFrame::new_infer_height(columns).map_err(Error::polars("building the training log"))
    }
}

/// `routerdc route`: tables to `<out>/<table>.parquet`, or one JSON object per input line.
pub fn run_route(config: &train::RouteConfig, quiet: bool) -> Result<()> {
    let device = super::embed::device(config.device)?;
    let loaded = load_router(&config.checkpoint, device)?;
    let models = &loaded.sidecar.models;
    let choose = |probs: &[f64]| routerdc::stages::report::first_argmax(probs);
    if let Some(dir) = &config.tables {
        let out = config.out.as_ref().ok_or_else(|| Error::setting("out", "`--tables` needs `--out DIR`"))?;
        let mut tables = routerdc::io::read_tables(dir)?;
        if let Some(split) = config.split {
            tables = routerdc::stages::report::select_split(tables, split);
        }
        std::fs::create_dir_all(out).map_err(|source| Error::Write { path: out.clone(), source })?;
        // A router trained with a frozen encoder has the encoder's own weights: its h are
        // `embed`'s vectors, from the embedding cache and parallel workers.
        let frozen = if loaded.sidecar.settings.freeze_encoder {
            let options = frozen_options(
                Some(loaded.sidecar.encoder_dir.to_string_lossy().into_owned()),
                loaded.sidecar.max_length,
                loaded.sidecar.truncation,
                config.batch_size,
                config.device,
            );
            Some(super::embed::embed_tables(&tables, &options, quiet)?)
        } else {
            None
        };
        for (index, table) in tables.iter().enumerate() {
            if table.table.models != *models {
                return Err(Error::ModelListMismatch {
                    first_path: config.checkpoint.clone(),
                    first: models.clone(),
                    second_path: table.path.clone(),
                    second: table.table.models.clone(),
                });
            }
            embed::check_texts(table)?;
            let texts: Vec<&str> = table.table.texts.iter().map(String::as_str).collect();
            let probs = match &frozen {
                Some((vectors, dim, _, _)) => {
                    let rows = (vectors[index].len() / (*dim).max(1)) as i64;
                    loaded.probabilities_of(&Tensor::from_slice(&vectors[index]).view([rows, *dim as i64]).to(device))
                }
                None => loaded.probabilities(&texts, config.batch_size)?,
            };
            let choices: Vec<usize> = probs.iter().map(|p| choose(p)).collect();
            let mut columns = vec![
                Column::new("query_id".into(), &table.table.query_ids),
                Column::new("llm".into(), choices.iter().map(|&c| models[c].as_str()).collect::<Vec<_>>()),
                Column::new("llm_index".into(), choices.iter().map(|&c| c as i64).collect::<Vec<_>>()),
            ];
            for (index, model) in models.iter().enumerate() {
                columns.push(Column::new(
                    format!("prob:{model}").into(),
                    probs.iter().map(|p| p[index]).collect::<Vec<_>>(),
                ));
            }
            let mut frame = DataFrame::new_infer_height(columns).map_err(Error::polars("building the routes"))?;
            let path = out.join(format!("{}.parquet", table.table.dataset));
            routerdc::io::write_parquet(&mut frame, &path)?;
            if !quiet {
                eprintln!("{:<28} {:>7} queries routed → {}", table.table.dataset, texts.len(), path.display());
            }
        }
        return Ok(());
    }
    let (source, text) = match &config.jsonl {
        Some(path) => {
            (path.display().to_string(), String::from_utf8_lossy(&routerdc::io::read_bytes(path)?).into_owned())
        }
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
            ("<stdin>".to_owned(), text)
        }
    };
    let mut queries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let query = if config.jsonl.is_some() {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|error| {
                Error::input(
                    format!("{source}:{}: {error}", number + 1),
                    "each line must be a JSON object with `text` or `question`",
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
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let probs = if texts.is_empty() { Vec::new() } else { loaded.probabilities(&texts, config.batch_size)? };
    let mut stdout = std::io::stdout().lock();
    for p in probs {
        let object: serde_json::Map<String, serde_json::Value> =
            models.iter().cloned().zip(p.iter().map(|&x| serde_json::json!(x))).collect();
        let line = serde_json::json!({"llm": models[choose(&p)], "probs": object});
        std::io::Write::write_all(&mut stdout, format!("{line}\n").as_bytes())
            .map_err(|source| Error::Write { path: "<stdout>".into(), source })?;
    }
    Ok(())
}

/// The data side of the loop: the epoch order and the pair draws, from one seeded generator.
struct Plan {
    rng: train::Rng,
    order: Vec<usize>,
    cursor: usize,
    /// Token count of each example, for length bucketing.
    lengths: Vec<usize>,
}

impl Plan {
    fn new(config: &TrainConfig, lengths: Vec<usize>) -> Plan {
        let mut plan = Plan { rng: train::rng(config.seed), order: Vec::new(), cursor: 0, lengths };
        plan.new_epoch(config);
        plan
    }

    fn new_epoch(&mut self, config: &TrainConfig) {
        let order = train::epoch_order(self.lengths.len(), &mut self.rng);
        self.order = train::bucket(order, &self.lengths, config.batch_size, config.length_buckets, &mut self.rng);
        self.cursor = 0;
    }

    /// The next batch (positions in the example list) and the cluster and task pairs for it.
    fn next(
        &mut self,
        config: &TrainConfig,
        examples: &[train::Example],
    ) -> (Vec<usize>, Option<train::PairChoice>, Option<train::PairChoice>) {
        if self.cursor + config.batch_size > self.order.len() {
            self.new_epoch(config);
        }
        let rows = self.order[self.cursor..self.cursor + config.batch_size].to_vec();
        self.cursor += config.batch_size;
        let mut pairs =
            |groups: Vec<i64>| train::choose_pairs(&groups, config.negatives, config.exclude_self, &mut self.rng);
        let cluster =
            (config.cluster_weight != 0.0).then(|| pairs(rows.iter().map(|&i| examples[i].cluster).collect()));
        let task = (config.task_weight != 0.0).then(|| pairs(rows.iter().map(|&i| examples[i].table as i64).collect()));
        (rows, cluster, task)
    }
}

/// AdamW exactly as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments), with
/// its state in tensors that `last.safetensors` keeps.
struct AdamW {
    learning_rate: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i64,
    /// (name, parameter, first moment, second moment) of every trainable variable.
    slots: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl AdamW {
    fn new(store: &nn::VarStore, learning_rate: f64, weight_decay: f64) -> AdamW {
        let mut variables: Vec<(String, Tensor)> =
            store.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = variables
            .into_iter()
            .map(|(name, p)| {
                let (m, v) = (p.zeros_like().detach(), p.zeros_like().detach());
                (name, p, m, v)
            })
            .collect();
        AdamW { learning_rate, weight_decay, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, slots }
    }

    fn zero_grad(&mut self) {
        for (_, p, _, _) in &mut self.slots {
            p.zero_grad();
        }
    }

    fn step(&mut self) {
        self.step += 1;
        let (lr, b1, b2) = (self.learning_rate, self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.step as i32);
        let correction2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        tch::no_grad(|| {
            for (_, p, m, v) in &mut self.slots {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denom = v.sqrt() / correction2_sqrt + self.eps;
                let _ = p.g_sub_(&(&*m / &denom * (lr / correction1)));
            }
        });
    }
}

/// What `last.json` holds besides the tensors.
#[derive(Clone, Serialize, Deserialize)]
struct LastState {
    step: usize,
    best: Option<f64>,
    log: TrainLog,
}

#[derive(Serialize, Deserialize)]
struct LastFile {
    settings: TrainConfig,
    optimizer_step: i64,
    state: LastState,
}

fn save_last(config: &TrainConfig, store: &nn::VarStore, optimizer: &AdamW, state: &LastState) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = store.variables().into_iter().collect();
    for (name, _, m, v) in &optimizer.slots {
        tensors.push((format!("optimizer.m.{name}"), m.shallow_clone()));
        tensors.push((format!("optimizer.v.{name}"), v.shallow_clone()));
    }
    let path = config.out.join("last.safetensors");
    let partial = config.out.join("last.partial.safetensors");
    Tensor::write_safetensors(&tensors, &partial)
        .map_err(|error| Error::input(format!("saving `{}`: {error}", path.display()), ""))?;
    std::fs::rename(&partial, &path).map_err(|source| Error::Write { path: path.clone(), source })?;
    let file = LastFile { settings: config.clone(), optimizer_step: optimizer.step, state: state.clone() };
    routerdc::io::write_text(&serde_json::to_string(&file).unwrap_or_default(), &config.out.join("last.json"))
}

fn load_last(config: &TrainConfig, store: &mut nn::VarStore, optimizer: &mut AdamW) -> Result<LastState> {
    let json_path = config.out.join("last.json");
    let hint = "`--resume` continues a run in the same `--out` folder; start without it to train anew";
    let file: LastFile = serde_json::from_slice(&routerdc::io::read_bytes(&json_path)?)
        .map_err(|error| Error::input(format!("`{}`: {error}", json_path.display()), hint))?;
    let comparable = |settings: &TrainConfig| {
        let mut settings = settings.clone();
        settings.steps = 0;
        settings.resume = false;
        serde_json::to_value(settings).unwrap_or_default()
    };
    if comparable(&file.settings) != comparable(config) {
        return Err(Error::setting(
            "resume",
            format!(
                "the settings differ from those of the run saved in `{}` (only --steps may change)",
                json_path.display()
            ),
        ));
    }
    let path = config.out.join("last.safetensors");
    let saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|error| Error::input(format!("`{}`: {error}", path.display()), hint))?
        .into_iter()
        .collect();
    let missing = |name: &str| Error::input(format!("`{}` lacks `{name}`", path.display()), hint);
    tch::no_grad(|| -> Result<()> {
        for (name, mut variable) in store.variables() {
            variable.copy_(saved.get(&name).ok_or_else(|| missing(&name))?);
        }
        for (name, _, m, v) in &mut optimizer.slots {
            m.copy_(saved.get(&format!("optimizer.m.{name}")).ok_or_else(|| missing(name))?);
            v.copy_(saved.get(&format!("optimizer.v.{name}")).ok_or_else(|| missing(name))?);
        }
        Ok(())
    })?;
    optimizer.step = file.optimizer_step;
    Ok(file.state)
}
