"""The notebook-style Python merge that routerdc ingest is measured against.

What RouterDC's convert_dataset_7_model.ipynb does, made correct for 0.4.x files: per model,
json.loads every line, keep the first filter, score (softmax of the choices' log-likelihoods at
the gold choice if acc, else 0; gsm8k: share of the 10 generations whose `#### N` equals the
target's), build a pandas frame per model and merge the models on doc_id; write one RouterDC
JSON per task.

    python bench/ingest/baseline.py IN_DIR OUT_DIR
"""
import glob
import json
import os
import re
import sys

import numpy as np
import pandas as pd

ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")


def extract(text):
    match = ANSWER.search(text)
    return match.group(1) if match else None


def score(task, record):
    if task == "gsm8k":
        gold = extract(record["target"])
        gens = record["resps"][0]
        return sum(extract(g) == gold for g in gens) / len(gens)
    lls = np.array([float(choice[0][0]) for choice in record["resps"]])
    probs = np.exp(lls) / np.sum(np.exp(lls))
    return float(probs[int(record["target"])]) if record["acc"] == 1 else 0.0


def text(task, doc):
    if task == "gsm8k":
        return doc["question"]
    return doc["question"] + "".join(f"\n{l}. {c}" for l, c in zip("ABCD", doc["choices"]))


def main():
    in_dir, out_dir = sys.argv[1], sys.argv[2]
    frames = {}
    for path in sorted(glob.glob(os.path.join(in_dir, "*", "samples_*.jsonl"))):
        folder = os.path.dirname(path)
        results = glob.glob(os.path.join(folder, "results_*.json"))
        model = json.load(open(results[0]))["model_name"]
        task = re.match(r"samples_(.+)_\d{4}-\d\d-\d\dT[\d.-]+\.jsonl", os.path.basename(path)).group(1)
        rows, first_filter, seen = [], None, set()
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                first_filter = first_filter or record.get("filter")
                if record.get("filter") != first_filter or record["doc_id"] in seen:
                    continue
                seen.add(record["doc_id"])
                rows.append({"doc_id": record["doc_id"], "question": text(task, record["doc"]), model: score(task, record)})
        frame = pd.DataFrame(rows)
        if task in frames:
            frames[task] = frames[task].merge(frame.drop(columns=["question"]), on="doc_id", how="inner")
        else:
            frames[task] = frame
    os.makedirs(out_dir, exist_ok=True)
    for task, frame in frames.items():
        models = [c for c in frame.columns if c not in ("doc_id", "question")]
        records = [{"question": q, "scores": dict(zip(models, s))}
                   for q, s in zip(frame["question"], frame[models].itertuples(index=False, name=None))]
        with open(os.path.join(out_dir, f"{task}.json"), "w") as f:
            json.dump(records, f)


if __name__ == "__main__":
    main()
