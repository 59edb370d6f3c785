"""Scoring (batch-1 forward) throughput against sequence length: every variant interleaved in one process,
medians over repetitions, paired ratios, realised compression, analytic FLOPs and achieved/floor."""

from __future__ import annotations

import statistics
import sys
from typing import Callable

import torch

from common import interleaved, paired_ratio, sync
from variants import make_ids

from dnahnet_cli.model.flops import forward_flops


def autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def forward_call(model, ids: torch.Tensor, dtype: torch.dtype, record: dict) -> Callable[[], None]:
    """One scoring forward; stores the realised positions per stage in `record`."""
    def call() -> None:
        with torch.inference_mode(), autocast(ids.device, dtype):
            out = model(ids)
        record["positions"] = [ids.shape[1]] + [int(s.boundary_mask.sum()) for s in out.stages]
    return call


def gpu_peak_memory(call: Callable[[], None], device: torch.device) -> float | None:
    """Extra GPU memory (MiB) one call needs above what is allocated before it."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def run_scoring(specs: list[dict], models: dict, lengths: list[int], reps: int, device: torch.device,
                dtype: torch.dtype, probe: Callable[[], float], peak_gflops: float | None,
                ssd_chunk: int | None, fasta: str | None = None, max_call_s: float = float("inf")) -> list[dict]:
    """Sweep lengths; a variant slower than max_call_s at one length is skipped at longer ones."""
    rows, dropped = [], {}
    for length in lengths:
        ids = make_ids(length, device, fasta)
        active = {s["name"]: s for s in specs if s["name"] not in dropped}
        records = {name: {} for name in active}
        calls = {name: forward_call(models[name], ids, dtype, records[name]) for name in active}
        status = {}
        for name in list(calls):  # a first call that runs out of memory removes the variant at this length
            try:
                calls[name]()
            except torch.cuda.OutOfMemoryError:
                status[name] = "out of memory"
                del calls[name]
                torch.cuda.empty_cache()
        timing = interleaved(calls, reps, probe=probe, device=device) if calls else {"samples": {}, "median": {},
                                                                                       "probe_gflops": []}
        peak = peak_gflops or statistics.median(timing["probe_gflops"] or [float("nan")])
        row = {"length": length, "probe_gflops": timing["probe_gflops"], "peak_gflops": peak, "variants": {},
               "skipped": {**dropped, **status}}
        for name, samples in timing["samples"].items():
            spec, med = active[name], timing["median"][name]
            cfg = models[name].config
            pos = records[name]["positions"]
            exec_ = forward_flops(cfg, length, positions=pos, ssd_chunk=ssd_chunk)
            chin = forward_flops(cfg, length, positions=pos, convention="chinchilla", ssd_chunk=ssd_chunk)
            floor = exec_.total / (peak * 1e9)
            row["variants"][name] = {
                "role": spec["role"], "median_s": med, "min_s": min(samples), "max_s": max(samples),
                "samples_s": samples, "nt_per_s": length / med, "best_nt_per_s": length / min(samples),
                "positions": pos, "realised_ratio": [a / b for a, b in zip(pos, pos[1:])],
                "gflop_per_nt": exec_.per_nt / 1e9, "gflop_per_nt_chinchilla": chin.per_nt / 1e9,
                "attention_share": exec_.attention / exec_.total, "achieved_gflops": exec_.total / med / 1e9,
                "floor_s": floor, "achieved_over_floor": floor / med,
                "peak_mem_mib": gpu_peak_memory(calls[name], device),
            }
            if med > max_call_s:
                dropped[name] = f"median {med:.0f} s > --max-call-s at L={length}"
        _paired(row, timing["samples"], specs)
        rows.append(row)
        print(f"[scoring] L={length:>7} " + "  ".join(f"{n}: {v['nt_per_s']:,.0f} nt/s"
                                                      for n, v in row["variants"].items()), file=sys.stderr, flush=True)
    return rows


def _paired(row: dict, samples: dict, specs: list[dict]) -> None:
    """Paired per-repetition speedups over T++ and Mamba2-only, next to the analytic FLOP ratio."""
    names = {s["role"]: s["name"] for s in specs}
    for role in ("tpp", "mamba2"):
        base = names.get(role)
        if base not in samples:
            continue
        row[f"speedup_vs_{role}"] = {n: paired_ratio(samples, base, n) for n in samples}
        base_flops = row["variants"][base]["gflop_per_nt"]
        row[f"flop_ratio_vs_{role}"] = {n: base_flops / v["gflop_per_nt"] for n, v in row["variants"].items()}

