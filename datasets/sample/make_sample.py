"""Write the bundled sample: small, synthetic RouterDC-format datasets for README's main job.

The questions are generated from templates and the four "models" are made up; their scores
are drawn from per-task skill levels, so the report shows LLMs that are each best somewhere
(which is what makes routing worthwhile). Deterministic: re-running rewrites identical files.

    python3 datasets/sample/make_sample.py
"""
import json
import os
import random

MODELS = ["demo/generalist-7b", "demo/math-7b", "demo/code-7b", "demo/chat-8b"]
# Probability that each model answers a question of each task correctly.
SKILL = {
    "mmlu_test": [0.62, 0.48, 0.45, 0.58],
    "gsm8k_test": [0.35, 0.72, 0.40, 0.50],
    "humaneval_test": [0.25, 0.20, 0.60, 0.38],
    "arc_easy_test": [0.70, 0.55, 0.50, 0.74],
}
COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Canada", "Ottawa"),
             ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("India", "New Delhi"), ("Italy", "Rome")]
ELEMENTS = [("H", "hydrogen"), ("O", "oxygen"), ("Fe", "iron"), ("Na", "sodium"), ("K", "potassium"), ("Au", "gold"),
            ("Ag", "silver"), ("Cu", "copper"), ("Pb", "lead"), ("Sn", "tin")]


def mmlu_question(rng, i):
    if i % 2 == 0:
        country, capital = rng.choice(COUNTRIES)
        options = [capital] + rng.sample([c for _, c in COUNTRIES if c != capital], 3)
        stem = f"What is the capital of {country}?"
    else:
        symbol, name = rng.choice(ELEMENTS)
        options = [name] + rng.sample([n for _, n in ELEMENTS if n != name], 3)
        stem = f"Which element has the chemical symbol {symbol}?"
    rng.shuffle(options)
    return stem + "".join(f"\n{letter}. {option}" for letter, option in zip("ABCD", options))


def gsm8k_question(rng, i):
    a, b, c = rng.randint(3, 40), rng.randint(2, 12), rng.randint(1, 9)
    return (f"A shop sells {a} apples on Monday and {b} times as many on Tuesday. "
            f"On Wednesday it sells {c} fewer than on Monday. How many apples did it sell in the three days?")


def humaneval_question(rng, i):
    verb, noun = rng.choice([("sum", "even numbers"), ("count", "vowels"), ("reverse", "words"),
                             ("sort", "tuples by their second item"), ("find", "the longest run of equal items")])
    return (f"def task_{i}(xs):\n    \"\"\"{verb.capitalize()} the {noun} in xs.\n"
            f"    >>> task_{i}([])\n    \"\"\"\n")


def arc_question(rng, i):
    thing = rng.choice(["ice melting", "a plant growing toward light", "iron rusting", "water boiling", "a ball rolling downhill"])
    return f"Question:Which best explains {thing}?\nAnswer:"


QUESTIONS = {"mmlu_test": (mmlu_question, 60), "gsm8k_test": (gsm8k_question, 40),
             "humaneval_test": (humaneval_question, 20), "arc_easy_test": (arc_question, 30)}
ATTEMPTS = {"gsm8k_test": 10, "humaneval_test": 5}


def score(rng, task, skill):
    if task in ATTEMPTS:  # multi_attempt: the fraction of sampled attempts that were right
        n = ATTEMPTS[task]
        return sum(rng.random() < skill for _ in range(n)) / n
    # probability: the normalised probability of the right option when the model picked it, else 0
    return rng.uniform(0.3, 1.0) if rng.random() < skill else 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for task, (make, n) in QUESTIONS.items():
        rng = random.Random(f"routerdc-sample-{task}")
        records = [{"question": make(rng, i), "scores": {m: score(rng, task, s) for m, s in zip(MODELS, SKILL[task])}}
                   for i in range(n)]
        with open(os.path.join(here, f"{task}.json"), "w") as f:
            json.dump(records, f)


if __name__ == "__main__":
    main()
