//! import: RouterDC JSON datasets (`{question, scores, cluster_id?}` records) → scored tables.
//!
//! One table per file, named after the file stem; the metric kind comes from `--kind` or from
//! the dataset family (`MetricKind::for_dataset`). Every input is parsed and checked before the
//! first table is written, so a bad file leaves the output folder as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{self, routerdc_json};
use crate::table::{MetricKind, ScoredTable};

/// `NAME=KIND`: the metric kind of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOverride {
    pub dataset: String,
    pub kind: MetricKind,
}

impl std::str::FromStr for KindOverride {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (dataset, kind) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not NAME=KIND"))?;
        Ok(KindOverride { dataset: dataset.to_owned(), kind: kind.parse()? })
    }
}

impl From<KindOverride> for String {
    fn from(value: KindOverride) -> String {
        format!("{}={}", value.dataset, value.kind)
    }
}

/// Settings of `routerdc import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportConfig {
    /// Folder for the scored tables, one `<dataset>.parquet` per input file.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The metric kind of a dataset, `NAME=probability|multi_attempt` (repeatable); by default
    /// it comes from the name (mmlu, cmmlu, arc, MATH, ceval → probability; gsm8k, humaneval,
    /// mbpp → multi_attempt).
    #[arg(long = "kind", value_name = "NAME=KIND")]
    pub kinds: Vec<KindOverride>,
    /// The split of files whose name carries no `_train`/`_test` suffix (the paper's
    /// out-of-distribution sets, `MATH_prealgebra.json`, `mbpp.json`, are test sets). Default: none.
    #[arg(long, value_enum, value_name = "SPLIT")]
    pub default_split: Option<crate::table::Split>,
    /// RouterDC JSON files, or folders whose `*.json` files are all imported.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
}

/// One imported file.
#[derive(Debug)]
pub struct Imported {
    pub source: PathBuf,
    pub table: ScoredTable,
    pub ignored_fields: BTreeMap<String, usize>,
}

/// The JSON files named by `inputs` (folders expanded to their `*.json`, sorted).
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|source| Error::Read { path: input.clone(), source })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json") && path.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::setting("inputs", format!("folder `{}` holds no `*.json` files", input.display())));
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// The dataset name of a file: its stem.
pub fn dataset_name(path: &Path) -> Result<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::setting("inputs", format!("cannot take a dataset name from `{}`", path.display())))
}

/// Parse and check every file of `files` (the inputs as [`input_files`] lists them); nothing is
/// written.
pub fn read_all(config: &ImportConfig, files: &[PathBuf], mut on_file: impl FnMut(&Path)) -> Result<Vec<Imported>> {
    let mut imported: Vec<Imported> = Vec::with_capacity(files.len());
    for path in files {
        on_file(path);
        let dataset = dataset_name(path)?;
        if let Some(other) = imported.iter().find(|done| done.table.dataset == dataset) {
            return Err(Error::setting(
                "inputs",
                format!("`{}` and `{}` would both become table `{dataset}`", other.source.display(), path.display()),
            ));
        }
        let kind = config
            .kinds
            .iter()
            .find(|over| over.dataset == dataset)
            .map(|over| over.kind)
            .or_else(|| MetricKind::for_dataset(&dataset))
            .ok_or_else(|| Error::UnknownKind { dataset: dataset.clone() })?;
        let mut read = routerdc_json::read(path, &dataset, kind)?;
        if crate::table::Split::from_dataset_name(&dataset).is_none() {
            read.table.splits.fill(config.default_split);
        }
        imported.push(Imported { source: path.clone(), table: read.table, ignored_fields: read.ignored_fields });
    }
    for over in &config.kinds {
        if !imported.iter().any(|done| done.table.dataset == over.dataset) {
            return Err(Error::setting("kind", format!("no input file is dataset `{}`", over.dataset)));
        }
    }
    Ok(imported)
}

/// Import every input and write its table; returns the tables with the paths written.
pub fn run(config: &ImportConfig, files: &[PathBuf], on_file: impl FnMut(&Path)) -> Result<Vec<(Imported, PathBuf)>> {
    let imported = read_all(config, files, on_file)?;
    let paths = io::write_tables(imported.iter().map(|done| &done.table), &config.out)?;
    Ok(imported.into_iter().zip(paths).collect())
}

/// Settings of `routerdc export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportConfig {
    /// Folder of scored tables (`*.parquet`).
    #[arg(long, value_name = "DIR")]
    pub tables: PathBuf,
    /// Folder for the RouterDC JSON files, one `<dataset>.json` per table.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Write every table of `config.tables` as RouterDC JSON; returns the paths written.
///
/// The JSON format has no costs: tables with costs lose them (the caller is told through
/// `on_dropped_costs`).
pub fn export(config: &ExportConfig, mut on_dropped_costs: impl FnMut(&str)) -> Result<Vec<PathBuf>> {
    let tables = io::read_tables(&config.tables)?;
    let outputs = io::Outputs::new(&config.out)?;
    let mut written = Vec::with_capacity(tables.len());
    for loaded in &tables {
        if loaded.table.costs.is_some() {
            on_dropped_costs(&loaded.table.dataset);
        }
        let path = io::named_file(outputs.dir(), &loaded.table.dataset, ".json")?;
        io::write_text(&routerdc_json::to_json(&loaded.table), &path)?;
        written.push(outputs.final_path(&path));
    }
    outputs.commit()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_overrides_parse_and_print() {
        let over: KindOverride = "squad=multi_attempt".parse().unwrap();
        assert_eq!(over, KindOverride { dataset: "squad".into(), kind: MetricKind::MultiAttempt });
        assert_eq!(String::from(over), "squad=multi_attempt");
        assert!("squad".parse::<KindOverride>().is_err());
        assert!("squad=accuracy".parse::<KindOverride>().unwrap_err().contains("unknown metric kind"));
    }
}
