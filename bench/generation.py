"""Generation: prefill a prompt, then sample nucleotides one step at a time through the incremental state.

Per-token latency is lumpy for dnaHNet (inner stages only step at chunk boundaries), so p50 and p99 are
reported next to nt/s; the state size (KV caches, SSM and conv states) is the memory that grows with context.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from common import percentile, sync
from scoring import autocast
from variants import make_ids

from dnahnet_cli.genomics.alphabet import A


def state_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0


def generate_once(model, prompt: torch.Tensor, n_new: int, dtype: torch.dtype, seed: int = 0) -> dict:
    """Prefill + n_new sampled steps; returns prefill time, per-step latencies and the final state size."""
    device = prompt.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    state: dict = {}
    with torch.inference_mode(), autocast(device, dtype):
        sync(device)
        t = time.perf_counter()
        out = model(prompt, state=state)
        sync(device)
        prefill = time.perf_counter() - t
        positions = [prompt.shape[1]] + [int(s.boundary_mask.sum()) for s in out.stages]
        logits, steps = out.logits[:, -1], []
        for _ in range(n_new):
            t = time.perf_counter()
            probs = torch.softmax(logits.float(), -1).cpu()
            token = (torch.multinomial(probs, 1, generator=g) + A).to(device)
            logits = model(token, state=state).logits[:, -1]
            sync(device)
            steps.append(time.perf_counter() - t)
    return {"prefill_s": prefill, "steps_s": steps, "state_mib": state_bytes(state) / 2**20, "positions": positions}


def run_generation(specs: list[dict], models: dict, prompt_len: int, n_new: int, reps: int,
                   device: torch.device, dtype: torch.dtype) -> dict:
    """Every variant generates `n_new` nt after a `prompt_len` prompt, in rotating order, `reps` times."""
    prompt = make_ids(prompt_len, device)
    names = [s["name"] for s in specs]
    for name in names:  # warm-up
        generate_once(models[name], prompt[:, : min(prompt_len, 64)], 4, dtype)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            runs[name].append(generate_once(models[name], prompt, n_new, dtype, seed=rep))
    out = {"prompt_len": prompt_len, "new_tokens": n_new, "reps": reps, "variants": {}}
    for name, rs in runs.items():
        steps = [s for r in rs for s in r["steps_s"]]
        totals = [sum(r["steps_s"]) for r in rs]
        out["variants"][name] = {
            "nt_per_s": n_new / statistics.median(totals), "p50_ms": 1e3 * percentile(steps, 50),
            "p99_ms": 1e3 * percentile(steps, 99), "max_ms": 1e3 * max(steps), "mean_ms": 1e3 * statistics.mean(steps),
            "prefill_s": statistics.median(r["prefill_s"] for r in rs), "state_mib": rs[-1]["state_mib"],
            "prompt_positions": rs[-1]["positions"],
        }
        v = out["variants"][name]
        print(f"[generation] {name}: {v['nt_per_s']:.1f} nt/s, p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms",
              file=sys.stderr, flush=True)
    return out
