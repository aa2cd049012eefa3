//! Checkpoints of a training run: `best.safetensors` + `best.json` (the router chosen on
//! validation, what `route` and `report --checkpoint` load) and `last.safetensors` +
//! `last.json` (weights, AdamW state, log: what `--resume` continues).
//!
//! A pair (weights and sidecar) is written and read as one unit. The sidecar records the
//! weights' BLAKE3 hash and is written last, so it is the commit point:
//! 1. the new weights go to `<base>.partial.safetensors`;
//! 2. the old weights are moved to `<base>.prev.safetensors`, the new ones to `<base>.safetensors`;
//! 3. the sidecar (with the new hash) replaces the old one atomically;
//! 4. `<base>.prev.safetensors` is removed.
//!
//! A run killed anywhere in between leaves a sidecar whose hash matches either
//! `<base>.safetensors` or `<base>.prev.safetensors`, and the reader takes that one; a pair that
//! matches neither is refused. A failed save is failed work (exit 1), naming the path, and
//! leaves the previous pair in place; a checkpoint that cannot be read is bad input (exit 2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use routerdc::error::{Error, Result};
use routerdc::hf::tokenize::{TextTokenizer, TruncationSide};
use routerdc::hf::{EncoderConfig, EncoderFiles};
use routerdc::routing::Similarity;
use routerdc::stages::train::TrainConfig;
use routerdc::stages::train::log::TrainLog;

use super::optim::AdamW;
use crate::torch::model::router::Router;

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
    pub truncation: TruncationSide,
    pub similarity: Similarity,
    pub temperature: f64,
    pub settings: TrainConfig,
    pub step: usize,
    /// acc_predict per training table at that step, and their average.
    pub validation: Vec<(String, f64)>,
    pub validation_average: f64,
    pub test: Vec<(String, f64)>,
    /// BLAKE3 of `best.safetensors` (absent in checkpoints of routerdc 0.1 before it was kept).
    #[serde(default)]
    pub weights_blake3: Option<String>,
    /// BLAKE3 of the encoder's config, tokenizer and weights files, so that the encoder can be
    /// found again on another machine (by `settings.encoder`, when `encoder_dir` is not there)
    /// and a different one refused (absent in older checkpoints).
    #[serde(default)]
    pub encoder_blake3: Option<EncoderHashes>,
    /// Each LLM's mean cost per query on the training rows (tables with costs): what
    /// `route --cost-rate` charges.
    #[serde(default)]
    pub costs: Option<Vec<f64>>,
    /// With `--validation-ratio`: per training table, the query ids held out for validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<Vec<(String, Vec<String>)>>,
}

/// BLAKE3 of an encoder's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderHashes {
    pub config: String,
    pub tokenizer: String,
    pub weights: String,
}

impl EncoderHashes {
    pub fn of(files: &EncoderFiles) -> Result<EncoderHashes> {
        Ok(EncoderHashes {
            config: hash_file(&files.config)?,
            tokenizer: hash_file(&files.tokenizer)?,
            weights: hash_file(&files.weights)?,
        })
    }
}

/// The encoder of a checkpoint: its recorded folder when it is there, else the one its
/// `--encoder` names (the bundled default, a hub id in the HF cache, a path). With recorded
/// hashes, a config or tokenizer that differs is refused, and so are differing weights when the
/// router kept the encoder frozen (its query vectors are the encoder's own).
fn find_encoder(sidecar: &Sidecar, sidecar_path: &Path) -> Result<EncoderFiles> {
    let files = if sidecar.encoder_dir.is_dir() {
        EncoderFiles::in_dir(&sidecar.encoder_dir)?
    } else {
        routerdc::hf::resolve(sidecar.settings.encoder.as_deref())?
    };
    let Some(recorded) = &sidecar.encoder_blake3 else { return Ok(files) };
    let mut differs = Vec::new();
    if hash_file(&files.config)? != recorded.config {
        differs.push(files.config.display().to_string());
    }
    if hash_file(&files.tokenizer)? != recorded.tokenizer {
        differs.push(files.tokenizer.display().to_string());
    }
    if sidecar.settings.freeze_encoder && hash_file(&files.weights)? != recorded.weights {
        differs.push(files.weights.display().to_string());
    }
    if !differs.is_empty() {
        return Err(Error::bad_file(
            sidecar_path,
            format!(
                "the encoder found now (`{}`) is not the one the router was trained with: {} differ",
                files.dir.display(),
                differs.join(", ")
            ),
            "install the encoder the router was trained with (`settings.encoder` in this file), or train again",
            None,
        ));
    }
    Ok(files)
}

fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    routerdc::io::copy_into(path, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Write a pair as one unit (module docs): `save` writes the weights to the path it is given,
/// `sidecar` makes the sidecar's text from the weights' hash.
fn save_pair(
    base: &Path,
    save: impl FnOnce(&Path) -> Result<(), tch::TchError>,
    sidecar: impl FnOnce(String) -> Result<String>,
) -> Result<()> {
    let weights = base.with_extension("safetensors");
    let partial = base.with_extension("partial.safetensors");
    let previous = base.with_extension("prev.safetensors");
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| Error::Write { path: to.to_path_buf(), source })
    };
    save(&partial).map_err(|source| Error::failed(format!("Failed to save `{}`", weights.display()), source))?;
    let text = sidecar(hash_file(&partial)?)?;
    if weights.exists() {
        rename(&weights, &previous)?;
    }
    rename(&partial, &weights)?;
    routerdc::io::write_text(&text, &base.with_extension("json"))?;
    match std::fs::remove_file(&previous) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(Error::Write { path: previous, source }),
        _ => Ok(()),
    }
}

/// The weights file of a pair whose sidecar recorded `expected` (module docs): `<base>.safetensors`,
/// or after a save that was cut short, `<base>.prev.safetensors`.
fn weights_of_pair(weights: &Path, expected: Option<&str>, sidecar: &Path) -> Result<PathBuf> {
    let Some(expected) = expected else { return Ok(weights.to_path_buf()) };
    let previous = weights.with_extension("prev.safetensors");
    for candidate in [weights, previous.as_path()] {
        if candidate.is_file() && hash_file(candidate)? == expected {
            return Ok(candidate.to_path_buf());
        }
    }
    Err(Error::bad_file(
        weights,
        format!("these weights are not the ones `{}` was saved with", sidecar.display()),
        "the pair was torn apart (copied or edited separately); use a pair saved together, or train again",
        None,
    ))
}

/// `<base>.safetensors` and `<base>.json` as one unit.
pub fn save_best(store: &nn::VarStore, sidecar: &Sidecar, base: &Path) -> Result<()> {
    let json_path = base.with_extension("json");
    save_pair(
        base,
        |partial| store.save(partial),
        |hash| {
            let sidecar = Sidecar { weights_blake3: Some(hash), ..sidecar.clone() };
            serde_json::to_string_pretty(&sidecar).map_err(Error::serialize(json_path.display().to_string()))
        },
    )
}

/// A checkpoint's sidecar (`best.json`).
pub fn read_sidecar(path: &Path) -> Result<Sidecar> {
    serde_json::from_slice(&routerdc::io::read_bytes(path)?).map_err(|error| {
        Error::bad_file(
            path,
            "not a checkpoint's sidecar",
            "a checkpoint is `best.safetensors` with its `best.json`",
            Some(error.into()),
        )
    })
}

/// Copy the checkpoint pair `from` (`<from>.safetensors` + `<from>.json`) to `to`, written as a
/// checkpoint is saved (the pair is never half-written), its sidecar's weight hash checked.
pub fn copy_best(from: &Path, to: &Path) -> Result<()> {
    let sidecar_path = from.with_extension("json");
    let sidecar = read_sidecar(&sidecar_path)?;
    let weights =
        weights_of_pair(&from.with_extension("safetensors"), sidecar.weights_blake3.as_deref(), &sidecar_path)?;
    let json_path = to.with_extension("json");
    save_pair(
        to,
        |partial| std::fs::copy(&weights, partial).map(drop).map_err(tch::TchError::from),
        |hash| {
            let sidecar = Sidecar { weights_blake3: Some(hash), ..sidecar.clone() };
            serde_json::to_string_pretty(&sidecar).map_err(Error::serialize(json_path.display().to_string()))
        },
    )
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
    let mut sidecar = read_sidecar(&sidecar_path)?;
    let files = find_encoder(&sidecar, &sidecar_path)?;
    // Consumers (a frozen router's embedding cache) read the encoder from where it is now.
    sidecar.encoder_dir = files.dir.clone();
    let config = EncoderConfig::read(&files.config)?;
    let tokenizer = TextTokenizer::load(&files, sidecar.max_length, sidecar.truncation)?;
    let weights = weights_of_pair(checkpoint, sidecar.weights_blake3.as_deref(), &sidecar_path)?;
    let mut store = nn::VarStore::new(device);
    let router =
        Router::new(&store.root(), &config, sidecar.models.len() as i64, sidecar.similarity, sidecar.temperature);
    store.load(&weights).map_err(|error| {
        Error::bad_file(
            checkpoint,
            "cannot load the router's weights",
            "the checkpoint must come from `routerdc train` with the encoder named in its .json",
            Some(error.into()),
        )
    })?;
    check_finite(&store, checkpoint)?;
    Ok(LoadedRouter { pad: config.pad_token_id, sidecar, router, tokenizer, device, _store: store })
}

