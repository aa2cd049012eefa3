//! A fake OpenAI-compatible upstream that answers at once, for bench/serve (the proxy's
//! overhead beyond the decision): `cargo run --release --example fake_upstream -- 127.0.0.1:9001`.
//! It is the serve tests' fake upstream (tests/it/upstream.rs).

#[path = "../tests/it/upstream.rs"]
#[allow(dead_code)]
mod upstream;

fn main() {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let running = upstream::start_on(&runtime, "fake", upstream::Behaviour::Answer, &address);
    eprintln!("fake upstream on {}", running.base_url);
    runtime.block_on(std::future::pending::<()>());
}
