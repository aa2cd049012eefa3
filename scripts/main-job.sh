#!/usr/bin/env bash
# The main job on the bundled sample, offline, with the bundled default encoder
# (all-MiniLM-L6-v2): import datasets/sample/*.json as scored tables, cluster the queries,
# train a router (frozen encoder, so that it takes seconds on a CPU), and write the report with
# the router's rows beside the baselines. Run scripts/setup.sh once before.
# (The sample holds test splits only, so the router is trained and reported on the same
# queries: this shows the pipeline working, not a held-out score.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-outputs/sample}"
cargo build --release --locked --quiet  # both binaries: routerdc and its libtorch side, routerdc-torch
routerdc() { cargo run --release --locked --quiet --bin routerdc -- "$@"; }
rm -rf "$out"  # a fresh run: no stale files from an earlier layout
routerdc import --out "$out/tables" datasets/sample/*.json
routerdc cluster --tables "$out/tables" --out "$out/clustered" --fit-on all -k 3
routerdc train --train "$out/clustered" --out "$out/router" --freeze-encoder --steps 200 \
  --batch-size 32 --eval-steps 50 --samples-per-table 100 --learning-rate 0.05 --temperature 0.1 --top-k 2 --last-k 2
routerdc report --tables "$out/clustered" --checkpoint "$out/router/best.safetensors" --out "$out/report" \
  --group id=mmlu_test,gsm8k_test,humaneval_test --group ood=arc_easy_test
