# Sourced by the embed, cluster and train bench scripts (from the repository root): checks
# ROUTERDC_DATA, builds routerdc, and sets `python` (routerdc's venv: torch, transformers,
# scikit-learn), `pyarrow_python` (a venv of its own with pandas + pyarrow for reading parquet,
# kept out of the test venv, see bench/convert/run.sh), `bin` (the routerdc binary) and
# `encoder` (the default encoder's folder); `bin_torch` is routerdc-torch (hidden bench commands).
: "${ROUTERDC_DATA:?set ROUTERDC_DATA to the RouterDC data folder (../shared/routerdc-data)}"
python="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/venv/bin/python"
bench_venv="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/bench-venv"
[ -x "$bench_venv/bin/python" ] || python3 -m venv "$bench_venv"
pyarrow_python="$bench_venv/bin/python"
"$pyarrow_python" -c 'import pandas, pyarrow' 2>/dev/null || "$pyarrow_python" -m pip install --quiet pandas pyarrow
# setup.sh writes the git-ignored .cargo/config.toml (libtorch, the shared target dir); without
# it a fresh checkout would build everything again into ./target.
[ -f .cargo/config.toml ] || scripts/setup.sh
cargo build --release --locked --quiet
bin="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/routerdc"
encoder="$("$bin" doctor | sed -n 's/.*default encoder *//p')"

# paper_tables WORK: the paper's split2_model7 imported into WORK/tables, with the training tables
# copied to WORK/train and the others (test and out-of-distribution) to WORK/test.
paper_tables() {
  mkdir -p "$1/train" "$1/test"
  "$bin" --quiet import --default-split test --out "$1/tables" "$ROUTERDC_DATA"/split2_model7/*.json
  for table in "$1"/tables/*.parquet; do
    case "$(basename "$table")" in
      *_train.parquet | *-train.parquet) cp "$table" "$1/train/" ;;
      *) cp "$table" "$1/test/" ;;
    esac
  done
}
bin_torch="${bin}-torch"

# training_texts WORK: the paper's 5,935 training queries (split2_model7's *train* tables) imported
# into WORK/tables, and their texts in table order as a JSON list in WORK/texts.json.
training_texts() {
  "$bin" --quiet import --out "$1/tables" "$ROUTERDC_DATA"/split2_model7/*train*.json
  "$pyarrow_python" - "$1" <<'PY'
import json, os, sys, pandas as pd
work = sys.argv[1]
texts = []
for name in sorted(os.listdir(f"{work}/tables")):
    texts += pd.read_parquet(f"{work}/tables/{name}")["text"].tolist()
json.dump(texts, open(f"{work}/texts.json", "w"))
print(f"{len(texts)} queries, {len(set(texts))} distinct")
PY
}

# The paper's training settings (bench/train/paper.sh and buckets.sh): batch 64, top_k = last_k = 3,
# cluster loss, the step chosen on a held-out tenth of the training rows, evaluated every 100 steps;
# with the encoder trained also AdamW 5e-5, τ 1 and evaluations on a sample of 500.
# paper_losses and paper_rates are the same without the evaluation cadence and sample.
paper_losses=(--batch-size 64 --top-k 3 --last-k 3 --cluster-weight 1 --validation-ratio 0.1)
paper_settings=("${paper_losses[@]}" --eval-steps 100)
paper_rates=(--learning-rate 5e-5 --temperature 1)
paper_trained=("${paper_rates[@]}" --eval-sample 500)

# paper_test_report TABLES OUT NAME=CHECKPOINT...: `report` into OUT on the test rows of TABLES (the
# `tables` folder of paper_tables: task_best picks each task's LLM on the training tables) for the
# checkpoints, grouped as the paper (5 tables in distribution, 2 out of it); prints the bootstrap
# verdicts, then each checkpoint's and each baseline's group average with its interval.
paper_test_report() {
  local tables="$1" out="$2" checkpoints=() names=()
  shift 2
  for named in "$@"; do
    checkpoints+=(--checkpoint "$named")
    names+=("${named%%=*}")
  done
  "$bin" --quiet report --tables "$tables" --split test --out "$out" "${checkpoints[@]}" \
    --group id=mmlu_test,gsm8k-test,cmmlu_test,arc_challenge_test,humaneval_test --group ood=MATH_prealgebra,mbpp >/dev/null
  sed -n '/## Verdict/,/## acc (%)/p' "$out/report.md" | grep '^|'
  local routers
  routers="$(IFS='|'; echo "${names[*]}")"
  grep -E "^group,(id|ood),($routers|best_single|task_best|oracle)," "$out/baselines.csv" | cut -d, -f2,3,4,7,8,9
}

# paper_train_test WORK: the paper's training tables (split2_model7_cluster, with cluster ids) in
# WORK/train, and split2_model7's in- and out-of-distribution test tables in WORK/test.
paper_train_test() {
  "$bin" --quiet import --out "$1/train" "$ROUTERDC_DATA"/split2_model7_cluster/*.json
  local d="$ROUTERDC_DATA/split2_model7"
  "$bin" --quiet import --default-split test --out "$1/test" "$d/mmlu_test.json" "$d/gsm8k-test.json" \
    "$d/cmmlu_test.json" "$d/arc_challenge_test.json" "$d/humaneval_test.json" "$d/MATH_prealgebra.json" "$d/mbpp.json"
}

# paper_step_timing WORK (for step timings): WORK emptied and filled by paper_train_test, with
# humaneval's test table alone in WORK/humaneval (a short final evaluation); prints the machine
# line and sets `settings` to the paper's training settings on WORK/train.
paper_step_timing() {
  rm -rf "$1" && mkdir -p "$1/humaneval"
  paper_train_test "$1"
  cp "$1/test/humaneval_test.parquet" "$1/humaneval/"
  echo "machine: $(nproc) cores; encoder: $encoder; $(date -u +%FT%TZ)"
  settings=(--train "$1/train" "${paper_losses[@]}" "${paper_rates[@]}")
}
