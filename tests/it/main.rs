//! routerdc's integration tests: one binary, run with `cargo test --release`.

mod cli;
mod convert;
mod costs;
mod encoder;
mod hostile;
mod ingest;
mod layers;
mod pickle;
mod pipeline;
mod reference;
mod serve;
mod train;
mod upstream;
mod util;
