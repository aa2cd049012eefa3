//! `routerdc run`: the stages of a pipeline in order, each into `outputs/<pipeline>/<stage>/`
//! with `config.toml` (every setting, defaults included) and `manifest.json` (routerdc version,
//! the inputs' content hashes, the outputs' hashes, timings) beside its outputs.
//!
//! A stage whose fingerprint (version, arguments, inputs' contents) equals the one in its
//! manifest, and whose outputs are still as the manifest lists them, is skipped. A stage runs
//! with its previous outputs moved to `<stage>.previous/`; they come back if it fails (the failed
//! outputs are kept in `<stage>.failed/` to look at), and are deleted once it succeeds.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Pipeline, Stage, StageKind};
use crate::error::{Error, Result};

/// Settings of `routerdc run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunConfig {
    /// The pipeline file (`pipelines/<name>.toml`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where `<pipeline>/<stage>/` folders are written.
    #[arg(long, value_name = "DIR", default_value = "outputs")]
    pub outputs: PathBuf,
    /// Run every stage, even those whose inputs and settings are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Run this stage and the ones after it (earlier stages must have run).
    #[arg(long, value_enum, value_name = "STAGE", conflicts_with = "only")]
    pub from: Option<StageKind>,
    /// Run this stage alone (the stages before it must have run).
    #[arg(long, value_enum, value_name = "STAGE")]
    pub only: Option<StageKind>,
    /// Change one setting of the file, `STAGE.KEY=VALUE` (repeatable), e.g. `train.steps=20`.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    pub overrides: Vec<super::Override>,
    /// Show what would run and what would be skipped, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One input or output file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: PathBuf,
    pub bytes: u64,
    pub blake3: String,
}

/// `manifest.json`: what a stage's last successful run read, did and wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub routerdc_version: String,
    pub pipeline: String,
    pub stage: String,
    /// blake3 of the version, the arguments and every input's hash: equal means nothing changed.
    pub fingerprint: String,
    pub command: Vec<String>,
    pub inputs: Vec<FileHash>,
    /// Paths relative to the stage folder.
    pub outputs: Vec<FileHash>,
    /// UTC, RFC 3339.
    pub started: String,
    pub seconds: f64,
}

/// What happened to a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Skipped,
    /// Not selected by `--from`/`--only`; its earlier outputs were used.
    Kept,
    WouldRun,
}

/// The outcome and time of each stage, in order.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stages: Vec<(StageKind, Outcome, f64)>,
    /// Set when a stage failed: its label (`train`, `train.knn`), its folder and the exit code
    /// of its command.
    pub failed: Option<(String, PathBuf, i32)>,
}

const MANIFEST: &str = "manifest.json";
const CONFIG: &str = "config.toml";

/// Runs one stage's command (`routerdc <stage> <args>`, with `--quiet` when asked) and returns
/// its exit code. The caller provides it: the library does not know how commands are run.
pub type StageRunner<'a> = &'a dyn Fn(&Stage, bool) -> Result<i32>;

