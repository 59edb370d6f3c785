"""fp32 linear layers for CPU inference through oneDNN's GEMM, which PyTorch's CPU builds carry.

Why: torch's fp32 `F.linear` on a CPU calls MKL, which on the AMD EPYC this project measures on (AVX-512, family
26) ran at ~100 GFLOP/s a core (52 at an odd width), where oneDNN's fp32 GEMM, reached through
`torch.ops.mkldnn._linear_pointwise`, ran the same products at 200-240, 2.1-2.5x faster from 512 rows up (the
stage-0 projections that the precision policy keeps fp32 when scoring: 8,193 x 80 -> 389 in 9.8 against 2.5 ms,
8,193 x 160 -> 80 in 2.0 against 0.9 ms; bench/linear_onednn.py, docs/benchmarks.md). Below ~64 rows oneDNN's
fixed cost (~14 us a call) loses, so `kernels.cpu_fp32_linear` only sends it calls of at least MIN_ROWS rows. It has no autograd formula, so training keeps `F.linear`.
Same weights and bias, same result up to the GEMM's summation order; checked against `F.linear` on first use
(`status()`), and unused (the reference `F.linear` runs) where the op is missing or disagrees.
"""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.model import kernels

MIN_ROWS = 256  # rows (tokens) below which F.linear runs: oneDNN lost below ~64 rows, won 1.9x at 256
CHECK_TOLERANCE = 1e-5  # relative Frobenius error against F.linear on the self-check problem (seen: ~1e-7)

_lock = threading.Lock()
_status: str | None = None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for fp32 CPU tensors, through oneDNN (no gradient)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def status() -> str:
    """"ok" when oneDNN's linear is in use for fp32 CPU inference, else why not (checked once per process)."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                _status = _check()
    return _status


def _check() -> str:
    if not torch.backends.mkldnn.is_available():
        return "unavailable: this torch has no oneDNN (mkldnn)"
    try:
        with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(2, 300, 80, generator=gen)
            weight, bias = torch.randn(389, 80, generator=gen), torch.randn(389, generator=gen)
            errors = []
            for w, b, inputs in ((weight, bias, x), (weight, None, x[:, ::2]), (weight.t().contiguous().t(), bias, x)):
                want = F.linear(inputs, w, b)
                errors.append(float((linear(inputs, w, b) - want).norm() / want.norm()))
    except Exception as exc:  # a build without the op, or one that refuses these inputs: the reference runs
        return f"unavailable: {type(exc).__name__}: {exc}"[:200]
    err = max(errors)
    return "ok" if err <= CHECK_TOLERANCE else f"unavailable: failed its numerical check (rel. error {err:.1e})"


class Linear(nn.Linear):
    """nn.Linear with two CPU fast paths; same parameters, state-dict keys and hooks, the same values up to the GEMM's
    summation order. fp32 inference over enough rows takes oneDNN's GEMM (above: 2.1-2.5x MKL's on an AMD
    EPYC). Otherwise an odd output width such as Mamba2's in_proj (2 d_inner + 2 d_state + nheads = 389 for
    `cpu`) is zero-padded to a multiple of 16 for the GEMM, and a view of the real outputs returned: MKL's fp32
    GEMM ran odd widths at a third to a half of its speed at 400 on an AVX2 CPU (docs/benchmarks.md), for under
    4 % more arithmetic; the padding's gradient is dropped. `--kernels torch` (the reference path) turns both off."""

    MULTIPLE = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if kernels.cpu_fp32_linear(x, self.weight):
            return linear(x, self.weight, self.bias)
        pad = -self.out_features % self.MULTIPLE
        if pad == 0 or not kernels.cpu_padded_gemm(x):
            return super().forward(x)
        bias = None if self.bias is None else F.pad(self.bias, (0, pad))
        return F.linear(x, F.pad(self.weight, (0, 0, 0, pad)), bias)[..., : self.out_features]