/// A router whose weights hold NaN or ±∞ would route every query to the first LLM: refuse it.
fn check_finite(store: &nn::VarStore, path: &Path) -> Result<()> {
    let mut variables: Vec<(String, Tensor)> = store.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tensor) in variables {
        let finite = tch::no_grad(|| tensor.isfinite().all()).int64_value(&[]) == 1;
        if !finite {
            return Err(Error::bad_file(
                path,
                format!("weight `{name}` holds NaN or infinite values"),
                "the training run that wrote it diverged or the file is damaged; train again (a lower --learning-rate)",
                None,
            ));
        }
    }
    Ok(())
}

impl LoadedRouter {
    /// Runs the encoder's Linear layers in `precision` from now on (int8: CPU inference only).
    pub fn quantize(&mut self, precision: routerdc::hf::Quantize) -> Result<()> {
        self.router.backbone.quantize_to(precision, self.device)
    }

    /// Per-LLM probabilities (softmax of the logits), `[n × T]` row-major.
    pub fn probabilities(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f64>>> {
        let ids = self.tokenizer.encode(texts)?;
        let h = self.router.encode_all(&ids, (batch_size, 0), self.pad, self.device);
        self.probabilities_of(&h)
    }

    /// Per-LLM probabilities of queries already encoded, h `[n × d]`.
    pub fn probabilities_of(&self, h: &Tensor) -> Result<Vec<Vec<f64>>> {
        let probs = tch::no_grad(|| self.router.logits(h).softmax(1, Kind::Double)).to_device(Device::Cpu);
        let t = self.sidecar.models.len();
        let flat = Vec::<f64>::try_from(&probs.contiguous().view(-1))
            .map_err(|source| Error::failed("Failed to read the routing probabilities back", source))?;
        Ok(flat.chunks(t.max(1)).map(<[f64]>::to_vec).collect())
    }
}

/// What `last.json` holds besides the tensors.
#[derive(Clone, Serialize, Deserialize)]
pub struct LastState {
    pub step: usize,
    pub best: Option<f64>,
    pub log: TrainLog,
}

#[derive(Serialize, Deserialize)]
struct LastFile {
    settings: TrainConfig,
    optimizer_step: i64,
    state: LastState,
    /// BLAKE3 of `last.safetensors`.
    #[serde(default)]
    weights_blake3: Option<String>,
}

pub fn save_last(config: &TrainConfig, store: &nn::VarStore, optimizer: &AdamW, state: &LastState) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = store.variables().into_iter().collect();
    tensors.extend(optimizer.state_tensors());
    let json_path = config.out.join("last.json");
    save_pair(
        &config.out.join("last"),
        |partial| Tensor::write_safetensors(&tensors, partial),
        |hash| {
            let file = LastFile {
                settings: config.clone(),
                optimizer_step: optimizer.step,
                state: state.clone(),
                weights_blake3: Some(hash),
            };
            serde_json::to_string(&file).map_err(Error::serialize(json_path.display().to_string()))
        },
    )
}

/// The settings of a run as `--resume` compares them: all but `--steps` (which may grow),
/// `--workers` (how the same work is shared out) and `--resume` itself. Runs saved before
/// `--llm-learning-rate` trained K at the learning rate, which is what they record.
fn comparable(settings: &TrainConfig, path: &Path) -> Result<serde_json::Value> {
    let mut settings = settings.clone();
    settings.llm_learning_rate = settings.llm_learning_rate.or(settings.learning_rate);
    settings.steps = 0;
    settings.workers = 0;
    settings.resume = false;
    serde_json::to_value(settings).map_err(Error::serialize(format!("the settings of `{}`", path.display())))
}

pub fn load_last(config: &TrainConfig, store: &mut nn::VarStore, optimizer: &mut AdamW) -> Result<LastState> {
    let json_path = config.out.join("last.json");
    let hint = "`--resume` continues a run in the same `--out` folder; start without it to train anew";
    let file: LastFile = serde_json::from_slice(&routerdc::io::read_bytes(&json_path)?)
        .map_err(|error| Error::bad_file(&json_path, "not a resume state", hint, Some(error.into())))?;
    if comparable(&file.settings, &json_path)? != comparable(config, &json_path)? {
        return Err(Error::setting(
            "resume",
            format!(
                "the settings differ from those of the run saved in `{}` (only --steps may change)",
                json_path.display()
            ),
        ));
    }
    let path = weights_of_pair(&config.out.join("last.safetensors"), file.weights_blake3.as_deref(), &json_path)?;
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|error| Error::bad_file(&path, "unreadable weights", hint, Some(error.into())))?
        .into_iter()
        .collect();
    let missing = |name: &str| Error::bad_file(&path, format!("lacks `{name}`"), hint, None);
    tch::no_grad(|| -> Result<()> {
        for (name, mut variable) in store.variables() {
            variable.copy_(saved.get(&name).ok_or_else(|| missing(&name))?);
        }
        optimizer.load_state(|name| saved.get(name).ok_or_else(|| missing(name)))
    })?;
    optimizer.step = file.optimizer_step;
    Ok(file.state)
}
