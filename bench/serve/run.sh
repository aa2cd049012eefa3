#!/usr/bin/env bash
# Serving benchmark: `routerdc serve` against a Python server making the same decision
# (bench/serve/baseline.py: FastAPI + uvicorn + HF transformers, the same MiniLM and MLP router
# head), on the same query mix (1,000 test queries of the RouterDC paper's data, seeded), driven
# by oha (installed by this script into the routerdc cache). Measured, each server alone on the
# machine: decision latency p50/p99 at concurrency 1 and throughput + p99 at 8 and 32; the
# proxy's overhead (chat completions through a local upstream that answers at once, against the
# decision alone); the decisions of both servers on 300 queries (agreement); and a soak run
# (SOAK seconds, default 300) at 80% of routerdc's measured throughput at 32: failed requests
# and the service's RSS at start and end.
# QUANTIZE=int8 serves the encoder in int8 (`quantize = "int8"`) and adds a second Python
# baseline with its encoder through PyTorch's quantize_dynamic.
# Then concurrency 32 again with the servers taking turns (PAIRS rounds), the ratio from those.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/serve/run.sh   (DURATION=20 SOAK=300 PAIRS=3;
# SOAK_ONLY=R skips the comparison and soaks at R requests/s; QUANTIZE=none)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
cache="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}"
work="${BENCH_DIR:-/tmp/routerdc-bench-serve}"
duration="${DURATION:-20}"
soak="${SOAK:-300}"
pairs="${PAIRS:-3}"
quantize="${QUANTIZE:-none}"
threads="$(nproc)"
oha="$cache/tools/bin/oha"
[ -x "$oha" ] || cargo install oha --locked --root "$cache/tools"
pydeps="$cache/serve-bench-py"
PYTHONPATH="$pydeps" "$python" -c 'import fastapi, uvicorn' 2>/dev/null ||
  "$python" -m pip install --quiet --target "$pydeps" fastapi uvicorn
cargo build --release --locked --quiet --example fake_upstream
upstream_bin="$(dirname "$bin")/examples/fake_upstream"
rm -rf "$work"
paper_tables "$work"
"$bin" --quiet train --router mlp --train "$work/train" --out "$work/mlp"
"$pyarrow_python" - "$work" <<'PY'
import json, os, random, sys, pandas as pd
work = sys.argv[1]
texts = []
for name in sorted(os.listdir(f"{work}/test")):
    texts += pd.read_parquet(f"{work}/test/{name}")["text"].tolist()
random.Random(0).shuffle(texts)
texts = texts[:1000]
with open(f"{work}/route.jsonl", "w") as route, open(f"{work}/chat.jsonl", "w") as chat:
    for text in texts:
        messages = [{"role": "user", "content": text}]
        route.write(json.dumps({"messages": messages}) + "\n")
        chat.write(json.dumps({"model": "router", "messages": messages, "max_tokens": 1}) + "\n")
print(f"{len(texts)} test queries, mean {sum(map(len, texts)) / len(texts):.0f} characters")
PY
models="$("$python" -c "import json; print(' '.join(json.load(open('$work/mlp/router.json'))['models']))")"
{
  printf 'quantize = "%s"\n' "$quantize"
  for llm in $models; do printf '[[upstream]]\nllm = "%s"\nbase_url = "http://127.0.0.1:18190/v1"\nmodel = "%s"\n' "$llm" "$llm"; done
} > "$work/serve.toml"
printf 'quantize = "%s"\n' "$quantize" > "$work/soak.toml"

