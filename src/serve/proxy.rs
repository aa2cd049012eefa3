//! Forwarding a chat request to an LLM's upstream: the body as the client sent it, with `model`
//! set to the id the upstream expects; the answer (a stream too) passed back as it arrives.
//! An upstream that cannot be reached, times out, or answers 429 or 5xx has failed: the caller
//! tries the next-ranked LLM.

use std::time::{Duration, Instant};

use super::UpstreamSettings;
use crate::error::{Error, Result};

/// An upstream ready to call: the URL and the key (read from the environment at start-up).
#[derive(Clone)]
pub struct Upstream {
    pub llm: String,
    pub model: String,
    url: String,
    key: Option<String>,
}

impl std::fmt::Debug for Upstream {
    // The key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("llm", &self.llm).field("model", &self.model).field("url", &self.url).finish()
    }
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings) -> Result<Upstream> {
        let key = match &settings.api_key_env {
            None => None,
            Some(name) => match std::env::var(name) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(Error::setting(
                        "upstream.api_key_env",
                        format!(
                            "the environment variable `{name}` (the key of LLM `{}`'s upstream) is not set",
                            settings.llm
                        ),
                    ));
                }
            },
        };
        let url = format!("{}/chat/completions", settings.base_url.trim_end_matches('/'));
        Ok(Upstream { llm: settings.llm.clone(), model: settings.model.clone(), url, key })
    }
}

/// Why an attempt failed (the metric's `reason`), and what to tell the client.
#[derive(Debug)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// The HTTP client for upstreams: no total timeout (streams may run long), a read timeout
/// between chunks, a connect timeout.
pub fn client(timeout: Duration, proxy_from_env: bool) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(timeout).read_timeout(timeout);
    if !proxy_from_env {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|source| Error::failed("Failed to build the upstream HTTP client", source))
}

/// Send `body` to `upstream`; the response once its headers are in, or why the attempt failed.
pub async fn send(
    client: &reqwest::Client,
    upstream: &Upstream,
    body: Vec<u8>,
    timeout: Duration,
) -> std::result::Result<(reqwest::Response, f64), Failure> {
    let mut request = client.post(&upstream.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    if let Some(key) = &upstream.key {
        request = request.bearer_auth(key);
    }
    let started = Instant::now();
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            return Err(Failure {
                reason: "timeout",
                message: format!(
                    "LLM `{}`: its upstream sent no answer within {} ms",
                    upstream.llm,
                    timeout.as_millis()
                ),
            });
        }
        Ok(Err(error)) => {
            let reason = if error.is_timeout() { "timeout" } else { "connect" };
            return Err(Failure {
                reason,
                message: format!("LLM `{}`: its upstream could not be reached ({})", upstream.llm, without_url(&error)),
            });
        }
        Ok(Ok(response)) => response,
    };
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure {
            reason: if status.is_server_error() { "5xx" } else { "429" },
            message: format!("LLM `{}`: its upstream answered {status}", upstream.llm),
        });
    }
    Ok((response, seconds))
}

/// An error's text with its causes, without its URL (which may carry credentials).
fn without_url(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    match error.url() {
        Some(url) => text.replace(url.as_str(), "<upstream>"),
        None => text,
    }
}
