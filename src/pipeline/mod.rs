//! Pipeline files (`pipelines/*.toml`): a whole run declared once, one table per stage.
//!
//! A stage's keys are its command-line flags (`batch-size = 32` is `--batch-size 32`), so one
//! settings type, the stage's clap `Args`, serves both: a table is turned into the arguments the
//! command line would carry and parsed by the same parser, defaults and checks included. The
//! folders that chain the stages (`out`, `tables`, `train`, `test`, `checkpoint`) are filled in
//! by [`run`] from `outputs/<pipeline>/<stage>/`.

pub mod run;
mod values;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgAction;

use self::values::{argument_values, choose_encoder, typed};
use crate::error::{Error, Result};

/// The stages a pipeline may declare, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Ingest,
    Convert,
    Import,
    Cluster,
    Train,
    Calibrate,
    Report,
}

impl StageKind {
    pub const ALL: [StageKind; 7] = [
        StageKind::Ingest,
        StageKind::Convert,
        StageKind::Import,
        StageKind::Cluster,
        StageKind::Train,
        StageKind::Calibrate,
        StageKind::Report,
    ];

    /// The subcommand, and the table's name in a pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingest",
            StageKind::Convert => "convert",
            StageKind::Import => "import",
            StageKind::Cluster => "cluster",
            StageKind::Train => "train",
            StageKind::Calibrate => "calibrate",
            StageKind::Report => "report",
        }
    }

    /// Stages that make the scored tables from raw files.
    pub fn is_source(self) -> bool {
        matches!(self, StageKind::Ingest | StageKind::Convert | StageKind::Import)
    }

    /// The flags `routerdc run` sets itself to chain the stages.
    fn wired(self) -> &'static [&'static str] {
        match self {
            StageKind::Ingest | StageKind::Convert | StageKind::Import => &["out"],
            StageKind::Cluster => &["tables", "out"],
            StageKind::Train => &["train", "test", "out"],
            StageKind::Calibrate => &["router", "tables", "out"],
            StageKind::Report => &["tables", "checkpoint", "calibration", "out"],
        }
    }

    /// The stage's command-line parser, built from the stage's own settings type (the same
    /// `clap::Args` that `routerdc <stage>` parses).
    pub fn command(self) -> clap::Command {
        use crate::stages::{calibrate, cluster, convert, import, ingest, report, train};
        use clap::Args;
        let command = clap::Command::new(self.name());
        match self {
            StageKind::Ingest => ingest::IngestConfig::augment_args(command),
            StageKind::Convert => convert::ConvertConfig::augment_args(command),
            StageKind::Import => import::ImportConfig::augment_args(command),
            StageKind::Cluster => cluster::ClusterConfig::augment_args(command),
            StageKind::Train => train::TrainConfig::augment_args(command),
            StageKind::Calibrate => calibrate::CalibrateConfig::augment_args(command),
            StageKind::Report => report::ReportConfig::augment_args(command),
        }
    }

    fn from_name(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One stage of a loaded pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Stage {
    pub kind: StageKind,
    /// The `name` of one of several `[[train]]` stages; `None` for a stage declared once.
    pub name: Option<String>,
    /// `outputs/<pipeline>/<stage>/` (`train-<name>/` for a named train stage).
    pub dir: PathBuf,
    /// The arguments after the subcommand, as the command line would carry them.
    pub args: Vec<OsString>,
    /// Every setting after parsing, defaults included, keyed by flag: `config.toml` beside the outputs.
    pub resolved: toml::Table,
    /// Files and folders the stage reads (its inputs, the encoder, the previous stage's outputs).
    pub inputs: Vec<PathBuf>,
    /// Things the user should know about how the file was read (an encoder fallback, ...).
    pub notices: Vec<String>,
}

/// A pipeline file, read and checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    /// `outputs/<name>/`.
    pub dir: PathBuf,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    pub fn stage(&self, kind: StageKind) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.kind == kind)
    }
}

