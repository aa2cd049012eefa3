//! The training loop of `routerdc train`: AdamW is in [`optim`], checkpoints in [`checkpoint`],
//! the data plan and the log in the library (`routerdc::stages::train`).
//!
//! Data: every training query is tokenised once; each step takes the next `batch_size`
//! examples of the shuffled epoch (tables cycled to `samples_per_table` queries) and encodes
//! them in passes of similar lengths, on the CPU shared out between workers ([`passes`]).
//! Evaluation routes every query of the validation
//! tables (the rows `--validation-ratio` holds out of the training tables, else the training
//! tables themselves) and of the test tables, or `--eval-sample`'s rows of the validation tables
//! alone (the test tables then once, at the end); the checkpoint with the best validation
//! average is kept as `best.safetensors` + `best.json` (never chosen by test scores).

// `loss = loss + term` on purpose: tch's `+=` adds in place, into the tensor that `llm_loss`
// shares, whose value is logged on its own.
#![allow(clippy::assign_op_pattern)]

pub mod checkpoint;
pub mod knn;
pub mod mlp;
pub mod optim;
pub mod passes;

use std::time::Instant;

use tch::{Tensor, nn};

use routerdc::error::{Error, Result};
use routerdc::hf::tokenize::TextTokenizer;
use routerdc::hf::{self, EncoderConfig};
use routerdc::routing;
use routerdc::stages::embed as stage_embed;
use routerdc::stages::train::log::{TableScores, TrainLog, average};
use routerdc::stages::train::plan::{Example, Plan, examples};
use routerdc::stages::train::{self, TrainConfig};
use routerdc::table::LoadedTable;

use self::checkpoint::{LastState, Sidecar, load_last, save_best, save_last};
use self::optim::AdamW;
use self::passes::StepEncoder;
use super::embed;
use crate::torch::model::layers::set_bf16;
use crate::torch::model::network::load_weights;
use crate::torch::model::router::{LLM_EMBEDDINGS, Router, orthogonality_loss, sample_llm_loss, sample_sample_loss};

