#!/usr/bin/env bash
# The main job on the bundled sample: import datasets/sample/*.json as scored tables, then
# print and write the baselines report. Offline; run scripts/setup.sh once before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-outputs/sample}"
cargo build --release --locked --quiet  # both binaries: routerdc and its libtorch side, routerdc-torch
routerdc() { cargo run --release --locked --quiet --bin routerdc -- "$@"; }
routerdc import --out "$out/tables" datasets/sample/*.json
routerdc report --tables "$out/tables" --out "$out/report" \
  --group id=mmlu_test,gsm8k_test,humaneval_test --group ood=arc_easy_test
