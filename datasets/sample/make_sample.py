"""Write the bundled sample: evaluation-harness outputs of four made-up models, as
lm-evaluation-harness (`--log_samples`) and bigcode-evaluation-harness write them, for README's
main job (`routerdc run pipelines/quickstart.toml`).

- lm-eval tasks: mmlu_high_school_geography, mmlu_high_school_chemistry, arc_easy, hellaswag
  (multiple choice) and gsm8k (5 sampled generations per question, two filters).
  demo/generalist-7b and demo/math-7b are written as lm-eval 0.4.8 does
  (`<model>/samples_<task>_<date>.jsonl` with `filter`, `metrics` and hashes); demo/code-7b and
  demo/chat-8b as lm-eval 0.4.5 does (no `filter` key: gsm8k's two filters are two blocks).
- bigcode tasks: humaneval and mbpp, 5 attempts per problem, per-sample pass logs beside
  `evaluation_results.json`, one folder per model and task; their texts come from problems/{humaneval,mbpp}.jsonl.

The questions are generated from templates; whether a model answers one is drawn from a skill
per (model, task, topic), so each model is best somewhere and the topic (what the encoder sees)
tells which. Deterministic: re-running rewrites identical files.

    python3 datasets/sample/make_sample.py
"""
import hashlib
import json
import math
import os
import random
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = "2026-10-01T12-00-00.000000"
MODELS = ["demo/generalist-7b", "demo/math-7b", "demo/code-7b", "demo/chat-8b"]
NEW_LAYOUT = {"demo/generalist-7b", "demo/math-7b"}  # lm-eval 0.4.8; the others 0.4.5

# P(correct) per model, for each (task, topic).
SKILL = {
    ("mmlu_high_school_geography", "capital"): [0.80, 0.45, 0.40, 0.70],
    ("mmlu_high_school_geography", "river"): [0.55, 0.40, 0.35, 0.85],
    ("mmlu_high_school_chemistry", "element"): [0.70, 0.75, 0.45, 0.50],
    ("mmlu_high_school_chemistry", "moles"): [0.35, 0.90, 0.40, 0.30],
    ("arc_easy", "physical"): [0.75, 0.55, 0.50, 0.80],
    ("arc_easy", "biology"): [0.80, 0.45, 0.40, 0.60],
    ("hellaswag", "everyday"): [0.55, 0.30, 0.30, 0.85],
    ("gsm8k", "shop"): [0.35, 0.85, 0.40, 0.45],
    ("gsm8k", "travel"): [0.30, 0.80, 0.30, 0.55],
    ("humaneval", "strings"): [0.30, 0.20, 0.75, 0.35],
    ("humaneval", "lists"): [0.25, 0.35, 0.70, 0.30],
    ("mbpp", "numbers"): [0.30, 0.55, 0.65, 0.30],
    ("mbpp", "text"): [0.35, 0.20, 0.70, 0.45],
}

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Canada", "Ottawa"),
            ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("India", "New Delhi"), ("Italy", "Rome"),
            ("Spain", "Madrid"), ("Ghana", "Accra"), ("Vietnam", "Hanoi"), ("Poland", "Warsaw")]
RIVERS = [("Egypt", "Nile"), ("Brazil", "Amazon"), ("Germany", "Rhine"), ("China", "Yangtze"), ("India", "Ganges"),
          ("Iraq", "Euphrates"), ("Mali", "Niger"), ("Russia", "Volga"), ("Hungary", "Danube"), ("Laos", "Mekong")]
ELEMENTS = [("H", "hydrogen"), ("O", "oxygen"), ("Fe", "iron"), ("Na", "sodium"), ("K", "potassium"), ("Au", "gold"),
            ("Ag", "silver"), ("Cu", "copper"), ("Pb", "lead"), ("Sn", "tin"), ("Hg", "mercury"), ("Zn", "zinc")]
MOLAR = [("water", 18), ("carbon dioxide", 44), ("methane", 16), ("ammonia", 17), ("sodium chloride", 58),
         ("glucose", 180), ("oxygen gas", 32), ("nitrogen gas", 28)]
PHYSICAL = ["ice melting", "water boiling", "sugar dissolving in tea", "a glass breaking", "butter softening",
            "fog forming on a mirror", "a puddle drying", "wax melting"]
BIOLOGY = ["a plant growing toward light", "a bird migrating south", "a bear sleeping through winter",
           "a frog changing from a tadpole", "a cactus storing water", "a fish breathing with gills"]
