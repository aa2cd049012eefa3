//! The service: its state, start-up, signals, reload and shutdown; the handlers are in
//! [`super::handlers`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::routing::{get, post};

use super::batch::Batcher;
use super::decisions::DecisionLog;
use super::metrics::Metrics;
use super::proxy::{self, Upstream};
use super::{Decide, Loader, RouterInfo, ServeConfig, ServeFile, check_upstreams, handlers};
use crate::error::{Error, Result};

/// Everything a handler needs.
pub struct App {
    pub file: ServeFile,
    pub router_path: PathBuf,
    loader: Loader,
    /// The router in use (swapped on reload).
    pub info: RwLock<Arc<RouterInfo>>,
    pub batcher: Batcher,
    pub upstreams: Vec<Upstream>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub log: Mutex<Option<DecisionLog>>,
    /// BLAKE3 hashes of the client keys (empty: the API is open) and of the admin key.
    keys: Vec<blake3::Hash>,
    admin: Option<blake3::Hash>,
    pub draining: AtomicBool,
    reloading: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    started: u64,
}

/// The router `decider` describes, with the λ charged when a request names none: serve.toml's
/// `cost_rate`, else the router's `calibration.json`, else 0.
fn describe(decider: &dyn Decide, file: &ServeFile, router: &std::path::Path) -> Result<RouterInfo> {
    let mut info = decider.info().clone();
    info.cost_rate = crate::stages::calibrate::cost_rate_for(router, file.cost_rate, None)?;
    // The checks `route` makes of a rate: not negative, and costs to charge.
    crate::stages::route::charge(info.costs.as_deref(), info.cost_rate, router)?;
    Ok(info)
}

/// Load the router, check it against the upstreams and warm it up (one decision).
fn load(loader: &Loader, file: &ServeFile, router: &std::path::Path) -> Result<(Box<dyn Decide>, RouterInfo)> {
    let mut decider = loader(router, file.quantize)?;
    let info = describe(decider.as_ref(), file, router)?;
    check_upstreams(file, &info, router)?;
    decider.scores(&["warm up"])?;
    Ok((decider, info))
}

fn key_hashes(file: &ServeFile) -> Result<(Vec<blake3::Hash>, Option<blake3::Hash>)> {
    let mut keys = Vec::new();
    if let Some(path) = &file.auth.api_keys_file {
        let text = String::from_utf8_lossy(&crate::io::read_bytes(path)?).into_owned();
        keys.extend(text.lines().map(str::trim).filter(|key| !key.is_empty()).map(|key| blake3::hash(key.as_bytes())));
        if keys.is_empty() {
            return Err(Error::bad_file(path, "holds no key", "one client key per line", None));
        }
    }
    let variable = |name: &str, key: &str| -> Result<String> {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| Error::setting(key, format!("the environment variable `{name}` is not set")))
    };
    if let Some(name) = &file.auth.api_keys_env {
        let value = variable(name, "auth.api_keys_env")?;
        keys.extend(
            value.split(',').map(str::trim).filter(|key| !key.is_empty()).map(|key| blake3::hash(key.as_bytes())),
        );
    }
    let admin = match &file.auth.admin_key_env {
        Some(name) => Some(blake3::hash(variable(name, "auth.admin_key_env")?.trim().as_bytes())),
        None => None,
    };
    Ok((keys, admin))
}

/// Whether `authorization` (`Bearer KEY`) holds one of `keys` (compared as BLAKE3 hashes, in
/// constant time).
fn holds_key(authorization: Option<&str>, keys: &[blake3::Hash]) -> bool {
    let Some(key) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let hash = blake3::hash(key.trim().as_bytes());
    keys.iter().fold(false, |found, known| found | (*known == hash))
}

