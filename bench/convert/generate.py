"""Write a RouterBench-sized pandas pickle for the convert benchmark.

36,500 rows × 37 columns like RouterBench's 0shot.pkl: sample_id, a long prompt (a stringified
list of ~2,000 characters), eval_name, 11 model quality columns (some NaN), 11 `|total_cost` and
11 `|model_response` columns (~300 characters), oracle_model_to_route_to.

    python bench/convert/generate.py OUT.pkl [ROWS]
"""
import sys

import numpy as np
import pandas as pd

MODELS = ["WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106",
          "gpt-4-1106-preview", "meta/code-llama-instruct-34b-chat", "meta/llama-2-70b-chat",
          "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat"]
EVALS = ["mmlu-anatomy", "hellaswag", "grade-school-math", "arc-challenge", "mbpp", "winogrande", "mt-bench"]


def main():
    # Python string storage, as RouterBench's own pickles (pandas 2.x) have it.
    if pd.__version__ >= "2":
        pd.set_option("mode.string_storage", "python")
    out = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 36_500
    rng = np.random.default_rng(0)
    data = {
        "sample_id": [f"{EVALS[i % len(EVALS)]}.test.{i}" for i in range(rows)],
        "prompt": [str([f"Question {i}: " + "Which of the following best describes the process? " * 38 + "\nA) one\nB) two\n"]) for i in range(rows)],
        "eval_name": [EVALS[i % len(EVALS)] for i in range(rows)],
    }
    for m in MODELS:
        quality = rng.integers(0, 2, rows).astype(float)
        quality[rng.random(rows) < 0.002] = np.nan
        data[m] = quality
    for m in MODELS:
        data[f"{m}|model_response"] = [str([f"The answer is {i % 4}. " + "Because " * 35]) for i in range(rows)]
    for m in MODELS:
        data[f"{m}|total_cost"] = rng.random(rows) / 1000
    data["oracle_model_to_route_to"] = [MODELS[i % len(MODELS)] for i in range(rows)]
    pd.DataFrame(data).to_pickle(out)


if __name__ == "__main__":
    main()
