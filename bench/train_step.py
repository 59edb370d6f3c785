"""Training step (forward + backward + AdamW) on one sequence: nt/s and model FLOP utilisation.

MFU = 3 x analytic forward FLOPs (H-Net App. B convention for the backward) at the realised compression,
divided by time and by the peak measured in the same process (GEMM probe). Models are built fresh so the
scoring models are not trained.
"""

from __future__ import annotations

import statistics
import sys

import torch

from common import interleaved
from scoring import autocast, gpu_peak_memory
from variants import build, make_ids

from dnahnet_cli.model.flops import forward_flops


def run_train_step(specs: list[dict], length: int, reps: int, device: torch.device, dtype: torch.dtype,
                   probe, peak_gflops: float | None) -> dict:
    ids = make_ids(length, device)
    models, opts, fractions = {}, {}, {}
    for spec in specs:
        model = build(spec, device).train()
        models[spec["name"]] = model
        opts[spec["name"]] = torch.optim.AdamW(model.param_groups(), lr=1e-4, weight_decay=0.05)

    def step(name: str):
        def call() -> None:
            opt = opts[name]
            opt.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                out = models[name].loss(ids)
            out.loss.backward()
            opt.step()
            fractions[name] = out.F
        return call

    calls = {s["name"]: step(s["name"]) for s in specs}
    timing = interleaved(calls, reps, probe=probe, device=device)
    peak = peak_gflops or statistics.median(timing["probe_gflops"])
    out = {"length": length, "reps": reps, "probe_gflops": timing["probe_gflops"], "peak_gflops": peak, "variants": {}}
    for spec in specs:
        name = spec["name"]
        med, cfg = timing["median"][name], models[name].config
        positions = [float(length)]
        for f in fractions[name]:
            positions.append(positions[-1] * f)
        flops = 3 * forward_flops(cfg, length, positions=positions).total
        out["variants"][name] = {
            "role": spec["role"], "median_s": med, "samples_s": timing["samples"][name], "nt_per_s": length / med,
            "realised_ratio": [1 / f if f else None for f in fractions[name]], "train_gflop_per_nt": flops / length / 1e9,
            "achieved_gflops": flops / med / 1e9, "mfu": flops / med / (peak * 1e9),
            "peak_mem_mib": gpu_peak_memory(calls[name], device),
        }
        v = out["variants"][name]
        print(f"[train] {name}: {v['nt_per_s']:,.0f} nt/s, MFU {100 * v['mfu']:.1f}%", file=sys.stderr, flush=True)
    return out
