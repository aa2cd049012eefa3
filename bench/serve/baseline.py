"""The Python baseline of bench/serve: the same decision as `routerdc serve` with an MLP router
folder (mean-pooled, unit-length encoder vectors through the folder's MLP, argmax), served the
way a Python team would: FastAPI + uvicorn, HF transformers (sdpa attention), one request per
forward pass. POST /v1/route takes {"messages": [...]} (the last user message is routed) or
{"prompt": ...} and answers {"model", "ranked"}.

With QUANTIZE int8, the encoder's Linear layers go through `quantize_dynamic` (int8 weights per
channel), the PyTorch counterpart of `quantize = "int8"` in serve.toml.

Usage: python baseline.py ROUTER_DIR ENCODER_DIR PORT THREADS [QUANTIZE]
"""

import json
import sys

import torch
import uvicorn
from fastapi import FastAPI
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

router_dir, encoder_dir, port, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
spec = json.load(open(f"{router_dir}/router.json"))
assert spec["kind"] == "mlp" and spec["pooling"] == "mean", "the baseline serves MLP router folders"
tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
tokenizer.truncation_side = spec["truncation"]
encoder = AutoModel.from_pretrained(encoder_dir, attn_implementation="sdpa").eval()
if len(sys.argv) > 5 and sys.argv[5] == "int8":
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    encoder = quantize_dynamic(encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
weights = load_file(f"{router_dir}/mlp.safetensors")
layers = [(weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"]) for i in range(len(weights) // 2)]
models = spec["models"]


def scores(text):
    with torch.inference_mode():
        batch = tokenizer([text], truncation=True, max_length=spec["max_length"], return_tensors="pt")
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        x = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        for index, (weight, bias) in enumerate(layers):
            if index > 0:
                x = torch.relu(x)
            x = torch.nn.functional.linear(x, weight, bias)
        if spec.get("loss") == "bce":
            x = torch.sigmoid(x)
        return x[0].tolist()


app = FastAPI()


@app.post("/v1/route")
def route(body: dict):
    if "prompt" in body:
        text = body["prompt"]
    else:
        text = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    values = scores(text)
    order = sorted(range(len(models)), key=lambda i: -values[i])
    return {"model": models[order[0]], "ranked": [{"model": models[i], "score": values[i]} for i in order]}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
