"""A reference-style RouterDC training loop (PyTorch + HF transformers), for step timing only.

As the reference does: every batch is tokenised inside the step and padded to 512 tokens
(left truncation); the encoder is the same HF model routerdc uses, with the same optimizer
(AdamW 5e-5, weight decay 0.01), the same losses (sample-LLM top-3/last-3, cluster loss with 3
negatives) and batch size. Prints the mean time per step after a warm-up step.

Usage: reference_loop.py ENCODER_DIR DATA_DIR STEPS BATCH THREADS
"""
import glob
import json
import random
import sys
import time

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

encoder, data, steps, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(42)
random.seed(42)
records = []
for path in sorted(glob.glob(f"{data}/split2_model7_cluster/*.json")):
    records += json.load(open(path))
models = list(records[0]["scores"])
tokenizer = AutoTokenizer.from_pretrained(encoder, truncation_side="left")
backbone = AutoModel.from_pretrained(encoder, attn_implementation="sdpa")
backbone.train()
K = torch.nn.Parameter(torch.randn(len(models), backbone.config.hidden_size) * 0.78)
optimizer = torch.optim.AdamW(list(backbone.parameters()) + [K], lr=5e-5, weight_decay=0.01)


def step(items):
    inputs = tokenizer([r["question"] for r in items], truncation=True, max_length=512, padding="max_length", return_tensors="pt")
    h = backbone(**inputs).last_hidden_state[:, 0]
    logits = F.cosine_similarity(h[:, None], K[None], dim=-1)
    scores = torch.tensor([[r["scores"][m] for m in models] for r in items])
    top = scores.topk(3, dim=1)
    low = scores.topk(3, dim=1, largest=False)
    neg = logits.gather(1, low.indices).masked_fill(low.values > 0.5, float("-inf"))
    loss = 0
    for i in range(3):
        pos = logits.gather(1, top.indices[:, i : i + 1])
        loss = loss - ((top.values[:, i] > 0).float() * torch.log_softmax(torch.cat([pos, neg], 1), 1)[:, 0]).mean()
    S = F.cosine_similarity(h[:, None], h[None], dim=-1)
    clusters = [r["cluster_id"] for r in items]
    terms = []
    for q, c in enumerate(clusters):
        same = [j for j, d in enumerate(clusters) if d == c]
        other = [j for j, d in enumerate(clusters) if d != c]
        if len(other) < 3:
            continue
        cols = [random.choice(same)] + random.sample(other, 3)
        terms.append(-torch.log_softmax(S[q, cols], 0)[0])
    if terms:
        loss = loss + torch.stack(terms).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


random.shuffle(records)
step(records[:batch])  # warm-up
start = time.perf_counter()
for s in range(steps):
    step(records[(s + 1) * batch : (s + 2) * batch])
seconds = (time.perf_counter() - start) / steps
print(f"reference-style loop: {seconds:.2f} s/step (batch {batch}, padded to 512, tokenised per step)")
