#!/usr/bin/env bash
# convert benchmark: `routerdc convert` vs `pandas.read_pickle` + `to_parquet` on the same
# RouterBench-sized pickle, same run, 3 runs each. Makes a venv with pandas and pyarrow under
# $ROUTERDC_CACHE/bench-venv. Usage: bench/convert/run.sh [ROWS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# A venv of its own: pandas' to_parquet needs pyarrow, which must not enter routerdc's test venv
# (with pyarrow installed, pandas 3 pickles strings as pyarrow arrays by default).
bench_venv="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/bench-venv"
[ -x "$bench_venv/bin/python" ] || python3 -m venv "$bench_venv"
python="$bench_venv/bin/python"
"$python" -c 'import pandas, pyarrow' 2>/dev/null || "$python" -m pip install --quiet pandas pyarrow
work="${BENCH_DIR:-/tmp/routerdc-bench-convert}"
mkdir -p "$work"
cargo build --release --locked --quiet
bin="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/routerdc"
[ -f "$work/frame-${1:-36500}.pkl" ] || "$python" bench/convert/generate.py "$work/frame-${1:-36500}.pkl" "${1:-36500}"
pkl="$work/frame-${1:-36500}.pkl"
echo "input: $(du -m "$pkl" | cut -f1) MB pickle, ${1:-36500} rows; $(nproc) cores"
warm=("$pkl")
source bench/measure.sh
measure routerdc "$bin" --quiet convert --out "$work/out-routerdc" "$pkl"
measure pandas "$python" -c "import pandas as pd, sys; pd.read_pickle(sys.argv[1]).to_parquet(sys.argv[2])" "$pkl" "$work/pandas.parquet"
echo "speed-up (median pandas / median routerdc): $("$python" -c "print(round($(cat "$work/pandas.median")/$(cat "$work/routerdc.median"), 1))")x"