ACTIVITIES = [("Making tea", "pours hot water into a cup", ["adds a tea bag and waits.", "throws the cup at the wall.",
                                                           "paints the kettle blue.", "climbs onto the roof."]),
              ("Washing a car", "sprays the car with a hose", ["scrubs it with a soapy sponge.", "eats the sponge.",
                                                               "reads the hose a story.", "flies away."]),
              ("Tying shoes", "sits down and picks up a shoe", ["laces it and ties a knot.", "sings to the shoe.",
                                                                "plants the shoe in soil.", "mails it to a friend."]),
              ("Baking bread", "kneads the dough on a table", ["puts it in the oven to bake.", "wears it as a hat.",
                                                               "paints it red.", "throws it in a lake."])]
STRING_TASKS = ["count the vowels in s", "reverse the words of s", "return s with every word capitalised",
                "check whether s is a palindrome", "remove the duplicate letters of s", "return the longest word in s"]
LIST_TASKS = ["return the sum of the even numbers in xs", "return xs sorted by absolute value",
              "return the second largest item of xs", "return the running maximum of xs",
              "return the items of xs that appear once", "rotate xs left by k places"]


def doc_hash(doc):
    return hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False).encode()).hexdigest()


def mc_doc(task, topic, i, rng):
    """A document as the task's dataset holds it, its gold index, its choices and the context."""
    if task.startswith("mmlu"):
        if topic == "capital":
            country, answer = rng.choice(CAPITALS)
            question, pool = f"What is the capital of {country}?", [c for _, c in CAPITALS]
        elif topic == "river":
            country, answer = rng.choice(RIVERS)
            question, pool = f"Which river flows through {country}?", [r for _, r in RIVERS]
        elif topic == "element":
            symbol, answer = rng.choice(ELEMENTS)
            question, pool = f"Which element has the chemical symbol {symbol}?", [n for _, n in ELEMENTS]
        else:
            compound, mass = rng.choice(MOLAR)
            grams = mass * rng.randint(2, 5)
            answer = str(grams // mass)
            question, pool = f"How many moles are in {grams} g of {compound} (molar mass {mass} g/mol)?", \
                [str(n) for n in range(1, 9)]
        choices = [answer] + rng.sample([p for p in pool if p != answer], 3)
        rng.shuffle(choices)
        gold = choices.index(answer)
        subject = task.removeprefix("mmlu_")
        doc = {"question": question, "subject": subject, "choices": choices, "answer": gold}
        context = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n" \
                  + question + "".join(f"\n{l}. {c}" for l, c in zip("ABCD", choices)) + "\nAnswer:"
        return doc, gold, choices, context
    if task == "arc_easy":
        thing = rng.choice(PHYSICAL if topic == "physical" else BIOLOGY)
        if topic == "physical":
            choices = ["a physical change", "a chemical change", "a living process", "a magnetic effect"]
        else:
            choices = ["an adaptation of a living thing", "a chemical change", "a change of state", "erosion"]
        order = rng.sample(range(4), 4)
        choices = [choices[k] for k in order]
        gold = order.index(0)
        labels = ["A", "B", "C", "D"]
        doc = {"id": f"Sample_{topic}_{i}", "question": f"Which best describes {thing}?",
               "choices": {"text": choices, "label": labels}, "answerKey": labels[gold]}
        return doc, gold, choices, "Question: " + doc["question"] + "\nAnswer:"
    label, ctx_a, endings = rng.choice(ACTIVITIES)
    order = rng.sample(range(4), 4)
    endings = [endings[k] for k in order]
    person = rng.choice(["A man", "A woman", "A child", "An old man", "A teenager"])
    doc = {"ind": i, "activity_label": label, "ctx_a": f"{person} {ctx_a}.", "ctx_b": "then he",
           "label": str(order.index(0)), "endings": endings}
    context = (label + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize()).strip()
    return doc, order.index(0), endings, context


def mc_record(doc_id, doc, gold, choices, context, correct, gate, rng):
    """One multiple-choice record; `correct` decides whether `gate` (acc or acc_norm) is 1."""
    while True:
        lls = [round(rng.uniform(-7.0, -0.3), 6) for _ in choices]
        if gate == "acc_norm":
            norm = [ll / len(c) for ll, c in zip(lls, choices)]
            best = max(range(len(norm)), key=lambda k: (norm[k], -k))
        else:
            best = max(range(len(lls)), key=lambda k: (lls[k], -k))
        if (best == gold) == correct:
            break
    acc = 1.0 if max(range(len(lls)), key=lambda k: (lls[k], -k)) == gold else 0.0
    norm = [ll / len(c) for ll, c in zip(lls, choices)]
    acc_norm = 1.0 if max(range(len(norm)), key=lambda k: (norm[k], -k)) == gold else 0.0
    return {"doc_id": doc_id, "doc": doc, "target": gold, "arguments": [[context, " " + c] for c in choices],
            "resps": [[[ll, False]] for ll in lls], "filtered_resps": [[ll, False] for ll in lls],
            "acc": acc, "acc_norm": acc_norm}


def gsm8k_doc(topic, i, rng):
    a, b, c = rng.randint(3, 40), rng.randint(2, 9), rng.randint(1, 9)
    if topic == "shop":
        total = a + a * b + (a - c)
        question = (f"A shop sells {a} apples on Monday and {b} times as many on Tuesday. On Wednesday it sells "
                    f"{c} fewer than on Monday. How many apples does it sell in the three days?")
    else:
        total = a * b + c
        question = f"A bus drives {a} km each hour for {b} hours, then {c} km more. How far does it drive in total?"
    return {"question": question, "answer": f"Working it out step by step gives {total}.\n#### {total}"}


def gsm8k_records(doc_id, doc, skill, rng):
    gold = doc["answer"].split("#### ")[1]
    generations = [f"So the answer is {gold}.\n#### {gold}" if rng.random() < skill
                   else f"So the answer is {int(gold) + rng.randint(1, 9)}.\n#### {int(gold) + rng.randint(1, 9)}"
                   for _ in range(5)]
    first = generations[0].split("#### ")[1]
    arguments = [[f"Question: {doc['question']}\nAnswer:", {"until": ["Question:"], "do_sample": True, "temperature": 0.7}]]
    return [{"doc_id": doc_id, "doc": doc, "target": doc["answer"], "arguments": arguments, "resps": [generations],
             "filtered_resps": [first], "filter": name, "exact_match": 1.0 if first == gold else 0.0}
            for name in ("strict-match", "flexible-extract")]


def stringify(value):
    """lm-eval 0.4.3+ writes the leaves of resps/filtered_resps with str()."""
    if isinstance(value, list):
        return [stringify(v) for v in value]
    return str(value) if isinstance(value, (bool, float)) else value


def as_written(record, new_layout):
    """A record as lm-eval 0.4.8 (new_layout) or 0.4.5 writes it."""
    record = dict(record)
    record["resps"] = stringify(record["resps"])
    record["filtered_resps"] = stringify(record["filtered_resps"])
    record["arguments"] = {f"gen_args_{i}": {"arg_0": a[0], "arg_1": a[1]} for i, a in enumerate(record["arguments"])}
    record["doc_hash"] = doc_hash(record["doc"])
    record["prompt_hash"] = hashlib.sha256(record["arguments"]["gen_args_0"]["arg_0"].encode()).hexdigest()
    record["target"] = str(record["target"])
    record["target_hash"] = hashlib.sha256(record["target"].encode()).hexdigest()
    if new_layout:
        record.setdefault("filter", "none")
        record["metrics"] = [k for k in ("acc", "acc_norm", "exact_match") if k in record]
    else:
        record.pop("filter", None)
    return record


def topics(task):
    return [topic for (t, topic) in SKILL if t == task]


def skill(task, topic, model):
    return SKILL[(task, topic)][MODELS.index(model)]


def main():
    for folder in ("lm-eval", "bigcode", "problems"):
        shutil.rmtree(os.path.join(HERE, folder), ignore_errors=True)
    counts = {"mmlu_high_school_geography": 50, "mmlu_high_school_chemistry": 50, "arc_easy": 50, "hellaswag": 40,
              "gsm8k": 60, "humaneval": 40, "mbpp": 40}
    # Documents and topics, shared by every model.
    docs = {}
    for task, n in counts.items():
        rng = random.Random(f"routerdc-sample-docs-{task}")
        docs[task] = []
        for i in range(n):
            topic = topics(task)[i % len(topics(task))]
            if task == "gsm8k":
                docs[task].append((topic, gsm8k_doc(topic, i, rng)))
            elif task == "humaneval":
                what = rng.choice(STRING_TASKS if topic == "strings" else LIST_TASKS)
                arg = "s" if topic == "strings" else "xs"
                empty = '""' if arg == "s" else "[]"
                doc_line = what[0].upper() + what[1:]
                prompt = f'def task_{i}({arg}):\n    """{doc_line}.\n    >>> task_{i}({empty})\n    """\n'
                docs[task].append((topic, {"task_id": f"HumanEval/{i}", "prompt": prompt}))
            elif task == "mbpp":
                if topic == "numbers":
                    k = rng.randint(2, 9)
                    text, test = f"Write a function to find the sum of the multiples of {k} below n.", \
                        f"assert sum_multiples_{i}(20) == {sum(range(0, 20, k))}"
                else:
                    word = rng.choice(["banana", "level", "routing", "python", "encoder"])
                    text, test = f"Write a function to count the distinct characters of a string.", \
                        f"assert distinct_chars_{i}('{word}') == {len(set(word))}"
                docs[task].append((topic, {"task_id": 11 + i, "text": text, "test_list": [test]}))
            else:
                docs[task].append((topic, mc_doc(task, topic, i, rng)))

    os.makedirs(os.path.join(HERE, "problems"))
    for task in ("humaneval", "mbpp"):
        with open(os.path.join(HERE, "problems", f"{task}.jsonl"), "w") as f:
            for _, doc in docs[task]:
                f.write(json.dumps(doc) + "\n")

    for model in MODELS:
        new = model in NEW_LAYOUT
        short = model.replace("/", "__")
        folder = os.path.join(HERE, "lm-eval", short)
        os.makedirs(folder)
        lm_tasks = ["mmlu_high_school_geography", "mmlu_high_school_chemistry", "arc_easy", "hellaswag", "gsm8k"]
        for task in lm_tasks:
            rng = random.Random(f"routerdc-sample-{model}-{task}")
            if task == "gsm8k":
                pairs = [gsm8k_records(i, doc, skill(task, topic, model), rng) for i, (topic, doc) in enumerate(docs[task])]
                # 0.4.8 interleaves nothing: each filter's records are one block, in doc order.
                records = [p[0] for p in pairs] + [p[1] for p in pairs]
            else:
                gate = "acc_norm" if task == "hellaswag" else "acc"
                records = [mc_record(i, doc, gold, choices, context, rng.random() < skill(task, topic, model), gate, rng)
                           for i, (topic, (doc, gold, choices, context)) in enumerate(docs[task])]
            with open(os.path.join(folder, f"samples_{task}_{DATE}.jsonl"), "w") as f:
                for record in records:
                    f.write(json.dumps(as_written(record, new)) + "\n")
        filters = {task: ["strict-match", "flexible-extract"] if task == "gsm8k" else ["none"] for task in lm_tasks}
        results = {
            "results": {task: {"alias": task} for task in lm_tasks},
            "configs": {task: {"task": task, "filter_list": [{"name": f} for f in filters[task]]} for task in lm_tasks},
            "versions": {task: 1.0 for task in lm_tasks},
            "config": {"model": "hf", "model_args": f"pretrained={model},dtype=bfloat16", "batch_size": 16},
            "model_name": model, "model_name_sanitized": short,
        }
        with open(os.path.join(folder, f"results_{DATE}.json"), "w") as f:
            json.dump(results, f, indent=2)

        for task in ("humaneval", "mbpp"):
            bigcode = os.path.join(HERE, "bigcode", model.split("/")[1], task)
            os.makedirs(bigcode)
            rng = random.Random(f"routerdc-sample-{model}-{task}")
            problems, passed = {}, []
            for index, (topic, _) in enumerate(docs[task]):
                attempts = []
                for cid in range(5):
                    ok = rng.random() < skill(task, topic, model)
                    attempts.append([cid, {"task_id": index, "passed": ok, "completion_id": cid,
                                           "result": "passed" if ok else "failed: AssertionError"}])
                problems[str(index)] = attempts
                passed.append(sum(a[1]["passed"] for a in attempts) / 5)
            with open(os.path.join(bigcode, "log_samples.json"), "w") as f:
                json.dump({task: problems}, f, indent=2)
            with open(os.path.join(bigcode, "evaluation_results.json"), "w") as f:
                json.dump({task: {"pass@1": sum(passed) / len(passed)},
                           "config": {"model": model, "tasks": task, "n_samples": 5, "temperature": 0.2}}, f, indent=2)


if __name__ == "__main__":
    main()
