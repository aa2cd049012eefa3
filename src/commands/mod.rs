//! One function per subcommand: settings in, files written, a summary on stderr and data on
//! stdout. This is the only layer that prints.

mod child;

use std::process::ExitCode;

use crate::cli::{Cli, Command, DataCommand};
use crate::error::Result;
use crate::stages::{convert, import, ingest, report};

/// Run the parsed command line.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Ingest(config) => run_ingest(&config, quiet),
        Command::Convert(config) => run_convert(&config, quiet),
        Command::Import(config) => run_import(&config, quiet),
        Command::Export(config) => run_export(&config, quiet),
        Command::Report(config) => run_report(&config, quiet),
        Command::Calibrate(config) => run_calibrate(&config, quiet),
        Command::Embed(_) | Command::Cluster(_) | Command::Train(_) | Command::Tune(_) | Command::Route(_) => {
            run_torch_helper()
        }
        Command::Serve(_) => exec_torch_helper(),
        Command::Run(config) => run_pipeline(&config, quiet),
        Command::Data { command: DataCommand::Fetch(config) } => run_fetch(&config, quiet),
        Command::Doctor => Ok(run_doctor()),
    }
}

fn note(quiet: bool, message: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("{message}");
    }
}

fn run_ingest(config: &ingest::IngestConfig, quiet: bool) -> Result<ExitCode> {
    let bar = crate::progress::spinner("ingest", quiet);
    let done = |path: &std::path::Path| {
        bar.set_message(path.display().to_string());
        bar.inc(1);
    };
    let result = ingest::run(config, &done);
    bar.finish_and_clear();
    let (ingested, paths) = result?;
    for line in &ingested.notes {
        note(quiet, format_args!("note: {line}"));
    }
    if !quiet {
        eprintln!("{}", ingest_summary(&ingested.summary));
    }
    for (table, path) in ingested.tables.iter().zip(&paths) {
        note(
            quiet,
            format_args!(
                "{:<28} {:>7} queries {:>3} models {:<13} → {}",
                table.dataset,
                table.n_queries(),
                table.n_models(),
                table.kind.as_str(),
                path.display()
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The models × tasks summary: rows kept, rows dropped and why.
fn ingest_summary(rows: &[ingest::SummaryRow]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| task | model | rule | filter | kept | other filters | dropped (others lack) | lacks |\n|---|---|---|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.task,
            row.model,
            row.rule,
            row.filter.as_deref().unwrap_or("–"),
            row.kept,
            row.dropped_other_filters,
            row.dropped_incomplete,
            row.lacks
        );
    }
    out
}

fn run_convert(config: &convert::ConvertConfig, quiet: bool) -> Result<ExitCode> {
    let (tables, counts, paths) = convert::run(config)?;
    note(
        quiet,
        format_args!(
            "read {} rows: dropped {} with a missing quality value, saw {} repeated sample ids (kept as `<id>#2`, ...)",
            counts.rows, counts.dropped_missing_quality, counts.repeated_ids
        ),
    );
    for (table, path) in tables.iter().zip(&paths) {
        note(
            quiet,
            format_args!(
                "{:<28} {:>7} queries {:>3} models cost_aware → {}",
                table.dataset,
                table.n_queries(),
                table.n_models(),
                path.display()
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_import(config: &import::ImportConfig, quiet: bool) -> Result<ExitCode> {
    let files = import::input_files(&config.inputs)?;
    let bar = crate::progress::bar(files.len() as u64, "import", quiet);
    let written = import::run(config, &files, |path| {
        bar.set_message(path.display().to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    for (imported, path) in written? {
        let table = &imported.table;
        let clusters = table.cluster_ids.iter().filter(|id| id.is_some()).count();
        note(
            quiet,
            format_args!(
                "{:<24} {:>6} queries {:>3} models {:<13} {} clusters → {}",
                table.dataset,
                table.n_queries(),
                table.n_models(),
                table.kind.as_str(),
                if clusters == 0 { "no".to_owned() } else { format!("{clusters} with") },
                path.display()
            ),
        );
        for (field, count) in &imported.ignored_fields {
            note(
                quiet,
                format_args!("  note: ignored field `{field}` in {count} records of `{}`", imported.source.display()),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_export(config: &import::ExportConfig, quiet: bool) -> Result<ExitCode> {
    let written = import::export(config, |dataset| {
        note(quiet, format_args!("note: RouterDC JSON has no costs; the costs of `{dataset}` are not exported"));
    })?;
    for path in written {
        note(quiet, format_args!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The routes of `checkpoint` for every table of `tables` (the `split` rows), written by
/// `routerdc-torch route --tables` into a temporary folder; the child's exit code when it fails
/// (it has said why).
fn route_tables(
    checkpoint: &std::path::Path,
    tables: &std::path::Path,
    split: Option<crate::table::Split>,
    quantize: crate::hf::Quantize,
) -> Result<std::result::Result<tempfile::TempDir, ExitCode>> {
    let routes = tempfile::tempdir().map_err(|source| crate::Error::Write { path: std::env::temp_dir(), source })?;
    let mut route = child::command(crate::torch_helper());
    // The routes' own choices (λ = 0): the caller charges its λ from the scores.
    route.arg("--quiet").arg("route").arg("--checkpoint").arg(checkpoint).arg("--tables").arg(tables);
    route.arg("--out").arg(routes.path()).arg("--cost-rate").arg("0");
    if let Some(split) = split {
        route.arg("--split").arg(split.as_str());
    }
    if quantize == crate::hf::Quantize::Int8 {
        route.arg("--quantize").arg("int8").arg("--device").arg("cpu");
    }
    let status = route.status().map_err(|source| crate::Error::input_from("cannot run routerdc-torch", "", source))?;
    if !status.success() {
        return Ok(Err(ExitCode::from(status.code().map_or(1, |code| code.clamp(1, 255) as u8))));
    }
    Ok(Ok(routes))
}

fn run_calibrate(config: &crate::stages::calibrate::CalibrateConfig, quiet: bool) -> Result<ExitCode> {
    use crate::stages::calibrate::{self, CALIBRATION_FILE, Calibration};
    let target = calibrate::target(config)?;
    let costs = crate::stages::route::router_costs(&config.router)?.ok_or_else(|| {
        crate::Error::setting(
            "router",
            format!("`{}` was trained on tables without costs: there is no cost to calibrate", config.router.display()),
        )
    })?;
    let mut tables = crate::io::read_tables(&config.tables)?;
    if let Some(split) = config.split {
        tables = crate::routing::select_split(tables, split);
    }
    if tables.is_empty() || tables.iter().any(|loaded| loaded.table.costs.is_none()) {
        return Err(crate::Error::setting(
            "tables",
            format!("`{}` needs tables with costs (and rows of the split asked for)", config.tables.display()),
        ));
    }
    let routes = match route_tables(&config.router, &config.tables, config.split, crate::hf::Quantize::None)? {
        Ok(routes) => routes,
        Err(code) => return Ok(code),
    };
    let routed = tables
        .iter()
        .map(|table| crate::stages::route::read_routes(routes.path(), table))
        .collect::<Result<Vec<_>>>()?;
    let sweep = calibrate::sweep(&tables, &routed, &costs);
    let reached = calibrate::choose(&sweep, target, calibrate::oracle_quality(&tables))?;
    let mut hashes = Vec::with_capacity(tables.len());
    for loaded in &tables {
        let mut hasher = blake3::Hasher::new();
        crate::io::copy_into(&loaded.path, &mut hasher)?;
        hashes.push((loaded.path.display().to_string(), hasher.finalize().to_hex().to_string()));
    }
    let calibration = Calibration {
        routerdc_version: env!("CARGO_PKG_VERSION").to_owned(),
        lambda: reached.lambda,
        target,
        reached,
        rows: tables.iter().map(|loaded| loaded.table.n_queries()).sum(),
        tables: hashes,
        written_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
    };
    let path = match &config.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| crate::Error::Write { path: dir.clone(), source })?;
            dir.join(CALIBRATION_FILE)
        }
        None => calibrate::calibration_path(&config.router),
    };
    let json = serde_json::to_string_pretty(&calibration).map_err(crate::Error::serialize(CALIBRATION_FILE))?;
    crate::io::write_text(&(json + "\n"), &path)?;
    note(
        quiet,
        format_args!(
            "λ = {:.6} on {} calibration rows: mean cost {:.6}, quality {:.2}%, {:.1}% to the dearest LLM; wrote {}",
            reached.lambda,
            calibration.rows,
            reached.cost,
            100.0 * reached.quality,
            100.0 * reached.strong_share,
            path.display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

fn run_report(config: &report::ReportConfig, quiet: bool) -> Result<ExitCode> {
    // Each router's choices come from `routerdc-torch route`, into a temporary folder; only the
    // rows the report reads are routed.
    let mut folders = Vec::with_capacity(config.checkpoint.len());
    let mut names: Vec<String> = Vec::with_capacity(config.checkpoint.len());
    let mut costs = Vec::with_capacity(config.checkpoint.len());
    for router in &config.checkpoint {
        let checkpoint = &router.path;
        let routes = match route_tables(checkpoint, &config.tables, config.split, config.quantize)? {
            Ok(routes) => routes,
            Err(code) => return Ok(code),
        };
        // A router folder names its kind (`knn`, `cluster`); a checkpoint file is a RouterDC
        // router. A second router of a kind is named by its folder too.
        let kind = match crate::stages::train::folder::router_folder(checkpoint) {
            Some(dir) => crate::stages::train::folder::read_router_file(dir)?.kind,
            None => report::ROUTER.to_owned(),
        };
        let name = if let Some(name) = &router.name {
            if names.contains(name) {
                return Err(crate::Error::setting("checkpoint", format!("two routers are named `{name}`")));
            }
            name.clone()
        } else if names.contains(&kind) {
            let folder = if checkpoint.is_dir() { Some(checkpoint.as_path()) } else { checkpoint.parent() };
            let folder = folder.and_then(|dir| dir.file_name()).map(|name| name.to_string_lossy().into_owned());
            format!("{kind}:{}", folder.unwrap_or_else(|| names.len().to_string()))
        } else {
            kind
        };
        let file = config.calibration.iter().find(|given| given.name.as_deref() == Some(name.as_str()));
        let calibration =
            crate::stages::calibrate::read_calibration(checkpoint, file.map(|given| given.path.as_path()))?;
        names.push(name);
        costs.push((crate::stages::route::router_costs(checkpoint)?, calibration));
        folders.push(routes);
    }
    if let Some(unknown) =
        config.calibration.iter().find(|given| given.name.as_ref().is_none_or(|name| !names.contains(name)))
    {
        return Err(crate::Error::setting(
            "calibration",
            format!(
                "`{}` names no router of this report (they are: {})",
                unknown.name.as_deref().unwrap_or(&unknown.path.display().to_string()),
                names.join(", ")
            ),
        ));
    }
    let readers: Vec<_> = folders
        .iter()
        .map(|routes| move |table: &crate::table::LoadedTable| crate::stages::route::read_routes(routes.path(), table))
        .collect();
    let routers: Vec<report::RouterInput<'_>> = names
        .into_iter()
        .zip(costs)
        .zip(&readers)
        .map(|((name, (costs, calibration)), read)| report::RouterInput {
            name,
            costs,
            calibration,
            routes: read as report::Routes<'_>,
        })
        .collect();
    let output = report::run(config, &routers)?;
    print!("{}", output.markdown);
    for path in &output.files {
        note(quiet, format_args!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_pipeline(config: &crate::pipeline::run::RunConfig, quiet: bool) -> Result<ExitCode> {
    use crate::pipeline::run::Outcome;
    let pipeline = crate::pipeline::load(&config.file, &config.outputs, &config.overrides)?;
    let say = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    if !quiet {
        let about = pipeline.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        eprintln!("pipeline `{}`{about} → {}", pipeline.name, pipeline.dir.display());
    }
    let summary = crate::pipeline::run::run(&pipeline, config, quiet, &say, &run_stage_command)?;
    if let Some((stage, dir, code)) = summary.failed {
        eprintln!(
            "error: stage `{stage}` failed (exit code {code}); its previous outputs, if any, are kept in `{}` and the failed run's in `{}.failed`",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::from(code.clamp(1, 255) as u8));
    }
    if !quiet {
        let count = |outcome: Outcome| summary.stages.iter().filter(|(_, o, _)| *o == outcome).count();
        let seconds: f64 = summary.stages.iter().map(|(_, _, s)| s).sum();
        eprintln!(
            "{} ran, {} unchanged (skipped), {} kept from earlier runs{} in {seconds:.1} s",
            count(Outcome::Ran),
            count(Outcome::Skipped),
            count(Outcome::Kept),
            if config.dry_run { format!(", {} would run", count(Outcome::WouldRun)) } else { String::new() },
        );
        if let Some(report) = pipeline.stage(crate::pipeline::StageKind::Report) {
            let path = report.dir.join("report.md");
            if path.is_file() {
                eprintln!("report: {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A pipeline stage as its own `routerdc` process (`routerdc [--quiet] <stage> <args>`).
fn run_stage_command(stage: &crate::pipeline::Stage, quiet: bool) -> Result<i32> {
    let exe = std::env::current_exe().map_err(|source| crate::Error::Read { path: "routerdc".into(), source })?;
    let mut command = child::command(&exe);
    if quiet {
        command.arg("--quiet");
    }
    command.arg(stage.kind.name()).args(&stage.args);
    let status = command.status().map_err(|source| crate::Error::Read { path: exe.clone(), source })?;
    Ok(status.code().unwrap_or(1))
}

fn run_fetch(config: &crate::data::FetchConfig, quiet: bool) -> Result<ExitCode> {
    let bar = crate::progress::bar(crate::data::FILES.len() as u64, "fetch", quiet);
    let (mut downloaded, mut present) = (0, 0);
    let result = crate::data::fetch(config, |file, fetched| {
        bar.set_message(file.path);
        bar.inc(1);
        match fetched {
            crate::data::Fetched::Downloaded => downloaded += 1,
            crate::data::Fetched::AlreadyThere => present += 1,
        }
    });
    bar.finish_and_clear();
    result?;
    note(
        quiet,
        format_args!(
            "{downloaded} downloaded, {present} already there, all {} checked (SHA-256) in `{}`\nnext: export ROUTERDC_DATA={}",
            crate::data::FILES.len(),
            config.out.display(),
            std::path::absolute(&config.out).unwrap_or_else(|_| config.out.clone()).display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// Commands that need libtorch run in `routerdc-torch` with the same arguments; its exit
/// code is ours.
fn run_torch_helper() -> Result<ExitCode> {
    if !cfg!(feature = "train") {
        return Err(crate::Error::Unsupported { feature: "train" });
    }
    let helper = crate::torch_helper();
    let status = child::command(&helper).args(std::env::args_os().skip(1)).status();
    match status {
        Ok(status) => Ok(ExitCode::from(status.code().map_or(1, |code| code.clamp(0, 255) as u8))),
        Err(source) => Err(crate::Error::input_from(
            format!("cannot run `{}`", helper.display()),
            "embedding and training need libtorch: build with `cargo build --release` (the default `train` feature) after `scripts/setup.sh`",
            source,
        )),
    }
}

/// Become `routerdc-torch` (exec, same process): a service gets its signals (TERM drains, HUP
/// reloads) directly, with no parent in between.
fn exec_torch_helper() -> Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    if !cfg!(feature = "train") {
        return Err(crate::Error::Unsupported { feature: "train" });
    }
    let helper = crate::torch_helper();
    let error = std::process::Command::new(&helper).args(std::env::args_os().skip(1)).exec();
    Err(crate::Error::input_from(
        format!("cannot run `{}`", helper.display()),
        "serving needs libtorch: build with `cargo build --release` (the default `train` feature) after `scripts/setup.sh`",
        error,
    ))
}

fn run_doctor() -> ExitCode {
    let checks = crate::doctor::checks();
    let mut failed = false;
    for check in &checks {
        let mark = if check.problem.is_some() { "✗" } else { "✓" };
        println!("{mark} {:<16} {}", check.name, check.value);
        if let Some(hint) = &check.problem {
            println!("  hint: {hint}");
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
