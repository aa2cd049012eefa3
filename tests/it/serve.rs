//! `routerdc serve` over real HTTP on 127.0.0.1, with fake upstreams started by the test: the
//! decision endpoint, the proxy (bodies, SSE streams, fallback on 500 and on timeout), the
//! errors (400 naming the field, 401, 413, 503), metrics, the decision log, reload and SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::upstream::{self, Behaviour, STREAM_CHUNKS};
use crate::util::{ok, routerdc_with_env};

/// A kNN router (k = 1) over the topic questions, with the default encoder.
fn knn_router(dir: &Path) -> PathBuf {
    let records: Vec<Value> = crate::util::TOPIC_QUESTIONS
        .iter()
        .flat_map(|(best, questions)| {
            questions.iter().map(move |question| {
                let scores: serde_json::Map<String, Value> = ["llm-a", "llm-b", "llm-c"]
                    .iter()
                    .map(|m| ((*m).to_owned(), json!(f64::from(m == best))))
                    .collect();
                json!({"question": question, "scores": scores})
            })
        })
        .collect();
    let json_path = dir.join("mmlu_train.json");
    std::fs::write(&json_path, serde_json::to_vec(&records).unwrap()).unwrap();
    let tables = dir.join("tables");
    ok(&routerdc_with_env(["import", "--out", tables.to_str().unwrap(), json_path.to_str().unwrap()], &[]));
    let out = dir.join("router");
    ok(&routerdc_with_env(
        ["train", "--router", "knn", "--train", tables.to_str().unwrap(), "--out", out.to_str().unwrap(), "--k", "1"],
        &[],
    ));
    out
}

