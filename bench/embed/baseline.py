"""HF transformers baseline for `routerdc embed`: the same encoder, texts, batch size, max
length, truncation side and thread count; first-token vectors; the fastest batching
(length-sorted batches, padding per batch) and PyTorch's fused attention ("sdpa").

With QUANTIZE=int8, the model's Linear layers go through
`torch.ao.quantization.quantize_dynamic` (int8 weights per channel, activations per batch): the
PyTorch int8 baseline of `routerdc embed --quantize int8`.

Usage: baseline.py ENCODER_DIR TEXTS_JSON OUT_NPY [BATCH] [MAX_LENGTH] [THREADS] [QUANTIZE]
Prints the embedding time alone (model load excluded) as `seconds: X`.
"""
import json
import sys
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

encoder, texts_path, out = sys.argv[1:4]
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 64
max_length = int(sys.argv[5]) if len(sys.argv) > 5 else 512
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 2
quantize = sys.argv[7] if len(sys.argv) > 7 else "none"
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
tokenizer = AutoTokenizer.from_pretrained(encoder, truncation_side="left")
model = AutoModel.from_pretrained(encoder, attn_implementation="sdpa").eval()
if quantize == "int8":
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)

start = time.perf_counter()
lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
order = sorted(range(len(texts)), key=lambda i: -lengths[i])
vectors = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
with torch.inference_mode():
    for at in range(0, len(order), batch):
        rows = order[at : at + batch]
        inputs = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        hidden = model(**inputs).last_hidden_state[:, 0]
        vectors[rows] = hidden.float().numpy()
seconds = time.perf_counter() - start
np.save(out, vectors)
print(f"seconds: {seconds:.2f}")
print(f"queries/s: {len(texts) / seconds:.1f}")