impl Stage {
    /// How messages name the stage: `train`, or `train.<name>` for one of several.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{}.{name}", self.kind.name()),
            None => self.kind.name().to_owned(),
        }
    }
}

/// `STAGE.KEY=VALUE` from `routerdc run --set`: VALUE is read as a TOML value (`20`, `true`,
/// `0.5`, `["a", "b"]`), else taken as a string.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub stage: String,
    pub key: String,
    pub value: toml::Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(spec: &str) -> std::result::Result<Self, Self::Err> {
        let (path, value) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not STAGE.KEY=VALUE"))?;
        let (stage, key) =
            path.split_once('.').ok_or_else(|| format!("`{path}` is not STAGE.KEY (e.g. train.steps)"))?;
        let value = toml::from_str::<toml::Table>(&format!("value = {value}"))
            .ok()
            .and_then(|mut table| table.remove("value"))
            .unwrap_or_else(|| toml::Value::String(value.to_owned()));
        Ok(Override { stage: stage.trim().to_owned(), key: key.trim().to_owned(), value })
    }
}

fn pipeline_error(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Pipeline { path: file.to_path_buf(), message: message.into(), hint: hint.into() }
}

/// Read `file`, apply `overrides`, and turn every stage table into checked arguments whose
/// outputs go under `outputs/<name>/`.
pub fn load(file: &Path, outputs: &Path, overrides: &[Override]) -> Result<Pipeline> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Read { path: file.to_path_buf(), source })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|error| {
        pipeline_error(file, error.to_string().trim_end(), "a pipeline file is TOML: see pipelines/README.md")
    })?;
    for over in overrides {
        if StageKind::from_name(&over.stage).is_none() {
            return Err(pipeline_error(
                file,
                format!("`--set {}.{}`: there is no stage `{}`", over.stage, over.key, over.stage),
                format!("stages are {}", stage_names()),
            ));
        }
        let stage = match table.get_mut(&over.stage) {
            Some(toml::Value::Table(stage)) => stage,
            // Several `[[train]]` stages: `--set train.<name>.<key>=...` sets one of them,
            // `--set train.<key>=...` every one.
            Some(toml::Value::Array(stages)) => {
                let named =
                    |stage: &toml::Value, name: &str| stage.get("name").and_then(toml::Value::as_str) == Some(name);
                let (target, key) = match over.key.split_once('.') {
                    Some((name, key)) if stages.iter().any(|stage| named(stage, name)) => (Some(name), key),
                    _ => (None, over.key.as_str()),
                };
                for stage in stages.iter_mut() {
                    if let toml::Value::Table(table) = stage
                        && target.is_none_or(|name| table.get("name").and_then(toml::Value::as_str) == Some(name))
                    {
                        table.insert(key.to_owned(), over.value.clone());
                    }
                }
                continue;
            }
            _ => {
                return Err(pipeline_error(
                    file,
                    format!("`--set {}.{}`: the file declares no [{}] stage", over.stage, over.key, over.stage),
                    "add the stage to the file, or set a key of a stage it has",
                ));
            }
        };
        stage.insert(over.key.clone(), over.value.clone());
    }

    let mut name = file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let mut description = None;
    let mut declared: Vec<(StageKind, Option<String>, toml::Table)> = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("name", toml::Value::String(value)) => name = value,
            ("description", toml::Value::String(value)) => description = Some(value),
            (key, toml::Value::Table(stage)) if StageKind::from_name(key).is_some() => {
                declared.push((StageKind::from_name(key).expect("checked"), None, stage));
            }
            (key @ ("train" | "calibrate"), toml::Value::Array(stages)) => {
                let kind = StageKind::from_name(key).expect("a stage");
                for (name, stage) in named_stages(file, key, stages)? {
                    declared.push((kind, Some(name), stage));
                }
            }
            (key, _) if StageKind::from_name(key).is_some() || key == "name" || key == "description" => {
                return Err(pipeline_error(
                    file,
                    format!("`{key}` has the wrong type"),
                    "`name` and `description` are strings; each stage is a table, `[ingest]`, `[train]`, ... \
                     (several train stages: `[[train]]` tables, each with a `name`)",
                ));
            }
            (key, _) => {
                return Err(pipeline_error(
                    file,
                    format!("unknown key `{key}`"),
                    format!("the top level holds `name`, `description` and the stage tables {}", stage_names()),
                ));
            }
        }
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        return Err(pipeline_error(
            file,
            format!("pipeline name `{name}` cannot name a folder"),
            "use letters, digits, `-`, `_` and `.`",
        ));
    }
    // Stable: several train stages keep the file's order.
    declared.sort_by_key(|(kind, _, _)| *kind);
    let sources: Vec<&str> =
        declared.iter().filter(|(kind, _, _)| kind.is_source()).map(|(kind, _, _)| kind.name()).collect();
    if sources.len() != 1 {
        return Err(pipeline_error(
            file,
            if sources.is_empty() {
                "no stage makes the tables".to_owned()
            } else {
                format!("several stages make the tables: {}", sources.join(", "))
            },
            "declare exactly one of [ingest] (harness outputs), [convert] (RouterBench) or [import] (RouterDC JSON)",
        ));
    }

    let dir = outputs.join(&name);
    let mut stages: Vec<Stage> = Vec::new();
    for (kind, stage_name, settings) in declared {
        let stage_dir = match &stage_name {
            Some(stage_name) => dir.join(format!("{}-{stage_name}", kind.name())),
            None => dir.join(kind.name()),
        };
        let wiring = wiring(kind, stage_name.as_deref(), &stage_dir, &stages);
        if kind == StageKind::Calibrate && !wiring.iter().any(|(key, _)| *key == "router") {
            return Err(pipeline_error(
                file,
                match &stage_name {
                    Some(name) => format!("[[calibrate]] `{name}` names no [[train]] stage"),
                    None => "[calibrate] does not say which router it calibrates".to_owned(),
                },
                "a calibrate stage calibrates the train stage of its `name` (or the only train stage)",
            ));
        }
        let mut loaded = stage(file, kind, settings, stage_dir, wiring)?;
        loaded.name = stage_name;
        stages.push(loaded);
    }
    Ok(Pipeline { name, file: file.to_path_buf(), description, dir, stages })
}

