//! The HTTP handlers. Every error answer has OpenAI's error shape; every request is counted in
//! `/metrics` and, with a decision log, written to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::RouterInfo;
use super::app::App;
use super::batch::Refused;
use super::proxy;
use super::request::{self, ApiError, CostAsk, Ranked};

type Shared = State<Arc<App>>;

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(error.status, &error.body());
    if error.status == 503 {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok())
}

/// 401: no client key, or a wrong one.
fn unauthorized() -> ApiError {
    ApiError {
        code: Some("invalid_api_key"),
        ..ApiError::new(401, "authentication_error", "a missing or wrong API key: send `Authorization: Bearer KEY`")
    }
}

/// The request's body, after the client key is checked.
fn checked_body(app: &App, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    if !app.authorized(authorization(headers)) {
        return Err(unauthorized());
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                413,
                "invalid_request_error",
                format!("the request body is larger than max_body_bytes ({} bytes)", app.file.max_body_bytes),
            )
        } else {
            ApiError::new(400, "invalid_request_error", format!("the request body could not be read: {rejection}"))
        }
    })
}

/// A decision: the router that made it, its scores, the ranking, the λ charged and the time.
struct Decision {
    info: Arc<RouterInfo>,
    scores: Vec<f64>,
    ranked: Vec<Ranked>,
    rate: f64,
    ms: f64,
}

async fn decide(app: &App, text: String, ask: CostAsk, started: Instant) -> Result<Decision, ApiError> {
    let receiver = app.batcher.submit(text).map_err(|refused| match refused {
        Refused::Full => ApiError::new(503, "server_error", "the decision queue is full; retry shortly"),
        Refused::Closed => ApiError::new(503, "server_error", "the service is shutting down"),
    })?;
    let timeout = Duration::from_millis(app.file.request_timeout_ms);
    let (scores, info) = tokio::time::timeout(timeout, receiver)
        .await
        .map_err(|_| {
            ApiError::new(
                504,
                "server_error",
                format!("no decision within request_timeout_ms ({} ms)", timeout.as_millis()),
            )
        })?
        .map_err(|_| ApiError::new(500, "server_error", "the decision thread stopped"))?
        .map_err(|message| ApiError::new(500, "server_error", format!("the router failed: {message}")))?;
    let rate = ask.cost_rate.unwrap_or(info.cost_rate);
    let ranked = request::rank(&info, &scores, rate, ask)?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    app.metrics.decision_seconds.observe(ms / 1e3);
    Ok(Decision { info, scores, ranked, rate, ms })
}

/// What the decision log keeps of one request.
struct Entry<'a> {
    id: &'a str,
    route: &'static str,
    text: Option<&'a str>,
    decision: Option<&'a Decision>,
    model: &'a str,
    upstream_ms: Option<f64>,
    status: u16,
}

/// Count the request, and log it when a decision log is kept.
fn record(app: &App, entry: &Entry<'_>) {
    app.metrics.request(entry.route, entry.model, entry.status);
    let Ok(log) = app.log.lock() else { return };
    let Some(log) = log.as_ref() else { return };
    let mut line = serde_json::Map::new();
    let time =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64());
    line.insert("time".into(), time.into());
    line.insert("id".into(), entry.id.into());
    line.insert("route".into(), entry.route.into());
    if let Some(text) = entry.text {
        line.insert("text_blake3".into(), blake3::hash(text.as_bytes()).to_hex().as_str().into());
        if log.text {
            line.insert("text".into(), text.into());
        }
    }
    line.insert("model".into(), entry.model.into());
    if let Some(decision) = entry.decision {
        let scores: serde_json::Map<String, Value> =
            decision.info.models.iter().cloned().zip(decision.scores.iter().map(|&s| Value::from(s))).collect();
        line.insert("router".into(), decision.info.kind.clone().into());
        line.insert("scores".into(), Value::Object(scores));
        line.insert("cost_rate".into(), decision.rate.into());
        line.insert("decision_ms".into(), decision.ms.into());
    }
    if let Some(ms) = entry.upstream_ms {
        line.insert("upstream_ms".into(), ms.into());
    }
    line.insert("status".into(), entry.status.into());
    if !log.write(&Value::Object(line)) {
        app.metrics.log_dropped.inc();
    }
}

/// `POST /v1/route`: the decision only.
pub async fn route(State(app): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    let id = app.request_id();
    let mut text = None;
    let result = async {
        let body = request::parse_body(&checked_body(&app, &headers, body)?)?;
        let routed = text.insert(request::routed_text(&body, app.file.route_text)?);
        decide(&app, routed.clone(), request::cost_ask(&body)?, started).await
    }
    .await;
    let (mut response, decision) = match result {
        Ok(decision) => {
            let body = request::decision_json(&decision.info, &decision.ranked, decision.rate, decision.ms);
            (json_response(200, &body), Some(decision))
        }
        Err(error) => (error_response(&error), None),
    };
    let model = decision.as_ref().map_or("", |d| d.info.models[d.ranked[0].index].as_str());
    set_header(&mut response, "x-request-id", &id);
    let status = response.status().as_u16();
    let entry = Entry {
        id: &id,
        route: "/v1/route",
        text: text.as_deref(),
        decision: decision.as_ref(),
        model,
        upstream_ms: None,
        status,
    };
    record(&app, &entry);
    response
}

