"""Benchmark helpers: machine probe, interleaved timing, fixed-ratio router control, environment record."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from dnahnet_cli.model.hnet import RoutingModule
from dnahnet_cli.model.kernels import active_kernels, cpu_kernels, detect


def gemm_probe(n: int = 1024, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of one n^3 matmul (best of 2 on GPU, synchronised): the machine-speed probe stored with every
    repetition, and the peak that achieved/floor and MFU are measured against."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(1 if device.type == "cpu" else 3):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average": os.getloadavg(),
        "kernels": active_kernels(),
        "cpu_kernels": cpu_kernels(),  # what CPU inference and training run for the Mamba2 mixer
        "kernel_detection": {k: v["available"] for k, v in detect().items()},
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def interleaved(variants: dict[str, Callable[[], None]], repetitions: int,
                probe: Callable[[], float] = gemm_probe, device: str | torch.device = "cpu") -> dict:
    """Time every variant once per repetition in a rotating order; return samples, medians and probes."""
    names = list(variants)
    for name in names:  # warm-up: allocator, kernel selection, compilation
        variants[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    probes = []
    for rep in range(repetitions):
        probes.append(probe())
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            sync(device)
            t = time.perf_counter()
            variants[name]()
            sync(device)
            samples[name].append(time.perf_counter() - t)
    return {"samples": samples, "median": {n: statistics.median(s) for n, s in samples.items()}, "probe_gflops": probes}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def paired_ratio(samples: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over repetitions of time(slow)/time(fast), each ratio taken within one repetition."""
    return statistics.median(a / b for a, b in zip(samples[slow], samples[fast]))


def use_fixed_ratio_routers(model: torch.nn.Module, ratios: list[float]) -> None:
    """Replace each router's decisions by an oracle that cuts every R-th position (the control for timing:
    an untrained router keeps about half the positions, which would misstate the hierarchy's cost). The real
    router still runs first, so its projections are paid for and its decode state stays valid."""
    routers = [m for m in model.modules() if isinstance(m, RoutingModule)]
    for router, ratio in zip(routers, ratios):
        def forward(h, mask, state=None, _r=int(round(ratio)), _real=router.forward):
            _real(h, mask, state)
            b, l, _ = h.shape
            offset = state.setdefault("n", torch.zeros(b, dtype=torch.long, device=h.device)) if state is not None else 0
            pos = torch.arange(l, device=h.device)[None, :] + (offset[:, None] if state is not None else 0)
            p = torch.where(pos % _r == 0, 0.9, 0.1).float().expand(b, l)
            if state is not None:
                state["n"] = offset + mask.sum(1)
            return p, (p > 0.5) & mask
        router.forward = forward


def timed_train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, bf16: bool) -> float:
    """Seconds of one CPU training step as `dnahnet train` takes it: the loss under bf16 autocast when `bf16`,
    backward, the optimizer step, gradients cleared."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model.loss(ids)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def emit(payload: dict, out: "Path | None") -> None:
    """Write a benchmark's JSON to `out`, or print it when no file was asked for."""
    text = json.dumps(payload, indent=1)
    if out:
        out.write_text(text + "\n")
    else:
        print(text)
