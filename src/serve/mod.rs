//! `routerdc serve`: a trained router as an OpenAI-compatible HTTP service.
//!
//! - `POST /v1/route`: the decision only (the ranked LLMs, the router's scores, the time taken);
//! - `POST /v1/chat/completions`: `model: "router"` is routed and forwarded to the chosen LLM's
//!   upstream (streams passed through as they arrive, the next-ranked LLM tried when an upstream
//!   fails); any other model an upstream serves passes through unrouted;
//! - `GET /v1/models`, `/healthz`, `/readyz`, `/metrics` (Prometheus text);
//! - `POST /admin/reload` (and SIGHUP): load the router folder again, keeping the old router
//!   when the new one is broken; SIGTERM drains the requests in flight and exits 0.
//!
//! The router itself (an encoder and a head) is behind [`Decide`], implemented on the libtorch
//! side; concurrent decisions are batched by [`batch`], one batch at a time.

mod app;
pub mod batch;
mod decisions;
mod handlers;
mod metrics;
mod proxy;
pub mod request;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Settings of `routerdc serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// The router: a folder `routerdc train` wrote (`best.safetensors` + `best.json` of a
    /// RouterDC router, or `router.json` of a kNN, cluster or MLP router).
    #[arg(long, value_name = "DIR")]
    pub router: PathBuf,
    /// The service's settings and upstreams (README, "Serving"). Without it the service
    /// answers `/v1/route` only.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 takes a free port (the address is printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// Which text of a chat request the router decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteText {
    /// The last user message.
    #[default]
    LastUser,
    /// Every user message, joined by newlines.
    User,
    /// Every message's text, joined by newlines.
    Conversation,
}

/// `serve.toml`. Relative paths in it are read from the file's folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// The `model` of a chat request that asks for routing.
    #[serde(default = "default_router_model")]
    pub router_model: String,
    #[serde(default)]
    pub route_text: RouteText,
    /// The encoder's Linear layers: `"none"` (float32) or `"int8"` (see `embed --quantize`).
    #[serde(default)]
    pub quantize: crate::hf::Quantize,
    /// λ of the cost penalty (score − λ × cost); default: the router's `calibration.json`, else 0.
    pub cost_rate: Option<f64>,
    /// How many further LLMs, in the router's ranking, are tried when an upstream fails.
    #[serde(default = "default_fallback")]
    pub fallback: usize,
    /// Longest wait for an upstream's response headers, and between two chunks of its body.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_ms: u64,
    /// Longest wait for a decision (queue included).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Largest request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// After SIGTERM, how long the requests in flight may take before the service exits anyway.
    #[serde(default = "default_drain")]
    pub drain_timeout_ms: u64,
    /// Use HTTP(S)_PROXY from the environment for upstreams (off: upstreams are reached directly).
    #[serde(default)]
    pub proxy_from_env: bool,
    #[serde(default)]
    pub batch: BatchSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    pub log: Option<LogSettings>,
    #[serde(default)]
    pub upstream: Vec<UpstreamSettings>,
}

fn default_router_model() -> String {
    "router".to_owned()
}
fn default_fallback() -> usize {
    1
}
fn default_upstream_timeout() -> u64 {
    30_000
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_drain() -> u64 {
    30_000
}

impl Default for ServeFile {
    fn default() -> Self {
        // An empty file has every default.
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field of serve.toml has a default"))
    }
}

/// How concurrent decisions are batched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most queries in one encoder batch.
    #[serde(default = "default_batch_size")]
    pub max_size: usize,
    /// How long the first query of a batch waits for more (µs), while the batch holds fewer than
    /// the previous one did; 0 takes only those already queued.
    #[serde(default = "default_batch_wait")]
    pub max_wait_us: u64,
    /// Most queries waiting; more get 503 with `Retry-After`.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_batch_size() -> usize {
    32
}
fn default_batch_wait() -> u64 {
    2000
}
fn default_queue() -> usize {
    256
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings { max_size: default_batch_size(), max_wait_us: default_batch_wait(), queue: default_queue() }
    }
}

/// Client keys (bearer tokens) and the admin key; none set: the API is open.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// A file with one client key per line.
    pub api_keys_file: Option<PathBuf>,
    /// An environment variable holding client keys, separated by commas.
    pub api_keys_env: Option<String>,
    /// An environment variable holding the key of `POST /admin/reload` (unset: no reload by HTTP).
    pub admin_key_env: Option<String>,
}

/// The decision log: one JSON line per request, rotated by size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub path: PathBuf,
    /// Size at which the file is moved to `<path>.1` (older ones to `.2`, ...).
    #[serde(default = "default_log_bytes")]
    pub max_bytes: u64,
    /// How many rotated files are kept.
    #[serde(default = "default_log_keep")]
    pub keep: usize,
    /// Write the routed text itself (off: only its BLAKE3 hash).
    #[serde(default)]
    pub text: bool,
}

fn default_log_bytes() -> u64 {
    64 << 20
}
fn default_log_keep() -> usize {
    3
}

/// One LLM's upstream: an OpenAI-compatible server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// The LLM's name in the router.
    pub llm: String,
    /// The API base, e.g. `http://127.0.0.1:9001/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// The model id the upstream expects.
    pub model: String,
    /// The environment variable holding the upstream's API key.
    pub api_key_env: Option<String>,
}

