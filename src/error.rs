//! The library's one error type.
//!
//! Every message names what failed and on what (file, record, field); `hint()` gives the next
//! step, and `is_usage()` tells the binary whether the user's input was at fault (exit code 2) or
//! the work failed for another reason (exit code 1).

use std::path::PathBuf;

/// `Result` with routerdc's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cause kept as it came from a library whose error type the library cannot name: tch's
/// (the library links no libtorch; only `routerdc-torch` does), the tokenizers crate's (itself a
/// boxed error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("Failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("Failed to write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` is empty", path.display())]
    EmptyFile { path: PathBuf },

    /// Malformed JSON, or JSON of the wrong shape, at a known place in a file.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },

    /// A record whose content breaks the scored-table rules (model set, score range, ...).
    #[error("{}: record {record}: {message}", path.display())]
    Record {
        path: PathBuf,
        /// 0-based index of the record in the file.
        record: usize,
        message: String,
    },

    #[error("Tables disagree on the model list: `{}` has {first:?} but `{}` has {second:?}", first_path.display(), second_path.display())]
    ModelListMismatch { first_path: PathBuf, first: Vec<String>, second_path: PathBuf, second: Vec<String> },

    /// A harness output file whose layout routerdc cannot use.
    #[error("`{}`: {message}", path.display())]
    Layout { path: PathBuf, message: String },

    /// Harness outputs that do not fit together (missing questions, duplicate ids, ...).
    #[error("{message}")]
    Merge { message: String, hint: String },

    /// A parquet file that is not a scored table in routerdc's layout.
    #[error("`{}` is not a routerdc scored table: {message}", path.display())]
    Table { path: PathBuf, message: String },

    #[error("Cannot tell the metric kind of dataset `{dataset}`")]
    UnknownKind { dataset: String },

    /// A bad command-line or pipeline setting.
    #[error("Invalid setting `{name}`: {message}")]
    Setting { name: String, message: String },

    #[error("No scored tables (`*.parquet`) in `{}`", dir.display())]
    NoTables { dir: PathBuf },

    #[error("Polars failed while {context}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },

    /// An encoder directory (or hub id) that routerdc cannot load: missing files, an unsupported
    /// architecture, sizes that disagree between `config.json` and the weights.
    #[error("Encoder `{}`: {message}", path.display())]
    Encoder {
        path: PathBuf,
        message: String,
        hint: String,
        #[source]
        source: Option<BoxError>,
    },

    /// Embedding or training input that cannot be used (an empty query, no text column, ...).
    #[error("{message}")]
    Input {
        message: String,
        hint: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A file routerdc wrote earlier (a checkpoint, its sidecar, a resume state) that cannot be
    /// used as it is: bad input.
    #[error("`{}`: {message}", path.display())]
    BadFile {
        path: PathBuf,
        message: String,
        hint: String,
        #[source]
        source: Option<BoxError>,
    },

    /// Work that failed in a library routerdc calls (libtorch, tokenizers), not through the
    /// user's input: saving a checkpoint, running the network.
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },

    /// Serialising routerdc's own values (a checkpoint's sidecar, a resume state) failed.
    #[error("Failed to serialise {what}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// k-means failed on vectors that passed the checks.
    #[error("k-means failed on {rows} rows with k = {k}")]
    KMeans {
        rows: usize,
        k: usize,
        #[source]
        source: linfa_clustering::KMeansError,
    },

    /// PCA failed on vectors that passed the checks.
    #[error("PCA to {dims} dimensions failed")]
    Pca {
        dims: usize,
        #[source]
        source: BoxError,
    },

    #[error("`{}`: {message}", path.display())]
    Pipeline { path: PathBuf, message: String, hint: String },

    #[error("This build has no `{feature}` support")]
    Unsupported { feature: &'static str },
}

impl Error {
    /// The next step for the user, printed after the error chain.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Json { message, .. } if message.contains("NaN") || message.contains("Infinity") => Some(
                "JSON has no NaN or Infinity; write a number in [0, 1] (a failed answer scores 0)".into(),
            ),
            Error::Json { .. } => Some("the file, line and column above point at the problem; fix it there".into()),
            Error::Record { .. } => Some(
                "every record needs `question` (string) and `scores` {model: number in [0, 1]} with the same models in the same order"
                    .into(),
            ),
            Error::ModelListMismatch { .. } => Some(
                "tables used together must list the same models in the same order; re-import them with one model set".into(),
            ),
            Error::UnknownKind { dataset } => Some(format!(
                "pass `--kind {dataset}=probability` (multiple choice, score > 0 means correct) or `--kind {dataset}=multi_attempt` (score is a fraction of attempts)"
            )),
            Error::NoTables { .. } => Some("create tables with `routerdc import --out DIR FILE...` first".into()),
            Error::EmptyFile { .. } => Some("the file has no records; check that the export that wrote it finished".into()),
            Error::Merge { hint, .. }
            | Error::Encoder { hint, .. }
            | Error::Input { hint, .. }
            | Error::BadFile { hint, .. }
            | Error::Pipeline { hint, .. } => {
                Some(hint.clone()).filter(|hint| !hint.is_empty())
            }
            Error::Layout { .. } => {
                Some("README lists the layouts each command reads (ingest: harness outputs; convert: RouterBench)".into())
            }
            Error::Table { .. } => Some("tables are written by `routerdc import`; the layout is described in README (Scored tables)".into()),
            Error::Unsupported { feature } => Some(format!("rebuild with `--features {feature}`")),
            _ => None,
        }
    }

    /// Whether the user's input or settings are at fault (exit code 2), not the work itself.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::EmptyFile { .. }
                | Error::Json { .. }
                | Error::Record { .. }
                | Error::ModelListMismatch { .. }
                | Error::Table { .. }
                | Error::Layout { .. }
                | Error::Merge { .. }
                | Error::UnknownKind { .. }
                | Error::Setting { .. }
                | Error::NoTables { .. }
                | Error::Encoder { .. }
                | Error::Input { .. }
                | Error::BadFile { .. }
                | Error::Pipeline { .. }
                | Error::Unsupported { .. }
        ) || matches!(self, Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn setting(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Setting { name: name.into(), message: message.into() }
    }

    pub fn encoder(path: impl Into<PathBuf>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Encoder { path: path.into(), message: message.into(), hint: hint.into(), source: None }
    }

    /// [`Error::Encoder`] with the library error that revealed the problem as its cause.
    pub fn encoder_from(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        hint: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Encoder { path: path.into(), message: message.into(), hint: hint.into(), source: Some(source.into()) }
    }

    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Input { message: message.into(), hint: hint.into(), source: None }
    }

    /// [`Error::Input`] with the error that revealed the problem as its cause.
    pub fn input_from(message: impl Into<String>, hint: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Input { message: message.into(), hint: hint.into(), source: Some(source.into()) }
    }

    /// [`Error::BadFile`]: `path` cannot be used; `source` (if any) tells why.
    pub fn bad_file(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        hint: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Error::BadFile { path: path.into(), message: message.into(), hint: hint.into(), source }
    }

    /// [`Error::Failed`]: `context` says what was being done.
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Failed { context: context.into(), source: source.into() }
    }

    /// A closure for `map_err` that makes [`Error::Serialize`].
    pub fn serialize(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |source| Error::Serialize { what, source }
    }

    pub fn table(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Table { path: path.into(), message: message.into() }
    }

    pub fn polars(context: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.into();
        move |source| Error::Polars { context, source }
    }
}