/// `POST /v1/chat/completions`: routed (`model` = the router's name) or passed through.
pub async fn chat(State(app): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    let id = app.request_id();
    let mut text = None;
    let mut decision = None;
    let mut served = String::new();
    let mut upstream_ms = None;
    let result = async {
        let mut body = request::parse_body(&checked_body(&app, &headers, body)?)?;
        let model = match body.get("model") {
            Some(Value::String(model)) => model.clone(),
            _ => return Err(ApiError::invalid("model", "`model` must be a string")),
        };
        if app.upstreams.is_empty() {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                "this service has no upstreams: it answers /v1/route only",
            ));
        }
        // The LLMs to try, in order.
        let candidates: Vec<usize> = if model == app.file.router_model {
            let routed = text.insert(request::routed_text(&body, app.file.route_text)?);
            let ask = request::cost_ask(&body)?;
            let made: &Decision = decision.insert(decide(&app, routed.clone(), ask, started).await?);
            let names = &made.info.models;
            made.ranked
                .iter()
                .filter_map(|entry| app.upstreams.iter().position(|upstream| upstream.llm == names[entry.index]))
                .take(1 + app.file.fallback)
                .collect()
        } else {
            match app.upstreams.iter().position(|upstream| upstream.model == model || upstream.llm == model) {
                Some(index) => vec![index],
                None => {
                    return Err(ApiError {
                        code: Some("model_not_found"),
                        ..ApiError::invalid(
                            "model",
                            format!(
                                "no upstream serves the model `{model}` (the router is `{}`)",
                                app.file.router_model
                            ),
                        )
                    });
                }
            }
        };
        body.remove("cost_rate");
        body.remove("max_cost");
        let timeout = Duration::from_millis(app.file.upstream_timeout_ms);
        let mut failures = Vec::new();
        for index in candidates {
            let upstream = &app.upstreams[index];
            body.insert("model".into(), upstream.model.clone().into());
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            match proxy::send(&app.client, upstream, bytes, timeout).await {
                Ok((response, seconds)) => {
                    app.metrics
                        .upstream_seconds
                        .get_or_create(&super::metrics::UpstreamLabels { model: upstream.llm.clone() })
                        .observe(seconds);
                    served.clone_from(&upstream.llm);
                    upstream_ms = Some(seconds * 1e3);
                    return Ok(response);
                }
                Err(failure) => {
                    app.metrics.upstream_failed(&upstream.llm, failure.reason);
                    eprintln!("request {id}: {}", failure.message);
                    failures.push(failure.message);
                }
            }
        }
        Err(ApiError::new(502, "upstream_error", format!("every upstream tried failed: {}", failures.join("; "))))
    }
    .await;
    let mut response = match result {
        Ok(upstream) => {
            let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
            let mut response = Response::new(Body::from_stream(upstream.bytes_stream()));
            *response.status_mut() = status;
            if let Some(content_type) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, content_type);
            }
            set_header(&mut response, "x-routerdc-model", &served);
            if let Some(decision) = &decision {
                set_header(&mut response, "x-routerdc-decision-ms", &format!("{:.3}", decision.ms));
            }
            response
        }
        Err(error) => error_response(&error),
    };
    set_header(&mut response, "x-request-id", &id);
    let status = response.status().as_u16();
    let entry = Entry {
        id: &id,
        route: "/v1/chat/completions",
        text: text.as_deref(),
        decision: decision.as_ref(),
        model: &served,
        upstream_ms,
        status,
    };
    record(&app, &entry);
    response
}

/// `GET /v1/models`: the router's name and the models the upstreams serve.
pub async fn models(State(app): Shared, headers: HeaderMap) -> Response {
    if !app.authorized(authorization(&headers)) {
        return error_response(&unauthorized());
    }
    let entry = |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "routerdc"});
    let mut data = vec![entry(&app.file.router_model)];
    data.extend(app.upstreams.iter().map(|upstream| entry(&upstream.model)));
    json_response(200, &json!({"object": "list", "data": data}))
}

pub async fn healthz() -> Response {
    json_response(200, &json!({"status": "ok"}))
}

/// Ready: a router is loaded and warm, and the service is not draining.
pub async fn readyz(State(app): Shared) -> Response {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return json_response(503, &json!({"ready": false, "why": "draining"}));
    }
    let info = app.current();
    json_response(200, &json!({"ready": true, "router": info.kind, "models": info.models}))
}

pub async fn metrics(State(app): Shared) -> Response {
    app.metrics.queue_depth.set(app.batcher.depth() as i64);
    let mut response = Response::new(Body::from(app.metrics.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// `POST /admin/reload` with the admin key.
pub async fn reload(State(app): Shared, headers: HeaderMap) -> Response {
    match app.admin(authorization(&headers)) {
        None => error_response(&ApiError::new(
            404,
            "invalid_request_error",
            "reload by HTTP is off: set `auth.admin_key_env` in serve.toml",
        )),
        Some(false) => error_response(&ApiError::new(401, "authentication_error", "a missing or wrong admin key")),
        Some(true) => match app.reload().await {
            Ok(info) => {
                eprintln!("reloaded the {} router ({} LLMs)", info.kind, info.models.len());
                json_response(200, &json!({"reloaded": true, "router": info.kind, "models": info.models}))
            }
            Err(error) => {
                eprintln!("reload refused, the old router stays: {error}");
                error_response(&ApiError::new(
                    422,
                    "invalid_request_error",
                    format!("reload refused, the old router stays: {error}"),
                ))
            }
        },
    }
}

pub async fn not_found() -> Response {
    error_response(&ApiError::new(404, "invalid_request_error", "no such endpoint"))
}