impl App {
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        self.keys.is_empty() || holds_key(authorization, &self.keys)
    }

    pub fn admin(&self, authorization: Option<&str>) -> Option<bool> {
        self.admin.map(|hash| holds_key(authorization, &[hash]))
    }

    /// A new request id: `<start>-<n>`.
    pub fn request_id(&self) -> String {
        format!("{:x}-{}", self.started, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub fn current(&self) -> Arc<RouterInfo> {
        match self.info.read() {
            Ok(info) => info.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Load the router folder again; the old router stays when the new one fails.
    pub async fn reload(self: &Arc<Self>) -> Result<Arc<RouterInfo>> {
        let _one_at_a_time = self.reloading.lock().await;
        let app = self.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Arc<RouterInfo>> {
            let (decider, info) = load(&app.loader, &app.file, &app.router_path)?;
            let info = Arc::new(info);
            let mut slot =
                app.batcher.slot.lock().map_err(|_| Error::failed("Failed to swap the router", "a panic"))?;
            slot.decider = decider;
            slot.info = info.clone();
            drop(slot);
            if let Ok(mut current) = app.info.write() {
                *current = info.clone();
            }
            Ok(info)
        })
        .await;
        loaded.unwrap_or_else(|error| Err(Error::failed("The reload failed", error)))
    }
}

pub fn run(config: &ServeConfig, file: ServeFile, loader: Loader, quiet: bool) -> Result<()> {
    let started = Instant::now();
    let (decider, info) = load(&loader, &file, &config.router)?;
    let upstreams = file.upstream.iter().map(Upstream::new).collect::<Result<Vec<_>>>()?;
    let (keys, admin) = key_hashes(&file)?;
    let client = proxy::client(Duration::from_millis(file.upstream_timeout_ms), file.proxy_from_env)?;
    let metrics = Metrics::new();
    let (log, log_writer) = match &file.log {
        Some(settings) => {
            let (log, writer) = DecisionLog::open(settings)?;
            (Some(log), Some(writer))
        }
        None => (None, None),
    };
    let batch_size = metrics.batch_size.clone();
    let (batcher, batch_thread) =
        Batcher::start(decider, Arc::new(info.clone()), &file.batch, move |size| batch_size.observe(size as f64));
    let app = Arc::new(App {
        router_path: config.router.clone(),
        loader,
        info: RwLock::new(Arc::new(info.clone())),
        batcher,
        upstreams,
        client,
        metrics,
        log: Mutex::new(log),
        keys,
        admin,
        draining: AtomicBool::new(false),
        reloading: tokio::sync::Mutex::new(()),
        next_id: AtomicU64::new(0),
        started: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs()),
        file,
    });
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .enable_all()
        .build()
        .map_err(|source| Error::failed("Failed to start the async runtime", source))?;
    let served = runtime.block_on(serve(app.clone(), config.listen, info, started, quiet));
    runtime.shutdown_timeout(Duration::from_secs(1));
    app.batcher.close();
    let _ = batch_thread.join();
    // Every decision-log line reaches the file before the process ends.
    if let Ok(mut log) = app.log.lock() {
        log.take();
    }
    if let Some(writer) = log_writer {
        let _ = writer.join();
    }
    served
}

async fn serve(
    app: Arc<App>,
    listen: std::net::SocketAddr,
    info: RouterInfo,
    started: Instant,
    quiet: bool,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| {
        Error::input_from(format!("cannot listen on {listen}"), "choose another --listen address", source)
    })?;
    let address =
        listener.local_addr().map_err(|source| Error::failed("Failed to read the listening address", source))?;
    let signals =
        |kind: SignalKind| signal(kind).map_err(|source| Error::failed("Failed to watch for signals", source));
    let (mut terminate, mut interrupt, mut hangup) =
        (signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?, signals(SignalKind::hangup())?);
    {
        let app = app.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match app.reload().await {
                    Ok(info) => eprintln!("reloaded the {} router ({} LLMs)", info.kind, info.models.len()),
                    Err(error) => eprintln!("reload refused, the old router stays: {error}"),
                }
            }
        });
    }
    let router = axum::Router::new()
        .route("/v1/route", post(handlers::route))
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/models", get(handlers::models))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/admin/reload", post(handlers::reload))
        .fallback(handlers::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(app.file.max_body_bytes))
        .with_state(app.clone());
    let draining = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let (app, draining) = (app.clone(), draining.clone());
        async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            app.draining.store(true, Ordering::SeqCst);
            draining.notify_one();
        }
    };
    if !quiet {
        eprintln!(
            "routerdc serve: the {} router `{}` ({} LLMs, {} upstreams), ready in {:.2} s",
            info.kind,
            app.router_path.display(),
            info.models.len(),
            app.upstreams.len(),
            started.elapsed().as_secs_f64()
        );
    }
    // Tests and scripts read this line for the address (port 0 takes a free one).
    eprintln!("listening on http://{address}");
    let drain = Duration::from_millis(app.file.drain_timeout_ms);
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    tokio::select! {
        served = server => served.map_err(|source| Error::failed("The server failed", source))?,
        () = async { draining.notified().await; tokio::time::sleep(drain).await } => {
            eprintln!("requests still in flight after drain_timeout_ms ({} ms): exiting", drain.as_millis());
        }
    }
    if !quiet {
        eprintln!("routerdc serve: drained, exiting");
    }
    Ok(())
}
