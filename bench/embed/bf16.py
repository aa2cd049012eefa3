"""bfloat16 on this CPU, in PyTorch itself: HF all-MiniLM-L6-v2 over the first 400 queries of a
RouterDC JSON file, length-sorted batches of 64, 2 threads; float32, CPU autocast to bf16, and
bf16 weights. Usage: bf16.py ENCODER_DIR QUERIES_JSON
"""
import sys
import json, time, torch
from transformers import AutoModel, AutoTokenizer
enc=sys.argv[1]
torch.set_num_threads(2)
texts=[r["question"] for r in json.load(open(sys.argv[2]))][:400]
tok=AutoTokenizer.from_pretrained(enc, truncation_side='left')
m=AutoModel.from_pretrained(enc, attn_implementation='sdpa').eval()
L=[len(x) for x in tok(texts, truncation=True, max_length=512)['input_ids']]
order=sorted(range(len(texts)), key=lambda i:-L[i])
def run(mode):
    t=time.perf_counter()
    with torch.inference_mode():
        for a in range(0,len(order),64):
            b=tok([texts[i] for i in order[a:a+64]], truncation=True, max_length=512, padding=True, return_tensors='pt')
            if mode=='autocast':
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    m(**b)
            else:
                m(**b)
    return time.perf_counter()-t
print('fp32', run('fp32'))
print('autocast bf16', run('autocast'))
m=m.to(torch.bfloat16)
print('bf16 weights', run('bf16'))