/// `[[train]]` (or `[[calibrate]]`) tables: each with a `name` (letters, digits, `-`, `_`;
/// unique), which names its folder (`train-<name>/`) and its router's report rows; a calibrate
/// stage's name is the train stage whose router it calibrates. The name is taken out of the
/// settings.
fn named_stages(file: &Path, key: &str, stages: Vec<toml::Value>) -> Result<Vec<(String, toml::Table)>> {
    let mut out: Vec<(String, toml::Table)> = Vec::with_capacity(stages.len());
    for (index, stage) in stages.into_iter().enumerate() {
        let toml::Value::Table(mut stage) = stage else {
            return Err(pipeline_error(
                file,
                format!("`{key}` is an array of something other than tables"),
                format!("write `[[{key}]]` tables"),
            ));
        };
        let name = match stage.remove("name") {
            Some(toml::Value::String(name)) => name,
            _ => {
                return Err(pipeline_error(
                    file,
                    format!("[[{key}]] number {} has no `name`", index + 1),
                    format!("each of several {key} stages needs `name = \"...\"` (e.g. `knn`), which names its folder"),
                ));
            }
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(pipeline_error(
                file,
                format!("[[{key}]] name `{name}` cannot name a folder"),
                "use letters, digits, `-` and `_`",
            ));
        }
        if out.iter().any(|(seen, _)| *seen == name) {
            return Err(pipeline_error(
                file,
                format!("two [[{key}]] stages are named `{name}`"),
                "give each its own name",
            ));
        }
        out.push((name, stage));
    }
    Ok(out)
}

fn stage_names() -> String {
    StageKind::ALL.map(|kind| format!("[{}]", kind.name())).join(", ")
}

