"""Generate lm-evaluation-harness 0.4.8 outputs at scale for the ingest benchmark.

N_MODELS models × N_DOCS multiple-choice docs (mmlu-like, a 5-shot context repeated in each
choice's request, as lm-eval writes it) plus a gsm8k-like task with 10 sampled generations per
doc and two filters. One folder per model, as `lm_eval --output_path DIR --log_samples` leaves it.

    python3 bench/ingest/generate.py OUT_DIR [N_MODELS] [N_DOCS] [N_GSM8K]
"""
import json
import os
import random
import sys

DATE = "2025-06-01T12-00-00.000001"
FEWSHOT = "".join(
    f"The following are multiple choice questions (with answers) about anatomy.\n\nQuestion {k}: which bone is part of the "
    f"axial skeleton, case {k}?\nA. femur\nB. sternum\nC. radius\nD. fibula\nAnswer: B\n\n" for k in range(5)
)


def main():
    out = sys.argv[1]
    n_models = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    n_docs = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    n_gsm8k = int(sys.argv[4]) if len(sys.argv) > 4 else 2_000
    rng = random.Random(1)
    docs = [{"question": f"Which structure is described by statement {i}?", "subject": "anatomy",
             "choices": [f"option {i}-{c}" for c in "abcd"], "answer": i % 4} for i in range(n_docs)]
    gsm = [{"question": f"Sam has {i} marbles and finds {i % 7} more. How many now?",
            "answer": f"{i} + {i % 7} = {i + i % 7}\n#### {i + i % 7}"} for i in range(n_gsm8k)]
    for m in range(n_models):
        model = f"bench-org/model-{m:02d}"
        folder = os.path.join(out, model.replace("/", "__"))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"samples_mmlu_anatomy_{DATE}.jsonl"), "w") as f:
            for i, doc in enumerate(docs):
                context = FEWSHOT + f"Question: {doc['question']}\n" + "".join(f"{l}. {c}\n" for l, c in zip("ABCD", doc["choices"])) + "Answer:"
                lls = [round(rng.uniform(-8, -0.1), 6) for _ in range(4)]
                best = max(range(4), key=lambda k: (lls[k], -k))
                record = {
                    "doc_id": i, "doc": doc, "target": str(doc["answer"]),
                    "arguments": {f"gen_args_{k}": {"arg_0": context, "arg_1": f" {l}"} for k, l in enumerate("ABCD")},
                    "resps": [[[str(ll), str(k == best)]] for k, ll in enumerate(lls)],
                    "filtered_resps": [[str(ll), str(k == best)] for k, ll in enumerate(lls)],
                    "filter": "none", "metrics": ["acc", "acc_norm"], "doc_hash": f"{i:064x}", "prompt_hash": "0" * 64,
                    "target_hash": "0" * 64, "acc": 1.0 if best == doc["answer"] else 0.0, "acc_norm": 0.0,
                }
                f.write(json.dumps(record) + "\n")
        with open(os.path.join(folder, f"samples_gsm8k_{DATE}.jsonl"), "w") as f:
            for filter_name in ["strict-match", "flexible-extract"]:
                for i, doc in enumerate(gsm):
                    gold = doc["answer"].split("#### ")[1]
                    gens = [f"Counting gives {gold}.\n#### {gold}" if rng.random() < 0.6 else f"#### {int(gold) + 1}" for _ in range(10)]
                    record = {"doc_id": i, "doc": doc, "target": doc["answer"],
                              "arguments": {"gen_args_0": {"arg_0": f"Question: {doc['question']}\nAnswer:", "arg_1": {"until": ["Question:"]}}},
                              "resps": [gens], "filtered_resps": [gens[0].split("#### ")[-1]], "filter": filter_name,
                              "metrics": ["exact_match"], "doc_hash": f"{i:064x}", "exact_match": 0.0}
                    f.write(json.dumps(record) + "\n")
        with open(os.path.join(folder, f"results_{DATE}.json"), "w") as f:
            json.dump({"results": {"mmlu_anatomy": {}, "gsm8k": {}}, "model_name": model,
                       "config": {"model": "hf", "model_args": f"pretrained={model}"}}, f)


if __name__ == "__main__":
    main()
