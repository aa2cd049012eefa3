//! A fake OpenAI-compatible upstream for the serve tests and bench/serve: `POST
//! /v1/chat/completions` answers a fixed completion at once (or an SSE stream when the body asks
//! for `"stream": true`), or fails with 500, or answers late, as told; it keeps the bodies it got.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;

/// How the upstream answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Answer,
    Fail,
    /// Answer after this many milliseconds.
    Late(u64),
}

/// The chunks of the SSE stream the upstream sends, in order.
pub const STREAM_CHUNKS: [&str; 3] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: [DONE]\n\n",
];

#[derive(Clone)]
struct Upstream {
    name: String,
    behaviour: Behaviour,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn chat(State(upstream): State<Upstream>, body: Bytes) -> Response {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    upstream.bodies.lock().unwrap().push(value.clone());
    match upstream.behaviour {
        Behaviour::Fail => {
            return Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(Body::from("down")).unwrap();
        }
        Behaviour::Late(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Behaviour::Answer => {}
    }
    if value["stream"] == true {
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream_chunks()))
            .unwrap();
    }
    let answer = serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": value["model"],
        "upstream": upstream.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    });
    Response::builder().header(header::CONTENT_TYPE, "application/json").body(Body::from(answer.to_string())).unwrap()
}

/// The stream's chunks, 50 ms apart, so that a proxy that buffers would be seen to.
fn stream_chunks() -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(0, |n| async move {
        let chunk = STREAM_CHUNKS.get(n)?;
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some((Ok(Bytes::from_static(chunk.as_bytes())), n + 1))
    })
}

/// A running fake upstream: its base URL (`http://127.0.0.1:PORT/v1`) and the bodies it got.
pub struct Running {
    pub base_url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// Start a fake upstream on `runtime`, on a free port of 127.0.0.1.
pub fn start(runtime: &tokio::runtime::Runtime, name: &str, behaviour: Behaviour) -> Running {
    start_on(runtime, name, behaviour, "127.0.0.1:0")
}

pub fn start_on(runtime: &tokio::runtime::Runtime, name: &str, behaviour: Behaviour, address: &str) -> Running {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let state = Upstream { name: name.to_owned(), behaviour, bodies: bodies.clone() };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat)).with_state(state);
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address)).unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await });
    Running { base_url, bodies }
}