/// The folders a stage gets from the stages before it.
fn wiring(kind: StageKind, name: Option<&str>, dir: &Path, before: &[Stage]) -> Vec<(&'static str, PathBuf)> {
    // The newest tables: the clustered ones when there is a cluster stage, else the source's.
    let tables = before
        .iter()
        .rev()
        .find(|stage| stage.kind == StageKind::Cluster || stage.kind.is_source())
        .map(|stage| stage.dir.clone());
    let mut wired = vec![("out", dir.to_path_buf())];
    match kind {
        StageKind::Ingest | StageKind::Convert | StageKind::Import => {}
        StageKind::Cluster => wired.extend(tables.map(|dir| ("tables", dir))),
        StageKind::Train => {
            wired.extend(tables.clone().map(|dir| ("train", dir)));
            wired.extend(tables.map(|dir| ("test", dir)));
        }
        StageKind::Calibrate => {
            // The train stage of the same name (or the only one), and the newest tables.
            let trains: Vec<&Stage> = before.iter().filter(|stage| stage.kind == StageKind::Train).collect();
            let train = match name {
                Some(name) => trains.iter().find(|train| train.name.as_deref() == Some(name)),
                None if trains.len() == 1 => trains.first(),
                None => None,
            };
            wired.extend(train.map(|train| ("router", router_path(train))));
            wired.extend(tables.map(|dir| ("tables", dir)));
        }
        StageKind::Report => {
            wired.extend(tables.map(|dir| ("tables", dir)));
            // Every train stage's router: a RouterDC checkpoint file, or a router folder.
            for train in before.iter().filter(|stage| stage.kind == StageKind::Train) {
                let checkpoint = router_path(train);
                // A named train stage names its router's rows (`--checkpoint NAME=PATH`).
                let checkpoint = match &train.name {
                    Some(name) => PathBuf::from(format!("{name}={}", checkpoint.display())),
                    None => checkpoint,
                };
                wired.push(("checkpoint", checkpoint));
            }
            // Each calibration, for the router of its name (`--calibration NAME=FILE`).
            for calibrate in before.iter().filter(|stage| stage.kind == StageKind::Calibrate) {
                let trains = before.iter().filter(|stage| stage.kind == StageKind::Train);
                let Some(train) = trains
                    .clone()
                    .find(|train| train.name == calibrate.name)
                    .or_else(|| if trains.clone().count() == 1 { trains.clone().next() } else { None })
                else {
                    continue;
                };
                let router = train.name.clone().unwrap_or_else(|| router_kind(train).to_owned());
                let file = calibrate.dir.join(crate::stages::calibrate::CALIBRATION_FILE);
                wired.push(("calibration", PathBuf::from(format!("{router}={}", file.display()))));
            }
        }
    }
    wired
}

/// The router kind a train stage makes (its `router` setting).
fn router_kind(train: &Stage) -> &str {
    train
        .resolved
        .get("train")
        .and_then(|settings| settings.get("router"))
        .and_then(toml::Value::as_str)
        .unwrap_or("routerdc")
}

/// What a train stage's router is read from: `best.safetensors` for RouterDC, else its folder.
fn router_path(train: &Stage) -> PathBuf {
    if router_kind(train) == "routerdc" { train.dir.join("best.safetensors") } else { train.dir.clone() }
}