/// A loaded router as the service sees it.
#[derive(Debug, Clone)]
pub struct RouterInfo {
    /// `routerdc`, `knn`, `cluster` or `mlp`.
    pub kind: String,
    /// The LLMs, in the router's order.
    pub models: Vec<String>,
    /// Each LLM's mean cost per query on the router's training rows, when recorded.
    pub costs: Option<Vec<f64>>,
    /// Whether the scores are probabilities that sum to one (RouterDC's softmax).
    pub probabilities: bool,
    /// λ charged when a request names none (set by the service: serve.toml's `cost_rate`, else
    /// the router's `calibration.json`, else 0).
    pub cost_rate: f64,
}

/// A router ready to decide: per text, one score per LLM (higher is better).
pub trait Decide: Send {
    fn info(&self) -> &RouterInfo;
    fn scores(&mut self, texts: &[&str]) -> Result<Vec<Vec<f64>>>;
}

/// Loads the router at a path with its encoder in a precision (at start-up and on every reload).
pub type Loader = Arc<dyn Fn(&Path, crate::hf::Quantize) -> Result<Box<dyn Decide>> + Send + Sync>;

/// Read `serve.toml`, with its relative paths made relative to the file's folder.
pub fn read_serve_file(path: &Path) -> Result<ServeFile> {
    let bytes = crate::io::read_bytes(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut file: ServeFile = toml::from_str(&text).map_err(|error| {
        let line = error.span().map_or(0, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        Error::bad_file(
            path,
            format!("line {line}: {}", error.message()),
            "README, \"Serving\", lists the keys of serve.toml",
            None,
        )
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    if let Some(keys) = &mut file.auth.api_keys_file {
        *keys = base.join(&*keys);
    }
    if let Some(log) = &mut file.log {
        log.path = base.join(&log.path);
    }
    check_serve_file(&file).map_err(|message| Error::bad_file(path, message, "README, \"Serving\"", None))?;
    Ok(file)
}

fn check_serve_file(file: &ServeFile) -> std::result::Result<(), String> {
    if file.router_model.trim().is_empty() {
        return Err("`router_model` is empty".into());
    }
    if let Some(rate) = file.cost_rate
        && !(rate >= 0.0 && rate.is_finite())
    {
        return Err(format!("`cost_rate` = {rate} is not a non-negative number"));
    }
    if file.batch.max_size == 0 || file.batch.queue == 0 {
        return Err("`batch.max_size` and `batch.queue` must be at least 1".into());
    }
    if file.max_body_bytes == 0 || file.upstream_timeout_ms == 0 || file.request_timeout_ms == 0 {
        return Err("`max_body_bytes`, `upstream_timeout_ms` and `request_timeout_ms` must be above 0".into());
    }
    let mut seen = BTreeSet::new();
    for (index, upstream) in file.upstream.iter().enumerate() {
        if !seen.insert(upstream.llm.as_str()) {
            return Err(format!("`upstream[{index}]`: LLM `{}` has a second upstream", upstream.llm));
        }
        if !(upstream.base_url.starts_with("http://") || upstream.base_url.starts_with("https://")) {
            return Err(format!("`upstream[{index}].base_url` `{}` is not an http(s) URL", upstream.base_url));
        }
        if upstream.model == file.router_model {
            return Err(format!("`upstream[{index}].model` is `{}`, the router's own model name", upstream.model));
        }
    }
    Ok(())
}

/// Upstreams must cover the router's LLMs exactly (or be absent: a decision-only service).
pub fn check_upstreams(file: &ServeFile, info: &RouterInfo, router: &Path) -> Result<()> {
    if file.upstream.is_empty() {
        return Ok(());
    }
    let hint = "serve.toml needs one [[upstream]] per LLM of the router, with `llm` as the router names it";
    for upstream in &file.upstream {
        if !info.models.contains(&upstream.llm) {
            return Err(Error::setting(
                "upstream.llm",
                format!(
                    "`{}` is not an LLM of the router `{}` (its LLMs: {}); {hint}",
                    upstream.llm,
                    router.display(),
                    info.models.join(", ")
                ),
            ));
        }
    }
    for model in &info.models {
        if !file.upstream.iter().any(|upstream| &upstream.llm == model) {
            return Err(Error::setting(
                "upstream",
                format!("the router `{}`'s LLM `{model}` has no upstream; {hint}", router.display()),
            ));
        }
    }
    Ok(())
}

/// Run the service until SIGTERM or SIGINT.
pub fn run(config: &ServeConfig, loader: Loader, quiet: bool) -> Result<()> {
    let file = match &config.config {
        Some(path) => read_serve_file(path)?,
        None => ServeFile::default(),
    };
    app::run(config, file, loader, quiet)
}
