#!/usr/bin/env bash
# The main job, offline, with the bundled default encoder (all-MiniLM-L6-v2):
#
#   routerdc run pipelines/quickstart.toml
#
# on the bundled sample (datasets/sample/: lm-evaluation-harness and bigcode-evaluation-harness
# outputs of four made-up models on seven tasks): ingest → cluster → train → report, into
# outputs/quickstart/<stage>/, the report in outputs/quickstart/report/report.md. A second run
# skips every stage whose inputs and settings are unchanged. Extra arguments go to `routerdc run`
# (`--force`, `--from train`, `--set train.steps=100`, ...). Run scripts/setup.sh once before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked --quiet  # both binaries: routerdc and its libtorch side, routerdc-torch
exec cargo run --release --locked --quiet --bin routerdc -- run pipelines/quickstart.toml "$@"