/// Turn one stage table into arguments, parse them as the command line would, and record the
/// resolved settings and the stage's inputs.
fn stage(
    file: &Path,
    kind: StageKind,
    settings: toml::Table,
    dir: PathBuf,
    wiring: Vec<(&'static str, PathBuf)>,
) -> Result<Stage> {
    let command = kind.command();
    let known: Vec<&clap::Arg> =
        command.get_arguments().filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version" | "quiet")).collect();
    let (args, notices) = arguments(file, kind, settings, &known, &dir, &wiring)?;

    let mut argv: Vec<OsString> = vec![kind.name().into()];
    argv.extend(args.iter().cloned());
    let matches = command.clone().try_get_matches_from(argv).map_err(|error| {
        let rendered = error.render().to_string();
        let message =
            rendered.split("\n\n").next().unwrap_or(&rendered).trim_start_matches("error: ").trim().to_owned();
        pipeline_error(
            file,
            format!("[{}]: {message}", kind.name()),
            "keys are the stage's flags; `routerdc <stage> --help` lists them",
        )
    })?;
    let (resolved, inputs) = resolve(kind, &known, &matches, &dir, &wiring);
    let mut resolved_stage = toml::Table::new();
    resolved_stage.insert(kind.name().to_owned(), toml::Value::Table(resolved));
    Ok(Stage { kind, name: None, dir, args, resolved: resolved_stage, inputs, notices })
}

/// A setting's key in a pipeline file: its long flag, or for the positional inputs its name.
fn key_of(arg: &clap::Arg) -> String {
    arg.get_long().unwrap_or(arg.get_id().as_str()).to_owned()
}

/// The command-line arguments a stage table stands for, the wired folders last; and notices.
fn arguments(
    file: &Path,
    kind: StageKind,
    settings: toml::Table,
    known: &[&clap::Arg],
    dir: &Path,
    wiring: &[(&'static str, PathBuf)],
) -> Result<(Vec<OsString>, Vec<String>)> {
    let section = format!("[{}]", kind.name());
    let mut flags: Vec<OsString> = Vec::new();
    let mut positionals: Vec<OsString> = Vec::new();
    let mut notices = Vec::new();
    for (key, value) in settings {
        let Some(arg) = known.iter().find(|arg| key_of(arg) == key) else {
            let kebab = key.replace('_', "-");
            let hint = if known.iter().any(|arg| key_of(arg) == kebab) {
                format!("keys are the command-line flags: `{kebab}`")
            } else {
                let keys: Vec<String> =
                    known.iter().map(|arg| key_of(arg)).filter(|key| !kind.wired().contains(&key.as_str())).collect();
                format!("the keys of {section} are: {}", keys.join(", "))
            };
            return Err(pipeline_error(file, format!("unknown key `{key}` in {section}"), hint));
        };
        if kind.wired().contains(&key.as_str()) {
            return Err(pipeline_error(
                file,
                format!("`{key}` in {section} is set by `routerdc run`"),
                format!("remove it: the stage reads the previous stage's outputs and writes into `{}`", dir.display()),
            ));
        }
        let value = if key == "encoder" { choose_encoder(file, &section, value, &mut notices)? } else { value };
        let values = argument_values(file, &section, &key, arg, value)?;
        if is_path(arg) {
            for value in &values {
                let path = path_part(value);
                if !Path::new(path).exists() {
                    // Only for the message: without a readable working folder it says less.
                    let here = std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_default();
                    return Err(pipeline_error(
                        file,
                        format!("`{key}` in {section}: `{path}` does not exist"),
                        format!("relative paths are read from the folder you run in ({here}), as on the command line"),
                    ));
                }
            }
        }
        if arg.is_positional() {
            positionals.extend(values.into_iter().map(OsString::from));
        } else if matches!(arg.get_action(), ArgAction::SetTrue) {
            match values.as_slice() {
                [flag] if flag == "true" => flags.push(format!("--{key}").into()),
                [flag] if flag == "false" => {}
                _ => {
                    return Err(pipeline_error(
                        file,
                        format!("`{key}` in {section} is a switch"),
                        format!("write `{key} = true` or `{key} = false`"),
                    ));
                }
            }
        } else {
            for value in values {
                flags.push(format!("--{key}").into());
                flags.push(value.into());
            }
        }
    }
    for (key, path) in wiring {
        flags.push(format!("--{key}").into());
        flags.push(path.clone().into_os_string());
    }
    if !positionals.is_empty() {
        flags.push("--".into());
        flags.extend(positionals);
    }
    Ok((flags, notices))
}

/// Every setting after parsing (defaults included, keyed by flag), and the files and folders
/// the stage reads: its path arguments, the encoder's files, the training log for the report.
fn resolve(
    kind: StageKind,
    known: &[&clap::Arg],
    matches: &clap::ArgMatches,
    dir: &Path,
    wiring: &[(&'static str, PathBuf)],
) -> (toml::Table, Vec<PathBuf>) {
    let mut resolved = toml::Table::new();
    let mut inputs = Vec::new();
    for arg in known {
        let id = arg.get_id().as_str();
        let key = key_of(arg);
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            resolved.insert(key, toml::Value::Boolean(matches.get_flag(id)));
            continue;
        }
        let Some(raw) = matches.get_raw(id) else { continue };
        let raw: Vec<String> = raw.map(|value| value.to_string_lossy().into_owned()).collect();
        if is_path(arg) {
            for value in &raw {
                inputs.push(PathBuf::from(path_part(value)));
            }
        }
        let many = arg.is_positional() || matches!(arg.get_action(), ArgAction::Append);
        let value =
            if many { toml::Value::Array(raw.iter().map(|value| typed(value)).collect()) } else { typed(&raw[0]) };
        resolved.insert(key, value);
    }
    // The stage's own outputs are not its inputs.
    inputs.retain(|path| !path.starts_with(dir));
    if matches!(kind, StageKind::Cluster | StageKind::Train) {
        let spec =
            matches.get_raw("encoder").and_then(|mut raw| raw.next()).map(|raw| raw.to_string_lossy().into_owned());
        // An encoder that cannot be found is the stage's error to report, with its hint.
        if let Ok(files) = crate::hf::resolve(spec.as_deref()) {
            inputs.extend([files.config.clone(), files.tokenizer.clone(), files.weights.clone()]);
            inputs.extend(["tokenizer_config.json", "special_tokens_map.json"].map(|name| files.dir.join(name)));
        }
    }
    if kind == StageKind::Report {
        // The training curves come from the log beside a checkpoint file (a router folder is
        // an input as a whole).
        for (_, checkpoint) in wiring.iter().filter(|(key, _)| *key == "checkpoint") {
            let value = checkpoint.to_string_lossy();
            let checkpoint = Path::new(path_part(&value));
            if checkpoint.extension().is_some_and(|extension| extension == "safetensors") {
                inputs.extend(checkpoint.parent().map(|dir| dir.join("train_log.parquet")));
                inputs.extend(checkpoint.parent().map(|dir| dir.join("best.json")));
            }
        }
    }
    inputs.sort();
    inputs.dedup();
    (resolved, inputs)
}

/// The path in a path argument's value: the value, or for `NAME=PATH` flags what follows `=`.
fn path_part(value: &str) -> &str {
    match value.split_once('=') {
        Some((_, path)) if !Path::new(value).exists() => path,
        _ => value,
    }
}

/// Whether an argument names files or folders (its value name says DIR, FILE or PATH). The
/// encoder (`PATH|HUB_ID`) is not one: it may be a hub id, and its files are found by
/// [`crate::hf::resolve`].
fn is_path(arg: &clap::Arg) -> bool {
    arg.get_value_names().is_some_and(|names| {
        names.iter().any(|name| {
            let name = name.as_str();
            !name.contains("HUB_ID") && ["DIR", "FILE", "PATH"].iter().any(|p| name.contains(p))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_read_toml_values_and_fall_back_to_strings() {
        let over: Override = "train.steps=20".parse().unwrap();
        assert_eq!((over.stage.as_str(), over.key.as_str(), over.value), ("train", "steps", toml::Value::Integer(20)));
        let over: Override = "train.encoder=org/name".parse().unwrap();
        assert_eq!(over.value, toml::Value::String("org/name".into()));
        let over: Override = "train.freeze-encoder=true".parse().unwrap();
        assert_eq!(over.value, toml::Value::Boolean(true));
        assert!("steps=20".parse::<Override>().is_err());
        assert!("train.steps".parse::<Override>().is_err());
    }

    #[test]
    fn resolved_values_keep_their_types() {
        assert_eq!(typed("64"), toml::Value::Integer(64));
        assert_eq!(typed("0.05"), toml::Value::Float(0.05));
        assert_eq!(typed("cosine"), toml::Value::String("cosine".into()));
        assert_eq!(typed("inf"), toml::Value::String("inf".into()));
    }
}
