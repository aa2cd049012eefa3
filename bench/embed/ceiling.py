"""How fast can int8 inference be against HF float32 on this CPU? (issue 15's 3× bar)

Runs bench/embed/baseline.py's HF float32 pass (sdpa, length-sorted batches, first-token
vectors) and the same model through `quantize_dynamic` with each of libtorch's x86 int8 engines
(fbgemm, which `routerdc --quantize int8` runs, and onednn), timing every Linear layer with
forward hooks. Any int8 encoder has to run those int8 Linear layers; so even if everything else
(attention, GELU, LayerNorm, quantizing activations outside the kernel, tokenizing) cost nothing,
its time could not fall below the int8 Linear time, less what skipping the last layer's
non-first tokens saves (`embed` computes K and V for every token there, the rest for token 0
only: (L − 1 + 2/12) / L of the Linear work, 2 of a layer's 12 d² units being K and V).

    ceiling = HF float32 total / (that share × int8 Linear time)

Printed for each engine, with the float32 Linear share. Same texts, batch, threads as run.sh.
Usage: ceiling.py ENCODER_DIR TEXTS_JSON [BATCH] [MAX_LENGTH] [THREADS]
"""
import json
import sys
import time
import warnings

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer

# quantize_dynamic's deprecation warnings and the weight-loading bars, not errors: those still show.
warnings.filterwarnings("ignore")
transformers.utils.logging.disable_progress_bar()
encoder, texts_path = sys.argv[1:3]
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
max_length = int(sys.argv[4]) if len(sys.argv) > 4 else 512
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
tokenizer = AutoTokenizer.from_pretrained(encoder, truncation_side="left")
lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
order = sorted(range(len(texts)), key=lambda i: -lengths[i])
batches = [
    tokenizer([texts[i] for i in order[at : at + batch]], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    for at in range(0, len(order), batch)
]


def timed(model):
    """(total seconds, seconds inside Linear layers) for every batch, tokenizing excluded."""
    spent = [0.0]
    started = {}

    def before(module, _):
        started[id(module)] = time.perf_counter()

    def after(module, _, __):
        spent[0] += time.perf_counter() - started[id(module)]

    linear_kinds = (torch.nn.Linear, torch.ao.nn.quantized.dynamic.Linear)
    for module in model.modules():
        if isinstance(module, linear_kinds):
            module.register_forward_pre_hook(before)
            module.register_forward_hook(after)
    with torch.inference_mode():
        model(**batches[-1])  # warm-up
        spent[0] = 0.0
        start = time.perf_counter()
        for inputs in batches:
            model(**inputs).last_hidden_state[:, 0]
        return time.perf_counter() - start, spent[0]


def load(engine=None):
    model = AutoModel.from_pretrained(encoder, attn_implementation="sdpa").eval()
    if engine is not None:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        torch.backends.quantized.engine = engine
        model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return model


layers = AutoConfig.from_pretrained(encoder).num_hidden_layers
share = (layers - 1 + 2 / 12) / layers
f32_total, f32_linear = timed(load())
print(f"{len(texts)} queries, batch {batch}, {threads} threads")
print(f"HF float32: {f32_total:.2f} s ({len(texts) / f32_total:.1f} q/s), Linear layers {f32_linear:.2f} s ({100 * f32_linear / f32_total:.0f}%)")
for engine in ("fbgemm", "onednn"):
    total, linear = timed(load(engine))
    print(
        f"PyTorch int8 ({engine}): {total:.2f} s ({len(texts) / total:.1f} q/s), Linear layers {linear:.2f} s "
        f"({100 * linear / total:.0f}%; {f32_linear / linear:.2f}x float32's); "
        f"ceiling {f32_total / (share * linear):.2f}x HF float32"
    )
