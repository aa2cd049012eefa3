#!/usr/bin/env bash
# Two builds of routerdc on the paper's fine-tuning configuration, in the same go (issue 18):
# PAIRS rounds of a STEPS-step run of each build on the same batches, alternating which runs
# first, each under `perf stat` (CPU time and page faults); s/step after the first. The final
# evaluation routes humaneval's test table alone, so it stays short.
#
# A and B are folders that hold a build's `routerdc` and `routerdc-torch` (copied from the target
# folder that scripts/setup.sh sets, ~/.cache/routerdc/target/release), for example:
#   git checkout OLD && cargo build --release && mkdir -p /tmp/a && cp ~/.cache/routerdc/target/release/routerdc{,-torch} /tmp/a/
#   git checkout main && cargo build --release && mkdir -p /tmp/b && cp ~/.cache/routerdc/target/release/routerdc{,-torch} /tmp/b/
# ENV_A / ENV_B: settings for A's / B's runs, for one build under two settings, for example
#   ENV_A=ROUTERDC_MKL_INTEL_ONLY=1 bench/train/compare.sh /tmp/b /tmp/b
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/compare.sh A B [STEPS] [PAIRS]
set -euo pipefail
builds=("$(cd "${1:?give the folders of two builds}" && pwd)" "$(cd "${2:?give the folders of two builds}" && pwd)")
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
steps="${3:-11}"
pairs="${4:-2}"
source bench/common.sh
command -v perf >/dev/null || { echo "compare.sh needs perf (linux-perf)" >&2; exit 2; }
work="${BENCH_DIR:-/tmp/routerdc-bench-compare}"
paper_step_timing "$work"

envs=("${ENV_A:-}" "${ENV_B:-}")
run_steps() { # BUILD NAME
  read -r -a settings_env <<<"${envs[$2]}"
  env "${settings_env[@]}" perf stat -e task-clock,page-faults -o "$work/stat-$2" "$1/routerdc" train "${settings[@]}" --test "$work/humaneval" \
    --steps "$steps" --eval-steps 100000 --eval-sample 10 --out "$work/out-$2" 2>&1 |
    grep -E '^trained' | sed -E "s/; best.*//" | tr -d '\n'
  awk '/task-clock/ {printf "; CPU %.1f s", $1 / 1000} /page-faults/ {gsub(",", "", $1); printf "; %s page faults", $1}' \
    "$work/stat-$2"
  echo " ($1${envs[$2]:+, ${envs[$2]}})"
}
echo "== $pairs pairs of $steps steps"
for pair in $(seq "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then order=(0 1); else order=(1 0); fi
  for which in "${order[@]}"; do run_steps "${builds[$which]}" "$which"; done
done
"$pyarrow_python" - "$work" <<'EOF'
import sys
import pandas as pd
a, b = (pd.read_parquet(f"{sys.argv[1]}/out-{n}/train_log.parquet") for n in (0, 1))
print(f"largest difference between the two builds' step losses: {(a.loss - b.loss).abs().max():.3g}")
EOF
