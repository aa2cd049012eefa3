#!/usr/bin/env bash
# Ingest benchmark: routerdc ingest vs the notebook-style Python merge, same files, same run.
# Usage: bench/ingest/run.sh [N_MODELS] [N_DOCS] [N_GSM8K]   (default 10 50000 2000)
# Needs scripts/setup.sh (its venv has pandas and numpy) and GNU time (apt-get install time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/venv/bin/python"
work="${BENCH_DIR:-/tmp/routerdc-bench-ingest}"
cargo build --release --locked --quiet
bin="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/routerdc"
if [ ! -f "$work/.done-${1:-10}-${2:-50000}-${3:-2000}" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$python" bench/ingest/generate.py "$work/in" "${1:-10}" "${2:-50000}" "${3:-2000}"
  touch "$work/.done-${1:-10}-${2:-50000}-${3:-2000}"
fi
input_mb=$(du -sm "$work/in" | cut -f1)
echo "input: $input_mb MB in $(find "$work/in" -name 'samples_*' | wc -l) samples files; $(nproc) cores"
warm=("$work"/in/*/samples_*)
source bench/measure.sh
measure routerdc "$bin" --quiet ingest --out "$work/out-routerdc" "$work/in"
measure python "$python" bench/ingest/baseline.py "$work/in" "$work/out-python"
echo "speed-up (median python / median routerdc): $("$python" -c "print(round($(cat "$work/python.median")/$(cat "$work/routerdc.median"), 1))")x"
"$bin" --version > /dev/null; /usr/bin/time -f "%e" -o "$work/startup.txt" "$bin" --version > /dev/null
echo "routerdc start-up alone (--version, libtorch loading): $(cat "$work/startup.txt") s"
# Both must have computed the same tables.
"$bin" --quiet export --tables "$work/out-routerdc" --out "$work/out-routerdc-json"
"$python" - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
for name in sorted(os.listdir(f"{work}/out-python")):
    ours = json.load(open(f"{work}/out-routerdc-json/{name}"))
    theirs = json.load(open(f"{work}/out-python/{name}"))
    assert len(ours) == len(theirs), name
    worst = 0.0
    for a, b in zip(ours, theirs):
        assert a["question"] == b["question"] and list(a["scores"]) == list(b["scores"]), name
        worst = max(worst, max(abs(a["scores"][m] - b["scores"][m]) for m in a["scores"]))
    print(f"{name}: {len(ours)} rows identical up to {worst:.1e}")
PY
