"""The compiled CPU attention kernel against torch's attention as the reference path calls it, on the attention
calls of one 8,192-nt scoring forward (fixed ratios 3 and 2) and of a continuation after a prefix.

Shapes (B, H, L, head width): `cpu` (the shipped model's architecture) stage-1 windowed attention over 2,731
chunks, 6 heads of 16, window 1,023; its main network's causal attention over 1,366 chunks, 8 heads of 16; a
ring continuation of 1,024 new stage-1 chunks after 2,000 (essentiality's knock-out suffix); `small` at stage 1
(4 heads of 64, window 1,023) and in its main network (6 heads of 64). Each in fp32 and bf16 inputs (what
`--dtype auto` feeds it). Both sides are timed interleaved in one process, medians of --reps, and each output is
compared with a float64 SDPA of the same inputs.

    python bench/attention_kernel.py --reps 21 --threads 1 --out docs/results/attention-kernel.json
    python bench/attention_kernel.py --backward --reps 11 --out docs/results/attention-kernel-training.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from dnahnet_cli.model.openmp import short_spin  # noqa: E402

short_spin()  # as the dnahnet command does before torch loads: idle OpenMP workers leave the second core free
import torch  # noqa: E402

from common import emit, environment, interleaved, paired_ratio  # noqa: E402

from dnahnet_cli.model import kernels  # noqa: E402
from dnahnet_cli.model.layers import CausalSelfAttention  # noqa: E402
from dnahnet_cli.model.window_cache import ring_attend  # noqa: E402

CASES = {  # name: (heads, length, head width, window, prefix before a continuation or None)
    "cpu stage 1, windowed": (6, 2731, 16, 1023, None),
    "cpu main network, causal": (8, 1366, 16, -1, None),
    "cpu stage 1, ring after a 2,000-chunk prefix": (6, 1024, 16, 1023, 2000),
    "small stage 1, windowed": (4, 2731, 64, 1023, None),
    "small main network, causal": (6, 1366, 64, -1, None),
}


def call(heads: int, length: int, width: int, window: int, prefix: int | None, dtype: torch.dtype):
    """A closure running the attention of one case the way the model does (its dispatch decides the path), and
    the float64 answer."""
    gen = torch.Generator().manual_seed(0)
    layer = CausalSelfAttention(heads * width, heads, width, window)
    if prefix is None:
        q, k, v = (torch.randn(1, heads, length, width, generator=gen).to(dtype) for _ in range(3))
        i = torch.arange(length)
        allowed = (i[None] <= i[:, None]) & ((i[:, None] - i[None] <= window) if window >= 0 else True)
        exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=allowed)
        return (lambda: layer._attend_fresh(q, k, v)), exact
    total = prefix + length
    q, k, v = (torch.randn(1, heads, total, width, generator=gen).to(dtype) for _ in range(3))
    state: dict = {}
    with torch.no_grad():
        ring_attend(q[:, :, :prefix], k[:, :, :prefix], v[:, :, :prefix], torch.ones(1, prefix, dtype=torch.bool),
                    state, torch.arange(prefix)[None], window)
    new = [t[:, :, prefix:] for t in (q, k, v)]
    mask, positions = torch.ones(1, length, dtype=torch.bool), torch.arange(prefix, total)[None]
    i, j = positions[0][:, None], torch.arange(total)[None]
    allowed = (j <= i) & (i - j <= window)
    exact = torch.nn.functional.scaled_dot_product_attention(new[0].double(), k.double(), v.double(), attn_mask=allowed)
    return (lambda: ring_attend(*new, mask, dict(state), positions, window)), exact


def train_call(heads: int, length: int, width: int, window: int, dtype: torch.dtype):
    """A closure running one attention call forward and backward as training does, returning dq, and the
    float64 dq."""
    gen = torch.Generator().manual_seed(0)
    layer = CausalSelfAttention(heads * width, heads, width, window)
    q, k, v, dout = (torch.randn(1, heads, length, width, generator=gen).to(dtype) for _ in range(4))
    i = torch.arange(length)
    allowed = (i[None] <= i[:, None]) & ((i[:, None] - i[None] <= window) if window >= 0 else True)
    leaves = [t.double().requires_grad_() for t in (q, k, v)]
    out = torch.nn.functional.scaled_dot_product_attention(*leaves, attn_mask=allowed)
    exact = torch.autograd.grad((out * dout.double()).sum(), leaves[0])[0]

    def run():
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        return torch.autograd.grad((layer._attend_fresh(qq, kk, vv) * dout).sum(), qq)[0]

    return run, exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backward", action="store_true", help="time forward and backward (training), fresh cases only")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    cases = {k: v for k, v in CASES.items() if not (args.backward and v[4] is not None)}
    with torch.inference_mode(not args.backward):
        for name, shape in cases.items():
            for dtype in (torch.float32, torch.bfloat16):
                run, exact = train_call(*shape[:4], dtype) if args.backward else call(*shape, dtype)
                outputs = {}

                def variant(name: str, mode: str):
                    def go():
                        kernels.set_kernels(mode)
                        outputs[name] = run()
                    return go

                timing = interleaved({"torch": variant("torch", "torch"), "kernel": variant("kernel", "auto")}, args.reps,
                                     probe=lambda: 0.0)
                kernels.set_kernels("auto")
                error = {m: float((o.double() - exact).norm() / exact.norm()) for m, o in outputs.items()}
                key = f"{name}, {str(dtype).removeprefix('torch.')}"
                results[key] = {"shape": dict(zip(("heads", "length", "head_width", "window", "prefix"), shape)),
                                "median_ms": {m: 1e3 * t for m, t in timing["median"].items()},
                                "speedup": paired_ratio(timing["samples"], "torch", "kernel"),
                                "relative_error_vs_float64": error}
                print(f"{key}: torch {1e3 * timing['median']['torch']:.1f} ms, kernel "
                      f"{1e3 * timing['median']['kernel']:.1f} ms, x{results[key]['speedup']:.2f}; error "
                      f"{error['torch']:.1e} / {error['kernel']:.1e}", file=sys.stderr)
    emit({"command": " ".join(["python"] + sys.argv), "threads": args.threads, "reps": args.reps,
          "measured": "forward and backward; the error is dq's" if args.backward else "forward",
          "environment": environment(), "cases": results}, args.out)


if __name__ == "__main__":
    main()
