"""Training attention, forward and backward in bf16: the compiled CPU kernel against torch SDPA (full causal with
is_causal, the windowed layer with a boolean mask), 1 thread, medians of 7 after a warm-up. The ad-hoc probe behind
docs/benchmarks.md's "Tried and dropped" numbers (37.1 against 19.9 ms, 17.3 against 4.4, 217 against 34), kept as
it ran:
    python bench/attention_training_sdpa.py
"""
import time, torch, statistics
from dnahnet_cli.model import cpu_attention, cpu_mixer
torch.set_num_threads(1); cpu_mixer.load()
import torch.nn.functional as F
for (b,h,l,d,win) in [(1,8,1366,16,-1),(8,4,171,24,-1),(1,6,2731,16,1023)]:
    q,k,v = [torch.randn(b,h,l,d, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
    do = torch.randn(b,h,l,d, dtype=torch.bfloat16)
    def kern():
        o = cpu_attention.causal(q,k,v,win); o.backward(do)
    def sdpa():
        if win < 0:
            o = F.scaled_dot_product_attention(q,k,v,is_causal=True)
        else:
            i = torch.arange(l); m = (i[None,:] <= i[:,None]) & (i[:,None]-i[None,:] <= win)
            o = F.scaled_dot_product_attention(q,k,v,attn_mask=m)
        o.backward(do)
    def fwd_k():
        with torch.no_grad(): cpu_attention.causal(q,k,v,win)
    res = {}
    for name, f in [("kernel", kern), ("sdpa", sdpa)]:
        f(); ts=[]
        for _ in range(7):
            t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
        res[name]=statistics.median(ts)*1e3
    print((b,h,l,d,win), {k: round(v,2) for k,v in res.items()})
