"""Benchmark helpers: machine probe, interleaved timing, fixed-ratio router control, environment record."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch

from dnahnet_cli.hnet import RoutingModule


def gemm_probe(n: int = 1024) -> float:
    """GFLOP/s of one n^3 fp32 matmul: a machine-speed probe stored with every repetition."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    a @ b
    return 2 * n**3 / (time.perf_counter() - t) / 1e9


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def interleaved(variants: dict[str, Callable[[], None]], repetitions: int) -> dict:
    """Time every variant once per repetition in a rotating order; return samples, medians and probes."""
    names = list(variants)
    for name in names:  # warm-up: allocator, kernel selection
        variants[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    probes = []
    for rep in range(repetitions):
        probes.append(gemm_probe())
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - t)
    return {"samples": samples, "median": {n: statistics.median(s) for n, s in samples.items()}, "probe_gflops": probes}


def paired_ratio(samples: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over repetitions of time(slow)/time(fast), each ratio taken within one repetition."""
    return statistics.median(a / b for a, b in zip(samples[slow], samples[fast]))


def use_fixed_ratio_routers(model: torch.nn.Module, ratios: list[float]) -> None:
    """Replace each router by an oracle that cuts every R-th position (the control for timing: an
    untrained router keeps about half the positions, which would misstate the hierarchy's cost)."""
    routers = [m for m in model.modules() if isinstance(m, RoutingModule)]
    for router, ratio in zip(routers, ratios):
        def forward(h, mask, state=None, _r=int(round(ratio))):
            b, l, _ = h.shape
            offset = state.setdefault("n", torch.zeros(b, dtype=torch.long, device=h.device)) if state is not None else 0
            pos = torch.arange(l, device=h.device)[None, :] + (offset[:, None] if state is not None else 0)
            p = torch.where(pos % _r == 0, 0.9, 0.1).float().expand(b, l)
            if state is not None:
                state["n"] = offset + mask.sum(1)
            return p, (p > 0.5) & mask
        router.forward = forward
