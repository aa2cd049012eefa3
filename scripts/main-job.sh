#!/usr/bin/env bash
# The main job, offline, with the bundled default encoder (all-MiniLM-L6-v2):
#
#   routerdc run pipelines/quickstart.toml
#
# on the bundled sample (datasets/sample/: lm-evaluation-harness and bigcode-evaluation-harness
# outputs of four made-up models on seven tasks): ingest → cluster → train (RouterDC, kNN, cluster,
# MLP) → report, into outputs/quickstart/<stage>/, the report in outputs/quickstart/report/report.md. A second run
# skips every stage whose inputs and settings are unchanged. Extra arguments go to `routerdc run`
# (`--force`, `--from train`, `--set train.steps=100`, ...). The set-up (scripts/setup.sh) and the
# build (scripts/build.sh, with its progress shown; ~20-30 minutes the first time) come first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/build.sh
exec cargo run --release --locked --quiet --bin routerdc -- run pipelines/quickstart.toml "$@"
