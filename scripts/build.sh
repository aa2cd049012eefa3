#!/usr/bin/env bash
# Build both binaries (routerdc and routerdc-torch) in release mode, showing progress. The first
# build on a machine compiles ~500 crates (about 20-30 minutes on 2 cores); later ones only
# routerdc (a few minutes). Used by main-job.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="$(cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
if [ -z "$target" ] || [ ! -d "$target/release/deps" ]; then
  echo "build: first build on this machine: about 20-30 minutes on 2 cores (later builds take minutes)" >&2
fi
# Cargo's own progress: one line per crate when stderr is not a terminal, a bar when it is.
cargo build --release --locked --tests --bins