/// Run (or, with `dry_run`, plan) the pipeline; `quiet` is passed on to every stage, each of
/// which runs through `runner`.
pub fn run(
    pipeline: &Pipeline,
    config: &RunConfig,
    quiet: bool,
    say: &dyn Fn(&str),
    runner: StageRunner<'_>,
) -> Result<Summary> {
    let selected = |kind: StageKind| match (config.only, config.from) {
        (Some(only), _) => kind == only,
        (None, Some(from)) => kind >= from,
        (None, None) => true,
    };
    for requested in config.only.iter().chain(&config.from) {
        if pipeline.stage(*requested).is_none() {
            return Err(Error::Pipeline {
                path: pipeline.file.clone(),
                message: format!("the pipeline has no [{}] stage", requested.name()),
                hint: format!(
                    "its stages are {}",
                    pipeline.stages.iter().map(|s| s.kind.name()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let mut summary = Summary { stages: Vec::new(), failed: None };
    for stage in &pipeline.stages {
        restore_interrupted(&stage.dir)?;
        if !selected(stage.kind) {
            if read_manifest(&stage.dir).is_none()
                && pipeline.stages.iter().any(|later| later.kind > stage.kind && selected(later.kind))
            {
                return Err(Error::Pipeline {
                    path: pipeline.file.clone(),
                    message: format!(
                        "stage `{}` has not run yet (no {} in `{}`)",
                        stage.label(),
                        MANIFEST,
                        stage.dir.display()
                    ),
                    hint: "run the whole pipeline once before `--from`/`--only`".into(),
                });
            }
            summary.stages.push((stage.kind, Outcome::Kept, 0.0));
            continue;
        }
        let inputs = hash_inputs(stage, &pipeline.dir)?;
        let command = command_line(stage);
        // The resolved settings too (defaults included): a routerdc whose stage gained a setting
        // or changed a default runs the stage again instead of keeping outputs made otherwise.
        let settings =
            toml::to_string(&stage.resolved).map_err(|e| Error::failed(format!("Failed to write {CONFIG}"), e))?;
        let fingerprint = fingerprint(&command, &settings, &inputs);
        let forced = config.force || config.only.is_some() || config.from.is_some();
        let previous = read_manifest(&stage.dir);
        let unchanged = previous.as_ref().is_some_and(|manifest| {
            manifest.fingerprint == fingerprint && outputs_intact(&stage.dir, &manifest.outputs)
        });
        if unchanged && !forced {
            let manifest = previous.expect("checked");
            say(&format!(
                "✓ {:<8} unchanged since {} ({:.1} s): skipped",
                stage.label(),
                manifest.started,
                manifest.seconds
            ));
            summary.stages.push((stage.kind, Outcome::Skipped, 0.0));
            continue;
        }
        for notice in &stage.notices {
            say(&format!("notice: {notice}"));
        }
        if config.dry_run {
            say(&format!("→ {:<8} would run: {}", stage.label(), command.join(" ")));
            summary.stages.push((stage.kind, Outcome::WouldRun, 0.0));
            continue;
        }
        say(&format!("→ {:<8} {}", stage.label(), command.join(" ")));
        let started = SystemTime::now();
        let clock = Instant::now();
        let code = run_stage(stage, quiet, runner)?;
        let seconds = clock.elapsed().as_secs_f64();
        if code != 0 {
            summary.stages.push((stage.kind, Outcome::Ran, seconds));
            summary.failed = Some((stage.label(), stage.dir.clone(), code));
            return Ok(summary);
        }
        let outputs = hash_tree(&stage.dir, true)?
            .into_iter()
            .map(|mut file| {
                file.path = file.path.strip_prefix(&stage.dir).map(Path::to_path_buf).unwrap_or(file.path);
                file
            })
            .collect();
        let manifest = Manifest {
            routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
            pipeline: pipeline.name.clone(),
            stage: stage.label(),
            fingerprint,
            command,
            inputs,
            outputs,
            started: rfc3339(started),
            seconds,
        };
        let config_text = format!(
            "# The settings `routerdc run {}` ran this stage with (defaults included).\n{}",
            pipeline.file.display(),
            toml::to_string(&stage.resolved).map_err(|e| Error::failed(format!("Failed to write {CONFIG}"), e))?
        );
        crate::io::write_text(&config_text, &stage.dir.join(CONFIG))?;
        let json = serde_json::to_string_pretty(&manifest).map_err(Error::serialize("the stage's manifest"))?;
        crate::io::write_text(&(json + "\n"), &stage.dir.join(MANIFEST))?;
        remove_dir(&aside(&stage.dir, "previous"))?;
        say(&format!("✓ {:<8} done in {seconds:.1} s", stage.label()));
        summary.stages.push((stage.kind, Outcome::Ran, seconds));
    }
    Ok(summary)
}

/// The stage's command line as a user would type it.
fn command_line(stage: &Stage) -> Vec<String> {
    std::iter::once("routerdc".to_owned())
        .chain(std::iter::once(stage.kind.name().to_owned()))
        .chain(stage.args.iter().map(|arg| arg.to_string_lossy().into_owned()))
        .collect()
}

fn aside(dir: &Path, what: &str) -> PathBuf {
    let name = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.{what}"))
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Write { path: dir.to_path_buf(), source }),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Write { path: to.to_path_buf(), source })
}

/// A run killed while a stage was running leaves `<stage>.previous/` and a stage folder without
/// a manifest: put the previous outputs back.
fn restore_interrupted(dir: &Path) -> Result<()> {
    let previous = aside(dir, "previous");
    if previous.is_dir() && read_manifest(dir).is_none() {
        remove_dir(dir)?;
        rename(&previous, dir)?;
    }
    Ok(())
}

/// Run one stage's command with the previous outputs moved aside; on failure they come back.
/// Returns the command's exit code.
fn run_stage(stage: &Stage, quiet: bool, runner: StageRunner<'_>) -> Result<i32> {
    let previous = aside(&stage.dir, "previous");
    remove_dir(&previous)?;
    if stage.dir.exists() {
        rename(&stage.dir, &previous)?;
    }
    std::fs::create_dir_all(&stage.dir).map_err(|source| Error::Write { path: stage.dir.clone(), source })?;
    let code = runner(stage, quiet)?;
    if code == 0 {
        return Ok(0);
    }
    let failed = aside(&stage.dir, "failed");
    remove_dir(&failed)?;
    rename(&stage.dir, &failed)?;
    if previous.is_dir() {
        rename(&previous, &stage.dir)?;
    }
    Ok(code)
}

/// The manifest of the stage's last successful run, if any.
pub fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

fn outputs_intact(dir: &Path, outputs: &[FileHash]) -> bool {
    let Ok(now) = hash_tree(dir, true) else { return false };
    let now: Vec<FileHash> = now
        .into_iter()
        .map(|mut file| {
            file.path = file.path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(file.path);
            file
        })
        .collect();
    now == outputs
}

/// Hashes of every file the stage reads. Inputs under the pipeline's own folder are earlier
/// stages' outputs: their `manifest.json` and `config.toml` are not part of them.
fn hash_inputs(stage: &Stage, pipeline_dir: &Path) -> Result<Vec<FileHash>> {
    let mut hashes = Vec::new();
    for input in &stage.inputs {
        if !input.exists() {
            continue;
        }
        let stage_output = input.starts_with(pipeline_dir);
        hashes.extend(hash_tree(input, stage_output)?);
    }
    hashes.sort_by(|a, b| a.path.cmp(&b.path));
    hashes.dedup();
    Ok(hashes)
}

/// Every file under `path` (or `path` itself), sorted, with its hash. `skip_own_files` leaves out
/// a stage folder's `manifest.json` and `config.toml`.
pub fn hash_tree(path: &Path, skip_own_files: bool) -> Result<Vec<FileHash>> {
    let mut files = Vec::new();
    collect(path, path, skip_own_files, &mut files)?;
    files.sort();
    files.into_iter().map(|file| hash_file(&file)).collect()
}

fn collect(root: &Path, path: &Path, skip_own_files: bool, files: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read { path: path.to_path_buf(), source };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(read_error)? {
        let child = entry.map_err(read_error)?.path();
        let own = skip_own_files
            && child.parent() == Some(root)
            && child.file_name().is_some_and(|name| name == MANIFEST || name == CONFIG);
        if !own {
            collect(root, &child, skip_own_files, files)?;
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<FileHash> {
    let mut hasher = blake3::Hasher::new();
    let bytes = crate::io::copy_into(path, &mut hasher)?;
    Ok(FileHash { path: path.to_path_buf(), bytes, blake3: hasher.finalize().to_hex().to_string() })
}

fn fingerprint(command: &[String], settings: &str, inputs: &[FileHash]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&(settings.len() as u64).to_le_bytes());
    hasher.update(settings.as_bytes());
    for part in command {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    for input in inputs {
        hasher.update(input.path.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        hasher.update(input.blake3.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// `2026-11-28T08:01:02Z`.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_858_262), "2026-11-28T09:31:02Z");
    }
}