/// One evaluation: per table (dataset, acc, acc_predict).
struct Evaluation {
    validation: TableScores,
    test: TableScores,
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

struct Data {
    tables: Vec<LoadedTable>,
    ids: Vec<Vec<Vec<u32>>>,
    /// Precomputed h per table when the encoder is frozen.
    frozen: Option<Vec<Tensor>>,
}

impl Data {
    /// `--eval-sample`'s rows of these tables (seeded), or `None` for all of them.
    fn sample(&self, n: usize, seed: u64) -> Option<Data> {
        let rows: Vec<usize> = self.tables.iter().map(|loaded| loaded.table.n_queries()).collect();
        let keep = train::plan::eval_sample(&rows, n, seed)?;
        // The kept row numbers of each table.
        let kept: Vec<Vec<i64>> =
            keep.iter().map(|mask| (0..mask.len()).filter(|&r| mask[r]).map(|r| r as i64).collect()).collect();
        Some(Data {
            tables: self
                .tables
                .iter()
                .zip(&keep)
                .map(|(loaded, mask)| LoadedTable {
                    path: loaded.path.clone(),
                    table: loaded.table.select_rows(|row| mask[row]),
                })
                .collect(),
            ids: self
                .ids
                .iter()
                .zip(&kept)
                .map(|(ids, rows)| rows.iter().map(|&r| ids[r as usize].clone()).collect())
                .collect(),
            frozen: self.frozen.as_ref().map(|all| {
                all.iter()
                    .zip(&kept)
                    .map(|(h, rows)| h.index_select(0, &Tensor::from_slice(rows).to(h.device())))
                    .collect()
            }),
        })
    }
}

pub fn run_train(config: &TrainConfig, quiet: bool) -> Result<()> {
    // The kind's default learning rates, written out: best.json and last.json record the values.
    let routerdc = config.router == train::RouterKind::Routerdc;
    let config = &TrainConfig {
        learning_rate: Some(config.learning_rate()),
        llm_learning_rate: config.llm_learning_rate.or(routerdc.then(|| config.learning_rate())),
        validation_ratio: Some(config.validation_ratio()),
        ..config.clone()
    };
    train::check_validation_ratio(config)?;
    if !routerdc {
        return knn::run(config, quiet);
    }
    let (train_tables, test_tables) = train::load_tables(config)?;
    train::check(config, &train_tables, &test_tables)?;
    // `--validation-ratio`: each training table split into the rows trained on and the rows held
    // out to choose the step on (validation tables of the same names).
    let rows: Vec<usize> = train_tables.iter().map(|loaded| loaded.table.n_queries()).collect();
    let (train_tables, held_out_tables) = match train::plan::holdout(&rows, config.validation_ratio(), config.seed) {
        None => (train_tables, None),
        Some(held) => {
            // The rows with `held[row] == held_out`; a table too small to give up a row has no
            // validation part.
            let part = |held_out: bool| -> Vec<LoadedTable> {
                train_tables
                    .iter()
                    .zip(&held)
                    .map(|(loaded, held)| LoadedTable {
                        path: loaded.path.clone(),
                        table: loaded.table.select_rows(|row| held[row] == held_out),
                    })
                    .filter(|loaded| !held_out || loaded.table.n_queries() > 0)
                    .collect()
            };
            (part(false), Some(part(true)))
        }
    };
    for loaded in train_tables.iter().chain(&test_tables) {
        stage_embed::check_texts(loaded)?;
    }
    let models = train_tables[0].table.models.clone();
    let files = hf::resolve(config.encoder.as_deref())?;
    let encoder_hashes = checkpoint::EncoderHashes::of(&files)?;
    let costs = routing::expected_costs(&train_tables);
    let encoder_config = EncoderConfig::read(&files.config)?;
    // `best.json` keeps the encoder's config.json as it is (read and checked just above).
    let encoder_json: serde_json::Value =
        serde_json::from_slice(&routerdc::io::read_bytes(&files.config)?).map_err(|error| {
            Error::encoder_from(&files.config, "config.json is not JSON", "re-download the encoder", error)
        })?;
    let device = embed::device(config.device)?;
    let max_length = config.max_length.min(encoder_config.max_position_embeddings as usize);
    let tokenizer = TextTokenizer::load(&files, max_length, config.truncation)?;
    std::fs::create_dir_all(&config.out).map_err(|source| Error::Write { path: config.out.clone(), source })?;

    tch::manual_seed(config.seed as i64);
    passes::keep_freed_memory();
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
    let mut optimizer = AdamW::new(&store, config.learning_rate(), config.weight_decay);
    if let Some(rate) = config.llm_learning_rate {
        let found = optimizer.set_learning_rate(LLM_EMBEDDINGS, rate);
        assert!(found, "the router has no trainable `{LLM_EMBEDDINGS}`");
    }

    // A frozen encoder's vectors are `embed`'s (first token, same length and truncation): they
    // come from the embedding cache and its parallel workers.
    let embed_options = embed::frozen_options(
        config.encoder.clone(),
        config.max_length,
        config.truncation,
        config.batch_size,
        config.device,
    );
    let started = Instant::now();
    // One pass over the training and test tables together: the encoder is loaded once.
    let mut frozen = if config.freeze_encoder {
        let tables: Vec<LoadedTable> =
            train_tables.iter().chain(held_out_tables.iter().flatten()).chain(&test_tables).cloned().collect();
        let (vectors, dim, _, _) = embed::embed_tables(&tables, &embed_options, quiet)?;
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
    let held_out_data = held_out_tables.map(&mut prepare).transpose()?;
    let test_data = prepare(test_tables)?;
    // Validation: the held-out rows, or the training rows themselves.
    let validation_data = held_out_data.as_ref().unwrap_or(&train_data);
    let held_out: Option<Vec<(String, Vec<String>)>> = held_out_data.as_ref().map(|data| {
        data.tables.iter().map(|loaded| (loaded.table.dataset.clone(), loaded.table.query_ids.clone())).collect()
    });
    // What the evaluations during the run route: the full sets, or `--eval-sample`'s rows of the
    // validation tables alone (the step is chosen on them; the test tables are routed once, for
    // the chosen checkpoint, at the end).
    let validation_sample = validation_data.sample(config.eval_sample, config.seed);
    let validation_eval = validation_sample.as_ref().unwrap_or(validation_data);
    // After the frozen vectors (float32, shared with `embed`'s cache) are made.
    set_bf16(config.bf16);
    if !quiet && config.freeze_encoder {
        eprintln!("encoded the queries once (frozen encoder) in {:.1} s", started.elapsed().as_secs_f64());
    }

    let examples = examples(&train_data.tables, config.samples_per_table, config.cost_rate);
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
    let mut step_time = 0.0;
    let mut eval_time = 0.0;
    // The encoder's workers (none for a frozen encoder, whose h are computed already, and none
    // on a GPU) live as long as the loop and the final evaluation.
    let workers =
        if config.freeze_encoder || device != tch::Device::Cpu { (0, 1) } else { embed::cpu_workers(config.workers) };
    std::thread::scope(|scope| -> Result<()> {
        let encoder = StepEncoder::start(scope, &router, (pad, device, config.batch_tokens), workers);
        let evaluate = |data: &Data| -> Result<TableScores> {
            // Every table's queries in one go (passes of similar lengths across tables), then h
            // split back per table.
            let h: Vec<Tensor> = match &data.frozen {
                Some(h) => h.iter().map(Tensor::shallow_clone).collect(),
                None => {
                    let ids: Vec<Vec<u32>> = data.ids.iter().flatten().cloned().collect();
                    let rows: Vec<i64> = data.ids.iter().map(|ids| ids.len() as i64).collect();
                    encoder.encode_all(&ids, config.batch_size)?.split_with_sizes(&rows, 0)
                }
            };
            data.tables
                .iter()
                .zip(&h)
                .map(|(loaded, h)| {
                    let choices = router.choose(h).map_err(|source| {
                        Error::failed(format!("Failed to route `{}`", loaded.path.display()), source)
                    })?;
                    let (acc, acc_predict) = routing::evaluate(&loaded.table, &choices, config.cost_rate);
                    Ok((loaded.table.dataset.clone(), acc, acc_predict))
                })
                .collect()
        };

        let bar = routerdc::progress::steps_bar(config.steps as u64, quiet);
        // Without a terminal the bar draws nothing: a line every 30 s instead.
        let mut log_lines = routerdc::progress::LogLines::new(quiet, std::time::Duration::from_secs(30));
        bar.set_position(first_step as u64 - 1);
        let (top_k, last_k, negatives) = (config.top_k as i64, config.last_k as i64, config.negatives as i64);
        // The sidecar of the best checkpoint this run saved (for the full evaluation after a sample).
        let mut best_sidecar: Option<Sidecar> = None;
        let checkpoint_steps =
            if config.checkpoint_steps == 0 { config.eval_steps.max(1) } else { config.checkpoint_steps };
        for step in first_step..=config.steps {
            let step_started = Instant::now();
            // Dropout draws depend on the step and the pass alone (`passes`), so a resumed run draws
            // what the uninterrupted one did.
            let step_seed = config.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
            tch::manual_seed(step_seed as i64);
            let train::plan::Batch { rows, cluster_pairs, task_pairs } = plan.next(config, &examples);
            let batch: Vec<&Example> = rows.iter().map(|&i| &examples[i]).collect();

            let h = match &train_data.frozen {
                Some(h) => {
                    let rows: Vec<Tensor> = batch.iter().map(|e| h[e.table].get(e.row as i64)).collect();
                    Tensor::stack(&rows, 0)
                }
                None => {
                    let ids: Vec<&[u32]> = batch.iter().map(|e| train_data.ids[e.table][e.row].as_slice()).collect();
                    encoder.forward(&ids, step_seed)?
                }
            };
            let logits = router.logits(&h);
            let targets: Vec<&[f64]> = batch.iter().map(|e| e.targets.as_slice()).collect();
            let llm_loss =
                sample_llm_loss(&logits, &routing::choose_llms(&targets, config.top_k, config.last_k), top_k, last_k);
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
            encoder.backward()?;
            optimizer.step();
            let total = loss.double_value(&[]);
            // The first step pays one-off costs (allocations, kernel set-up); time the others.
            if step > 1 {
                step_time += step_started.elapsed().as_secs_f64();
            }
            bar.set_message(format!("loss {total:.4}"));
            bar.inc(1);
            log_lines.tick(step == config.steps, || {
                let elapsed = started.elapsed().as_secs_f64();
                let done = (step + 1 - first_step) as f64;
                let left = (config.steps - step) as f64 * elapsed / done.max(1.0);
                format!(
                    "train: step {step}/{}, loss {total:.4}, {elapsed:.0} s so far, about {left:.0} s left",
                    config.steps
                )
            });
            log.losses.push((step, total, llm_loss.double_value(&[]), cluster_loss, task_loss, orth_loss));
            log.step_seconds.push(started.elapsed().as_secs_f64());

            if step % config.eval_steps.max(1) == 0 || step == config.steps {
                let evaluation_started = Instant::now();
                let test = if validation_sample.is_some() { Vec::new() } else { evaluate(&test_data)? };
                let evaluation = Evaluation { validation: evaluate(validation_eval)?, test };
                let evaluation_seconds = evaluation_started.elapsed().as_secs_f64();
                eval_time += evaluation_seconds;
                let validation_average = average(&evaluation.validation);
                log.evaluations.push((
                    step,
                    started.elapsed().as_secs_f64(),
                    evaluation.validation.clone(),
                    evaluation.test.clone(),
                ));
                log.evaluation_seconds.push((step, evaluation_seconds));
                let line = match validation_sample {
                    Some(_) => format!(
                        "step {step}: loss {total:.4}, validation acc_predict {validation_average:.4} \
                         ({evaluation_seconds:.1} s on the evaluation sample)"
                    ),
                    None => format!(
                        "step {step}: loss {total:.4}, validation acc_predict {validation_average:.4}, test {:.4} \
                         ({evaluation_seconds:.1} s)",
                        average(&evaluation.test)
                    ),
                };
                if !quiet {
                    bar.println(&line);
                }
                log_lines.say(&line);
                if best.is_none_or(|best| validation_average > best) {
                    best = Some(validation_average);
                    let sidecar = Sidecar {
                        routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
                        models: models.clone(),
                        encoder_dir: std::fs::canonicalize(&files.dir).unwrap_or_else(|_| files.dir.clone()),
                        encoder_config: encoder_json.clone(),
                        max_length,
                        truncation: config.truncation,
                        similarity: config.similarity,
                        temperature: config.temperature,
                        settings: config.clone(),
                        step,
                        validation: evaluation.validation.iter().map(|r| (r.0.clone(), r.2)).collect(),
                        validation_average,
                        test: evaluation.test.iter().map(|r| (r.0.clone(), r.2)).collect(),
                        weights_blake3: None,
                        encoder_blake3: Some(encoder_hashes.clone()),
                        costs: costs.clone(),
                        held_out: held_out.clone(),
                    };
                    save_best(&store, &sidecar, &config.out.join("best"))?;
                    best_sidecar = Some(sidecar);
                }
            }
            if step % checkpoint_steps == 0 || step == config.steps {
                save_last(config, &store, &optimizer, &LastState { step, best, log: log.clone() })?;
            }
        }
        bar.finish_and_clear();
        // Chosen on the sample; measured on the full sets. A resumed run may have saved its best
        // checkpoint before the interruption: its sidecar is read back.
        let best_sidecar = best_sidecar.or_else(|| checkpoint::read_sidecar(&config.out.join("best.json")).ok());
        if validation_sample.is_some()
            && let Some(sidecar) = best_sidecar
        {
            let evaluation_started = Instant::now();
            let best_path = config.out.join("best.safetensors");
            store.load(&best_path).map_err(|source| Error::failed("Failed to reload the best checkpoint", source))?;
            let evaluation = Evaluation { validation: evaluate(validation_data)?, test: evaluate(&test_data)? };
            let sidecar = Sidecar {
                validation: evaluation.validation.iter().map(|r| (r.0.clone(), r.2)).collect(),
                validation_average: average(&evaluation.validation),
                test: evaluation.test.iter().map(|r| (r.0.clone(), r.2)).collect(),
                ..sidecar
            };
            save_best(&store, &sidecar, &config.out.join("best"))?;
            let seconds = evaluation_started.elapsed().as_secs_f64();
            eval_time += seconds;
            let line = format!(
                "step {} (best on the evaluation sample), full sets: validation acc_predict {:.4}, test {:.4} ({seconds:.1} s)",
                sidecar.step,
                sidecar.validation_average,
                average(&evaluation.test)
            );
            if !quiet {
                eprintln!("{line}");
            }
            best = Some(sidecar.validation_average);
        }
        Ok(())
    })?;
    let log_path = config.out.join("train_log.parquet");
    routerdc::io::write_parquet(&mut log.frame()?, &log_path)?;
    if !quiet {
        let per_step = if config.steps > 1 { step_time / (config.steps - 1) as f64 } else { f64::NAN };
        eprintln!(
            "trained {} steps in {:.1} s ({per_step:.3} s/step after the first; evaluations {eval_time:.1} s of it); \
             best validation acc_predict {:.4}{}; wrote {} and {}",
            config.steps,
            started.elapsed().as_secs_f64(),
            best.unwrap_or(f64::NAN),
            if validation_sample.is_some() { " (full sets)" } else { "" },
            config.out.join("best.safetensors").display(),
            log_path.display()
        );
    }
    Ok(())
}