# oha's JSON summary as one line: requests/s, p50 and p99 in ms, and the status codes.
load() { # URL BODIES CONCURRENCY [extra oha flags]
  local url="$1" bodies="$2" concurrency="$3"; shift 3
  "$oha" --no-tui --output-format json -z "${duration}s" -c "$concurrency" -m POST -H 'content-type: application/json' \
    -Z "$bodies" "$@" "$url" | "$python" -c "
import json, sys
s = json.load(sys.stdin)
p = s['latencyPercentiles']
print(f\"c={$concurrency}: {s['summary']['requestsPerSec']:.1f} req/s, p50 {1e3 * p['p50']:.2f} ms, p99 {1e3 * p['p99']:.2f} ms, status {s['statusCodeDistribution']}, errors {s.get('errorDistribution', {})}\")"
}
wait_for() { # LOG TEXT
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1"; return 1
}
start_serve() { # CONFIG LOG: routerdc serve on 18180, ready; its pid in serve_pid
  "$bin" serve --router "$work/mlp" --config "$1" --listen 127.0.0.1:18180 2> "$2" &
  serve_pid=$!
  wait_for "$2" "listening on"
}
start_baseline() { # PRECISION PORT LOG: the Python server, ready; its pid in baseline_pid
  PYTHONPATH="$pydeps" "$python" bench/serve/baseline.py "$work/mlp" "$encoder" "$2" "$threads" "$1" 2> "$3" &
  baseline_pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$2/docs" && break; sleep 0.2; done
}
decisions() { # URL OUT: the chosen model of the first 300 queries, one request at a time
  "$python" - "$1" "$work/route.jsonl" "$2" <<'PY'
import json, sys, urllib.request
url, bodies, out = sys.argv[1:]
with open(out, "w") as f:
    for line in open(bodies).readlines()[:300]:
        request = urllib.request.Request(url, line.encode(), {"content-type": "application/json"})
        f.write(json.load(urllib.request.urlopen(request))["model"] + "\n")
PY
}

if [ -n "${SOAK_ONLY:-}" ]; then # re-measure the soak alone, at SOAK_ONLY requests/s
  printf 'c=32: %s req/s\n' "$(echo "$SOAK_ONLY / 0.8" | bc -l)" > "$work/routerdc.txt"
else
"$upstream_bin" 127.0.0.1:18190 2> "$work/upstream.log" &
upstream_pid=$!
trap 'kill $upstream_pid 2>/dev/null || true' EXIT
wait_for "$work/upstream.log" "fake upstream"
echo "machine: $threads cores; routerdc: $("$bin" --version); $("$oha" --version)"

echo "== routerdc serve (MLP router, default encoder, quantize = $quantize)"
start_serve "$work/serve.toml" "$work/serve.log"
decisions http://127.0.0.1:18180/v1/route "$work/routerdc.decisions"
for c in 1 8 32; do load http://127.0.0.1:18180/v1/route "$work/route.jsonl" "$c"; done | tee "$work/routerdc.txt"
echo "chat completions through the proxy (upstream answers at once):"
load http://127.0.0.1:18180/v1/chat/completions "$work/chat.jsonl" 1
echo "the fake upstream alone:"
load http://127.0.0.1:18190/v1/chat/completions "$work/chat.jsonl" 1
# Beyond the decision: the client's time less the decision the service reports, one request at a
# time, for the decision alone and for the proxied chat completion (same 300 queries).
"$python" - "$work" <<'PY'
import json, statistics, sys, time, urllib.request
work = sys.argv[1]
def beyond(url, bodies, decision):
    out = []
    for line in open(bodies).readlines()[:300]:
        request = urllib.request.Request(url, line.encode(), {"content-type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            body = response.read()
            ms = (time.perf_counter() - started) * 1e3
            out.append(ms - decision(response, body))
    return statistics.median(out)
route = beyond("http://127.0.0.1:18180/v1/route", f"{work}/route.jsonl", lambda r, b: json.loads(b)["decision_ms"])
chat = beyond("http://127.0.0.1:18180/v1/chat/completions", f"{work}/chat.jsonl",
              lambda r, b: float(r.headers["x-routerdc-decision-ms"]))
print(f"p50 beyond the decision: /v1/route {route:.2f} ms, /v1/chat/completions {chat:.2f} ms: the proxy adds {chat - route:.2f} ms")
PY
kill -TERM "$serve_pid" && wait "$serve_pid"

baselines=none
[ "$quantize" = none ] || baselines="none $quantize"
for precision in $baselines; do
echo "== Python baseline (FastAPI + uvicorn + HF transformers, same encoder and head; encoder in $precision)"
start_baseline "$precision" 18185 "$work/baseline.log"
decisions http://127.0.0.1:18185/v1/route "$work/baseline.decisions"
for c in 1 8 32; do load http://127.0.0.1:18185/v1/route "$work/route.jsonl" "$c"; done
kill "$baseline_pid" && wait "$baseline_pid" 2>/dev/null || true
echo "same decision on $(paste -d' ' "$work/routerdc.decisions" "$work/baseline.decisions" | awk '$1 == $2' | wc -l) of 300 queries"
done

# This machine's speed drifts (up to 2x within minutes), so the ratio at concurrency 32 is also
# taken from runs that take turns: every server up at once (each idle while another is loaded),
# PAIRS rounds of DURATION seconds each, and the ratio of the summed throughputs.
echo "== concurrency 32, taking turns ($pairs rounds)"
start_serve "$work/serve.toml" "$work/serve.log"
ports=(18180)
baseline_pids=()
for precision in $baselines; do
  port=$((18185 + ${#ports[@]}))
  start_baseline "$precision" "$port" "$work/baseline-$precision.log"
  baseline_pids+=("$baseline_pid")
  ports+=("$port")
done
names=(routerdc ${baselines//none/float32})
for port in "${ports[@]}"; do duration=5 load "http://127.0.0.1:$port/v1/route" "$work/route.jsonl" 32 > /dev/null; done
for round in $(seq "$pairs"); do
  for i in "${!ports[@]}"; do
    printf 'round %s, %s: %s\n' "$round" "${names[$i]}" "$(load "http://127.0.0.1:${ports[$i]}/v1/route" "$work/route.jsonl" 32)"
  done
done | tee "$work/turns.txt"
"$python" - "$work/turns.txt" <<'PY'
import collections, re, sys
total = collections.Counter()
for line in open(sys.argv[1]):
    name, rate = re.match(r"round \d+, (\S+): c=32: ([0-9.]+) req/s", line).groups()
    total[name] += float(rate)
for name in total:
    if name != "routerdc":
        print(f"routerdc / Python ({name}): {total['routerdc'] / total[name]:.2f}x (sum of the rounds' req/s)")
PY
kill -TERM "$serve_pid" && wait "$serve_pid"
kill "${baseline_pids[@]}" && wait "${baseline_pids[@]}" 2>/dev/null || true
fi

echo "== soak: ${soak} s at 80% of routerdc's throughput at 32, after 30 s of the same load"
rate="$(sed -n 's/^c=32: \([0-9.]*\) req.*/\1/p' "$work/routerdc.txt" | awk '{printf "%d", $1 * 0.8}')"
start_serve "$work/soak.toml" "$work/soak.log"
echo "RSS at start: $(ps -o rss= -p "$serve_pid") KiB"
duration=30 load http://127.0.0.1:18180/v1/route "$work/route.jsonl" 32 -q "$rate" > /dev/null
echo "RSS after warm-up: $(ps -o rss= -p "$serve_pid") KiB"
( for t in $(seq 30 30 "$soak"); do sleep 30; echo "RSS at ${t} s: $(ps -o rss= -p "$serve_pid") KiB"; done ) &
sampler=$!
duration="$soak" load http://127.0.0.1:18180/v1/route "$work/route.jsonl" 32 -q "$rate"
wait "$sampler" 2>/dev/null || true
echo "RSS at the end: $(ps -o rss= -p "$serve_pid") KiB (rate asked: $rate req/s)"
kill -TERM "$serve_pid" && wait "$serve_pid"
