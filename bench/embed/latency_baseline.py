"""HF transformers baseline for single-query encoder latency: each text cut on the left to N
tokens goes through the model alone (tokenising, the forward pass, the first token's vector
read back), on all cores, as a routing service would run it; 20 untimed queries first.
QUANTIZE=int8 puts the Linear layers through `quantize_dynamic` (int8 weights per channel).

Usage: latency_baseline.py ENCODER_DIR TEXTS_JSON TOKENS(20,80,300) REPEATS THREADS [QUANTIZE]
Prints a JSON line per length: {"tokens", "p50_ms", "p99_ms", ...}.
"""
import json
import sys
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

encoder, texts_path, lengths, repeats, threads = sys.argv[1:6]
quantize = sys.argv[6] if len(sys.argv) > 6 else "none"
torch.set_num_threads(int(threads))
texts = json.load(open(texts_path))
tokenizer = AutoTokenizer.from_pretrained(encoder, truncation_side="left")
model = AutoModel.from_pretrained(encoder, attn_implementation="sdpa").eval()
if quantize == "int8":
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)

for tokens in map(int, lengths.split(",")):
    fitting = [t for t in texts if len(tokenizer(t, truncation=True, max_length=tokens)["input_ids"]) == tokens]
    times = []
    with torch.inference_mode():
        for round in range(int(repeats) + 20):
            text = fitting[round % len(fitting)]
            start = time.perf_counter()
            inputs = tokenizer([text], truncation=True, max_length=tokens, return_tensors="pt")
            model(**inputs).last_hidden_state[:, 0].numpy()
            if round >= 20:
                times.append((time.perf_counter() - start) * 1e3)
    times = np.array(times)
    print(json.dumps({
        "tokens": tokens, "texts": len(fitting), "repeats": len(times), "threads": int(threads), "quantize": quantize,
        "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
    }))
