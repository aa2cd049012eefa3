//! The command line (clap derive only); each stage's settings type doubles as its clap args and
//! its pipeline-file table.

use clap::{Parser, Subcommand};

use crate::data::FetchConfig;
use crate::pipeline::run::RunConfig;
use crate::stages::calibrate::CalibrateConfig;
use crate::stages::cluster::ClusterConfig;
use crate::stages::convert::ConvertConfig;
use crate::stages::embed::EmbedConfig;
use crate::stages::import::{ExportConfig, ImportConfig};
use crate::stages::ingest::IngestConfig;
use crate::stages::report::ReportConfig;
use crate::stages::route::RouteConfig;
use crate::stages::train::TrainConfig;
use crate::stages::tune::TuneConfig;

/// routerdc: LLM evaluation outputs → scored tables → RouterDC router → reports.
#[derive(Debug, Parser)]
#[command(name = "routerdc", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only data and errors: no progress bars or notes.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score lm-evaluation-harness / bigcode-evaluation-harness per-sample outputs into one table per task.
    Ingest(IngestConfig),
    /// Convert RouterBench CSV or PKL (pandas pickles, parsed, never executed) into tables with costs.
    Convert(ConvertConfig),
    /// Import RouterDC JSON datasets ({question, scores, cluster_id?} records) as scored tables.
    Import(ImportConfig),
    /// Write scored tables back as RouterDC JSON.
    Export(ExportConfig),
    /// Baselines (each LLM, oracle, random, best single) per table and group; docs/method.md, "Evaluation".
    Report(ReportConfig),
    /// Embed every query of the tables with an HF encoder (default: the bundled all-MiniLM-L6-v2).
    Embed(EmbedConfig),
    /// k-means over the training queries' embeddings; writes each query's `cluster_id` (docs/method.md, "Clusters").
    Cluster(ClusterConfig),
    /// Train the RouterDC router (docs/method.md, "Model", "Losses") on scored tables; keeps the best checkpoint by validation.
    Train(TrainConfig),
    /// Search RouterDC's settings on a grid (`--try-learning-rate 0.005,0.05`, ...): a `train`
    /// run per setting, chosen on held-out validation rows; writes `trials.parquet` and keeps the
    /// winner as `best.*`.
    Tune(TuneConfig),
    /// Route queries (stdin lines, JSON lines or tables) with a trained checkpoint.
    Route(RouteConfig),
    /// Serve a trained router over HTTP: OpenAI-compatible routing, proxying and metrics
    /// (README, "Serving").
    Serve(crate::serve::ServeConfig),
    /// Fit the routing-time cost penalty λ to a budget, a quality or a strong-model share on
    /// calibration rows; writes `calibration.json` beside the router, which `route` and `report` use.
    Calibrate(CalibrateConfig),
    /// Run a pipeline file (`pipelines/*.toml`): every stage in order, unchanged stages skipped.
    Run(RunConfig),
    /// The RouterDC paper's released datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Check the installation: versions, libtorch, CUDA, threads, the default encoder.
    Doctor,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download the datasets (pinned commits, SHA-256 checked) into `--out`.
    Fetch(FetchConfig),
}