/// A running `routerdc serve`; killed when dropped. Its stderr is kept.
struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(router: &Path, config: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_routerdc"));
        command
            .args(["serve", "--router", router.to_str().unwrap(), "--config", config.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        {
            let (pipe, stderr) = (child.stderr.take().unwrap(), stderr.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(address) = line.strip_prefix("listening on ") {
                        let _ = sender.send(address.to_owned());
                    }
                    stderr.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let base = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the service did not start: {}", stderr.lock().unwrap()));
        Server { child, base, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    /// When each body chunk arrived, after the headers.
    chunks: Vec<(Duration, Vec<u8>)>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn post(runtime: &tokio::runtime::Runtime, url: &str, key: Option<&str>, body: impl Into<reqwest::Body>) -> Answer {
    runtime.block_on(async {
        let mut request = reqwest::Client::builder().no_proxy().build().unwrap().post(url).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let started = Instant::now();
        let (mut body, mut chunks) = (Vec::new(), Vec::new());
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
            chunks.push((started.elapsed(), chunk.to_vec()));
        }
        Answer { status, headers, body, chunks }
    })
}

fn get(runtime: &tokio::runtime::Runtime, url: &str, key: Option<&str>) -> Answer {
    runtime.block_on(async {
        let mut request = reqwest::Client::builder().no_proxy().build().unwrap().get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        Answer { status, headers, body: response.bytes().await.unwrap().to_vec(), chunks: Vec::new() }
    })
}

fn chat(question: &str, extra: Value) -> String {
    let mut body = json!({"model": "router", "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": question},
    ]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body.to_string()
}

#[test]
fn serve_routes_proxies_falls_back_and_refuses_bad_requests() {
    let temp = tempfile::tempdir().unwrap();
    let router = knn_router(temp.path());
    let runtime = runtime();
    let a = upstream::start(&runtime, "a", Behaviour::Answer);
    let b = upstream::start(&runtime, "b", Behaviour::Fail);
    let c = upstream::start(&runtime, "c", Behaviour::Late(5_000));
    std::fs::write(temp.path().join("keys.txt"), "client-key\n").unwrap();
    let config = temp.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"
fallback = 1
upstream_timeout_ms = 700
max_body_bytes = 4096
[auth]
api_keys_file = "keys.txt"
[log]
path = "decisions.jsonl"
[[upstream]]
llm = "llm-a"
base_url = "{}"
model = "a-model"
api_key_env = "A_KEY"
[[upstream]]
llm = "llm-b"
base_url = "{}"
model = "b-model"
[[upstream]]
llm = "llm-c"
base_url = "{}"
model = "c-model"
"#,
            a.base_url, b.base_url, c.base_url
        ),
    )
    .unwrap();
    let server = Server::start(&router, &config, &[("A_KEY", "secret-a")]);
    let key = Some("client-key");

    assert_eq!(get(&runtime, &server.url("/healthz"), None).status, 200);
    assert_eq!(get(&runtime, &server.url("/readyz"), None).json()["ready"], true);
    let models = get(&runtime, &server.url("/v1/models"), key).json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["router", "a-model", "b-model", "c-model"]);

    // Keys.
    let algebra = "How would I solve a quadratic equation?";
    assert_eq!(post(&runtime, &server.url("/v1/route"), None, json!({"prompt": algebra}).to_string()).status, 401);
    let wrong = post(&runtime, &server.url("/v1/route"), Some("nope"), json!({"prompt": algebra}).to_string());
    assert_eq!((wrong.status, wrong.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));

    // The decision.
    let decision = post(&runtime, &server.url("/v1/route"), key, chat(algebra, json!({})));
    assert_eq!(decision.status, 200, "{}", String::from_utf8_lossy(&decision.body));
    let decision = decision.json();
    assert_eq!(decision["model"], "llm-a", "{decision}");
    let ranked: Vec<&str> =
        decision["ranked"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(ranked, ["llm-a", "llm-b", "llm-c"], "ties keep the router's order");
    assert_eq!(decision["ranked"][0]["score"], 1.0);
    assert!(decision["decision_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(decision["router"], "knn");

    // Bad requests name the field; a router without costs has none to charge.
    let bad = |body: &str| {
        let answer = post(&runtime, &server.url("/v1/route"), key, body.to_owned());
        assert_eq!(answer.status, 400, "{body}");
        answer.json()["error"]["param"].as_str().unwrap().to_owned()
    };
    assert_eq!(bad("{not json"), "body");
    assert_eq!(bad(r#"{"messages": [{"role": "user", "content": 7}]}"#), "messages[0].content");
    assert_eq!(bad(r#"{"messages": [{"role": "user", "content": "x"}], "cost_rate": -1}"#), "cost_rate");
    assert_eq!(bad(r#"{"prompt": "x", "cost_rate": 0.5}"#), "cost_rate");
    assert_eq!(bad(r#"{"messages": [{"role": "system", "content": "x"}]}"#), "messages");
    let large = post(&runtime, &server.url("/v1/route"), key, json!({"prompt": "x".repeat(5000)}).to_string());
    assert_eq!(large.status, 413);
    assert!(large.json()["error"]["message"].as_str().unwrap().contains("max_body_bytes"));

    // The proxy: the chosen upstream gets the body with its own model id and the key of its
    // environment variable; the answer comes back as the upstream gave it.
    let answer = post(&runtime, &server.url("/v1/chat/completions"), key, chat(algebra, json!({"temperature": 0.5})));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-routerdc-model"), Some("llm-a"));
    assert!(answer.header("x-routerdc-decision-ms").unwrap().parse::<f64>().unwrap() > 0.0);
    assert_eq!(answer.json()["upstream"], "a");
    let sent = a.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["model"], "a-model");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["messages"][1]["content"], algebra);

    // A stream is passed through chunk by chunk, as it arrives.
    let streamed = post(&runtime, &server.url("/v1/chat/completions"), key, chat(algebra, json!({"stream": true})));
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    assert_eq!(String::from_utf8(streamed.body.clone()).unwrap(), STREAM_CHUNKS.concat());
    assert!(streamed.chunks.len() >= 2, "the stream came in one piece: {:?}", streamed.chunks);
    assert!(streamed.chunks.last().unwrap().0 >= Duration::from_millis(80), "{:?}", streamed.chunks);

    // History goes to llm-b, whose upstream fails (500): the next-ranked LLM answers.
    let history = "Who was the first emperor of Rome?";
    let fallback = post(&runtime, &server.url("/v1/chat/completions"), key, chat(history, json!({})));
    assert_eq!((fallback.status, fallback.header("x-routerdc-model")), (200, Some("llm-a")));
    assert_eq!(b.bodies.lock().unwrap().last().unwrap()["model"], "b-model", "llm-b was tried first");
    // Poetry goes to llm-c, whose upstream answers too late: the next-ranked LLM answers.
    let started = Instant::now();
    let late =
        post(&runtime, &server.url("/v1/chat/completions"), key, chat("Write a haiku about autumn leaves.", json!({})));
    assert_eq!((late.status, late.header("x-routerdc-model")), (200, Some("llm-a")));
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout did not cut the wait: {:?}", started.elapsed());
    // With no fallback left, the client is told what failed.
    let failed = post(&runtime, &server.url("/v1/chat/completions"), key, chat(history, json!({"model": "b-model"})));
    assert_eq!(failed.status, 502);
    assert!(failed.json()["error"]["message"].as_str().unwrap().contains("llm-b"), "{}", failed.json());

    // A model id of an upstream passes through unrouted; an unknown one is refused.
    let direct = post(&runtime, &server.url("/v1/chat/completions"), key, chat(history, json!({"model": "a-model"})));
    assert_eq!((direct.status, direct.header("x-routerdc-model")), (200, Some("llm-a")));
    assert_eq!(direct.header("x-routerdc-decision-ms"), None);
    let unknown = post(&runtime, &server.url("/v1/chat/completions"), key, chat(history, json!({"model": "gpt-x"})));
    assert_eq!((unknown.status, unknown.json()["error"]["code"].as_str()), (400, Some("model_not_found")));

    // Metrics.
    let metrics = String::from_utf8(get(&runtime, &server.url("/metrics"), None).body).unwrap();
    for line in [
        r#"routerdc_requests_total{route="/v1/route",model="llm-a",status="200"} 1"#,
        r#"routerdc_upstream_failures_total{model="llm-b",reason="5xx"} 2"#,
        r#"routerdc_upstream_failures_total{model="llm-c",reason="timeout"} 1"#,
        "routerdc_decision_seconds_count",
        "routerdc_batch_size_count",
        "routerdc_queue_depth 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }

    // Shut down: the decision log holds every request, with hashes and no text; stderr has no
    // query text and no key.
    server.signal(libc::SIGTERM);
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let log = std::fs::read_to_string(temp.path().join("decisions.jsonl")).unwrap();
    let lines: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.len() >= 15, "{log}");
    let routed = lines.iter().find(|l| l["route"] == "/v1/route" && l["status"] == 200).unwrap();
    assert_eq!(routed["text_blake3"], blake3::hash(algebra.as_bytes()).to_hex().as_str());
    assert_eq!(routed["scores"]["llm-a"], 1.0);
    assert!(!log.contains(algebra) && !log.contains("client-key"));
    let stderr = server.stderr();
    assert!(!stderr.contains("emperor") && !stderr.contains("secret-a"), "{stderr}");
}

#[test]
fn a_full_queue_answers_503_and_sigterm_drains_requests_in_flight() {
    let temp = tempfile::tempdir().unwrap();
    let router = knn_router(temp.path());
    let runtime = runtime();
    let slow = upstream::start(&runtime, "slow", Behaviour::Late(1_500));
    let config = temp.path().join("serve.toml");
    let upstreams: String = ["llm-a", "llm-b", "llm-c"]
        .iter()
        .map(|llm| format!("[[upstream]]\nllm = \"{llm}\"\nbase_url = \"{}\"\nmodel = \"{llm}\"\n", slow.base_url))
        .collect();
    std::fs::write(&config, format!("[batch]\nmax_size = 1\nmax_wait_us = 0\nqueue = 1\n{upstreams}")).unwrap();
    let server = Server::start(&router, &config, &[]);

    // 24 long queries at once, one queue place: most are refused at once, with Retry-After.
    let long = "Explain the history of the Roman Empire in detail, please. ".repeat(30);
    let url = server.url("/v1/route");
    let answers: Vec<(u16, Option<String>)> = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let requests = (0..24).map(|_| {
            let request = client.post(&url).body(json!({"prompt": long}).to_string());
            async move {
                let response = request.send().await.unwrap();
                let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (response.status().as_u16(), retry)
            }
        });
        let handles: Vec<_> = requests.map(|request| tokio::spawn(request)).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    });
    let refused = answers.iter().filter(|(status, _)| *status == 503).count();
    assert!(refused > 0 && answers.iter().any(|(status, _)| *status == 200), "{answers:?}");
    assert!(answers.iter().filter(|(status, _)| *status == 503).all(|(_, retry)| retry.as_deref() == Some("1")));

    // A request in flight when SIGTERM comes is answered; then the service exits 0.
    let chat_url = server.url("/v1/chat/completions");
    let in_flight = {
        let body = chat("Who was the first emperor of Rome?", json!({}));
        runtime.spawn(async move {
            let response =
                reqwest::Client::builder().no_proxy().build().unwrap().post(chat_url).body(body).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    let (status, body) = runtime.block_on(in_flight).unwrap();
    assert_eq!(status, 200, "{body}");
    let mut server = server;
    assert_eq!(server.child.wait().unwrap().code(), Some(0), "{}", server.stderr());
    assert!(server.stderr().contains("drained"));
}

#[test]
fn a_broken_router_is_refused_on_reload_and_the_old_one_keeps_serving() {
    let temp = tempfile::tempdir().unwrap();
    let router = knn_router(temp.path());
    let runtime = runtime();
    let config = temp.path().join("serve.toml");
    std::fs::write(&config, "[auth]\nadmin_key_env = \"ADMIN_KEY\"\n").unwrap();
    let server = Server::start(&router, &config, &[("ADMIN_KEY", "admin")]);
    let route = || {
        post(&runtime, &server.url("/v1/route"), None, json!({"prompt": "Compose a sonnet about the sea."}).to_string())
    };
    assert_eq!(route().json()["model"], "llm-c");

    assert_eq!(post(&runtime, &server.url("/admin/reload"), Some("wrong"), "").status, 401);
    assert_eq!(post(&runtime, &server.url("/admin/reload"), Some("admin"), "").status, 200);

    // Break the router: its data file is no longer parquet.
    let data = router.join("knn.parquet");
    let good = std::fs::read(&data).unwrap();
    std::fs::write(&data, b"not parquet").unwrap();
    let refused = post(&runtime, &server.url("/admin/reload"), Some("admin"), "");
    assert_eq!(refused.status, 422);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("knn.parquet"), "{}", refused.json());
    assert_eq!(route().json()["model"], "llm-c", "the old router still answers");
    // SIGHUP does the same: refused while the router is broken, taken once it is whole again.
    let wait_for = |text: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.stderr().matches(text).count() < count {
            assert!(Instant::now() < deadline, "no {count} × `{text}` in\n{}", server.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    server.signal(libc::SIGHUP);
    wait_for("reload refused", 2);
    assert_eq!(route().status, 200);
    std::fs::write(&data, good).unwrap();
    server.signal(libc::SIGHUP);
    wait_for("reloaded the knn router", 2);
    assert_eq!(route().json()["model"], "llm-c");
}

#[test]
fn start_up_errors_name_what_is_wrong() {
    let temp = tempfile::tempdir().unwrap();
    let router = knn_router(temp.path());
    let serve = |toml: &str| {
        let config = temp.path().join("serve.toml");
        std::fs::write(&config, toml).unwrap();
        routerdc_with_env(["serve", "--router", router.to_str().unwrap(), "--config", config.to_str().unwrap()], &[])
    };
    let upstream =
        |llm: &str| format!("[[upstream]]\nllm = \"{llm}\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"{llm}\"\n");
    let cases = [
        (format!("{}{}", upstream("llm-a"), upstream("llm-b")), "`llm-c` has no upstream"),
        (
            format!("{}{}{}{}", upstream("llm-a"), upstream("llm-b"), upstream("llm-c"), upstream("llm-z")),
            "`llm-z` is not an LLM",
        ),
        ("fallbak = 2\n".to_owned(), "line 1: unknown field `fallbak`"),
        ("cost_rate = 0.1\n".to_owned(), "without costs"),
        (
            format!(
                "{}{}{}api_key_env = \"NO_SUCH_KEY_VARIABLE\"\n",
                upstream("llm-a"),
                upstream("llm-b"),
                upstream("llm-c")
            ),
            "NO_SUCH_KEY_VARIABLE",
        ),
    ];
    for (toml, expected) in cases {
        let output = serve(&toml);
        let stderr = crate::util::stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{toml}\n{stderr}");
        assert!(stderr.contains(expected), "{toml}\nexpected `{expected}` in\n{stderr}");
    }
    let output = routerdc_with_env(["serve", "--router", temp.path().to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::util::stderr(&output).contains("holds no router"));
}

/// A RouterDC checkpoint (frozen encoder, a few steps) over the topic questions, in `dir/routerdc`.
fn routerdc_checkpoint(dir: &Path) -> PathBuf {
    knn_router(dir);
    let out = dir.join("routerdc");
    let tables = dir.join("tables");
    ok(&routerdc_with_env(
        [
            "train",
            "--train",
            tables.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--freeze-encoder",
            "--steps",
            "20",
            "--batch-size",
            "6",
            "--samples-per-table",
            "12",
            "--learning-rate",
            "0.05",
            "--top-k",
            "1",
            "--last-k",
            "2",
            "--cluster-weight",
            "0",
        ],
        &[],
    ));
    out
}

#[test]
fn a_routerdc_checkpoint_serves_probabilities() {
    let temp = tempfile::tempdir().unwrap();
    let out = routerdc_checkpoint(temp.path());
    let config = temp.path().join("serve.toml");
    std::fs::write(&config, "route_text = \"user\"\n").unwrap();
    let server = Server::start(&out, &config, &[]);
    let runtime = runtime();
    let body = json!({"messages": [{"role": "user", "content": "Who was the first emperor of Rome?"},
        {"role": "assistant", "content": "Augustus."}, {"role": "user", "content": "And the second?"}]});
    let decision = post(&runtime, &server.url("/v1/route"), None, body.to_string()).json();
    assert_eq!(decision["router"], "routerdc", "{decision}");
    let ranked = decision["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 3);
    let total: f64 = ranked.iter().map(|r| r["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{decision}");
    assert!(ranked.windows(2).all(|pair| pair[0]["probability"].as_f64() >= pair[1]["probability"].as_f64()));
    assert_eq!(decision["model"], ranked[0]["model"]);
    // `route` on the same text (both user messages, as `route_text = "user"` joins them) gives
    // the same probabilities.
    let jsonl = temp.path().join("query.jsonl");
    std::fs::write(&jsonl, json!({"text": "Who was the first emperor of Rome?\nAnd the second?"}).to_string()).unwrap();
    let checkpoint = out.join("best.safetensors");
    let routed = routerdc_with_env(
        ["route", "--checkpoint", checkpoint.to_str().unwrap(), "--jsonl", jsonl.to_str().unwrap()],
        &[],
    );
    ok(&routed);
    let line: Value = serde_json::from_str(crate::util::stdout(&routed).trim()).unwrap();
    assert_eq!(line["llm"], decision["model"]);
    for entry in ranked {
        let theirs = line["probs"][entry["model"].as_str().unwrap()].as_f64().unwrap();
        assert!((theirs - entry["probability"].as_f64().unwrap()).abs() < 1e-6, "{line} vs {decision}");
    }
    drop(server);
    // With the encoder in int8: the service and `route --quantize int8` agree with each other,
    // and their probabilities are near float32's but not float32's.
    std::fs::write(&config, "route_text = \"user\"\nquantize = \"int8\"\n").unwrap();
    let server = Server::start(&out, &config, &[]);
    let quantized = post(&runtime, &server.url("/v1/route"), None, body.to_string()).json();
    let routed = routerdc_with_env(
        [
            "route",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--jsonl",
            jsonl.to_str().unwrap(),
            "--quantize",
            "int8",
        ],
        &[],
    );
    ok(&routed);
    let line: Value = serde_json::from_str(crate::util::stdout(&routed).trim()).unwrap();
    let mut moved = 0f64;
    for entry in quantized["ranked"].as_array().unwrap() {
        let model = entry["model"].as_str().unwrap();
        let probability = entry["probability"].as_f64().unwrap();
        assert!((line["probs"][model].as_f64().unwrap() - probability).abs() < 1e-6, "{line} vs {quantized}");
        let float = ranked.iter().find(|r| r["model"] == model).unwrap()["probability"].as_f64().unwrap();
        assert!((float - probability).abs() < 0.05, "int8 moved {model} from {float} to {probability}");
        moved = moved.max((float - probability).abs());
    }
    assert!(moved > 1e-7, "int8 gave float32's probabilities: {quantized}");
}

#[test]
fn texts_scored_together_get_what_each_gets_alone() {
    let temp = tempfile::tempdir().unwrap();
    let out = routerdc_checkpoint(temp.path());
    let config = temp.path().join("serve.toml");
    // Of the six sent at once, the first may go alone (the batch before it held one text); the
    // others queue while it is scored and share batches of up to six, which wait up to half a
    // second for as many texts as the batch before held.
    std::fs::write(&config, "[batch]\nmax_size = 6\nmax_wait_us = 500000\n").unwrap();
    let server = Server::start(&out, &config, &[]);
    let runtime = runtime();
    // Six lengths: six passes, shared out between the encoder's workers where there are several cores.
    let texts = [
        "Why?",
        "What is 2 + 2?",
        "Who was the first emperor of Rome?",
        "Which gas do plants take in from the air to make their food, and what do they give off?",
        "Explain, step by step, how a bill becomes a law in a parliamentary democracy, naming who votes when.",
        "Write a Python function that returns the n-th Fibonacci number, then explain its running time and \
         how memoisation changes it, with an example for n = 30 and a note on recursion limits.",
    ];
    let body = |text: &str| json!({"prompt": text}).to_string();
    let alone: Vec<Value> =
        texts.iter().map(|text| post(&runtime, &server.url("/v1/route"), None, body(text)).json()).collect();
    let url = server.url("/v1/route");
    let together: Vec<Value> = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let sent: Vec<_> = texts.iter().map(|text| tokio::spawn(client.post(&url).body(body(text)).send())).collect();
        let mut answers = Vec::new();
        for answer in sent {
            answers.push(answer.await.unwrap().unwrap().json::<Value>().await.unwrap());
        }
        answers
    });
    let metrics = String::from_utf8(get(&runtime, &server.url("/metrics"), None).body).unwrap();
    let batches: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("routerdc_batch_size_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no batch count in\n{metrics}"));
    assert!(batches < 12.0, "the six texts sent at once did not share a batch: {batches} batches\n{metrics}");
    for (text, (alone, together)) in texts.iter().zip(alone.iter().zip(&together)) {
        assert_eq!(alone["model"], together["model"], "{text}");
        let probability = |decision: &Value, model: &Value| {
            let ranked = decision["ranked"].as_array().unwrap();
            ranked.iter().find(|r| &r["model"] == model).unwrap()["probability"].as_f64().unwrap()
        };
        for entry in alone["ranked"].as_array().unwrap() {
            let (mine, shared) = (entry["probability"].as_f64().unwrap(), probability(together, &entry["model"]));
            assert!((mine - shared).abs() < 1e-6, "{text}: alone {alone}, together {together}");
        }
    }
}
