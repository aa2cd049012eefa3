//! `routerdc tune` on the libtorch side: each trial is a `train` run into `<out>/trial-NNN`;
//! the library expands the grid, picks the winner on validation and builds `trials.parquet`.

use std::time::Instant;

use routerdc::error::{Error, Result};
use routerdc::stages::train::{RouterKind, TrainConfig};
use routerdc::stages::tune::{self, Outcome, TuneConfig};

use super::train::checkpoint::{copy_best, read_sidecar};

pub fn run_tune(config: &TuneConfig, quiet: bool) -> Result<()> {
    if config.train.router != RouterKind::Routerdc {
        return Err(Error::setting("router", "`tune` searches RouterDC's settings; train other kinds with `train`"));
    }
    if config.train.resume {
        return Err(Error::setting("resume", "a search is not resumed: run `tune` again into a new `--out`"));
    }
    // Chosen on rows no trial trains on, unless the ratio is given.
    let base =
        TrainConfig { validation_ratio: Some(config.train.validation_ratio.unwrap_or(0.1)), ..config.train.clone() };
    let out = &base.out;
    std::fs::create_dir_all(out).map_err(|source| Error::Write { path: out.clone(), source })?;
    let trials = config.trials();
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(trials.len());
    for (index, trial) in trials.iter().enumerate() {
        let dir = out.join(format!("trial-{:03}", index + 1));
        let trial_started = Instant::now();
        super::train::run_train(&trial.apply(&base, dir.clone()), quiet)?;
        let sidecar = read_sidecar(&dir.join("best.json"))?;
        let test_average = if sidecar.test.is_empty() {
            f64::NAN
        } else {
            sidecar.test.iter().map(|(_, value)| value).sum::<f64>() / sidecar.test.len() as f64
        };
        let outcome = Outcome {
            step: sidecar.step,
            validation_average: sidecar.validation_average,
            test_average,
            seconds: trial_started.elapsed().as_secs_f64(),
        };
        if !quiet {
            eprintln!(
                "trial {}/{}: learning rate {} (LLM embeddings {}), τ {}, cluster weight {}, task weight {}, top_k {}, last_k {}: \
                 validation {:.4} at step {} ({:.1} s)",
                index + 1,
                trials.len(),
                trial.learning_rate,
                trial.llm_learning_rate(),
                trial.temperature,
                trial.cluster_weight,
                trial.task_weight,
                trial.top_k,
                trial.last_k,
                outcome.validation_average,
                outcome.step,
                outcome.seconds
            );
        }
        outcomes.push(outcome);
    }
    let trials_path = out.join("trials.parquet");
    routerdc::io::write_parquet(&mut tune::trials_frame(&trials, &outcomes)?, &trials_path)?;
    let best = tune::winner(&outcomes).ok_or_else(|| Error::setting("try", "the grid has no trial"))?;
    copy_best(&out.join(format!("trial-{:03}", best + 1)).join("best"), &out.join("best"))?;
    if !quiet {
        eprintln!(
            "tried {} settings in {:.1} s; chosen on validation: trial {} (validation {:.4}, test average {:.4}); \
             kept as {}; every trial in {}",
            trials.len(),
            started.elapsed().as_secs_f64(),
            best + 1,
            outcomes[best].validation_average,
            outcomes[best].test_average,
            out.join("best.safetensors").display(),
            trials_path.display()
        );
    }
    Ok(())
}
