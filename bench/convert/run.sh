#!/usr/bin/env bash
# convert benchmark: `routerdc convert` vs `pandas.read_pickle` + `to_parquet` on the same
# RouterBench-sized pickle, same run, 3 runs each. Needs scripts/setup.sh; installs pyarrow into
# routerdc's venv if missing (pandas' to_parquet needs it). Usage: bench/convert/run.sh [ROWS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/venv/bin/python"
"$python" -c 'import pyarrow' 2>/dev/null || "$python" -m pip install --quiet pyarrow
work="${BENCH_DIR:-/tmp/routerdc-bench-convert}"
mkdir -p "$work"
cargo build --release --locked --quiet
bin="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/routerdc"
[ -f "$work/frame-${1:-36500}.pkl" ] || "$python" bench/convert/generate.py "$work/frame-${1:-36500}.pkl" "${1:-36500}"
pkl="$work/frame-${1:-36500}.pkl"
echo "input: $(du -m "$pkl" | cut -f1) MB pickle, ${1:-36500} rows; $(nproc) cores"
measure() {  # label, command...
  local label="$1"; shift
  local times=()
  for run in 1 2 3; do
    cat "$pkl" > /dev/null
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > /dev/null 2> "$work/$label.log"
    read -r seconds kb < "$work/time.txt"
    echo "$label run $run: ${seconds} s, peak RSS $((kb / 1024)) MB"
    times+=("$seconds")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p > "$work/$label.median"
  echo "$label median: $(cat "$work/$label.median") s"
}
measure routerdc "$bin" --quiet convert --out "$work/out-routerdc" "$pkl"
measure pandas "$python" -c "import pandas as pd, sys; pd.read_pickle(sys.argv[1]).to_parquet(sys.argv[2])" "$pkl" "$work/pandas.parquet"
echo "speed-up (median pandas / median routerdc): $("$python" -c "print(round($(cat "$work/pandas.median")/$(cat "$work/routerdc.median"), 1))")x"
