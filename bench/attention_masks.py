"""Boolean attention masks in PyTorch's SDPA on a CPU, at the shapes of the `cpu` preset's masked attention calls,
against an additive (0 / -inf) mask of the same meaning (--against additive), or against no mask at all (--against
none: wrong results, the cost floor of the same calls, bounding what a mask-free decomposition could gain).

Cases, 16-channel heads, one 8,191-nt window of the `cpu` preset (stage 1 at ~2,730 positions, window 1,023;
main network at ~1,365 positions): the fresh windowed pass in 256-query blocks (layers._attend_fresh), and a
4,096-position suffix continuing a ring of 1,024 keys (window_cache.ring_attend). Both variants alternate in one
process, fp32, one thread; medians and the median of paired ratios (boolean time / other time).

    python bench/attention_masks.py --against additive --reps 7 --out docs/results/attention-masks-additive.json
    python bench/attention_masks.py --against none --reps 7 --out docs/results/attention-masks-none.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def windowed_blocks(q, k, v, window: int, other: str | None, block: int = 256) -> torch.Tensor:
    """layers.CausalSelfAttention._attend_fresh's blocked path, with either mask."""
    l = q.shape[2]
    outs = []
    for start in range(0, l, block):
        end = min(l, start + block)
        kstart = max(0, start - window)
        qi = torch.arange(start, end)[:, None]
        kj = torch.arange(kstart, end)[None, :]
        allowed = (kj <= qi) & (qi - kj <= window)
        mask = allowed if other is None else (additive_mask(allowed, q.dtype) if other == "additive" else None)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, kstart:end], v[:, :, kstart:end],
                                                   attn_mask=mask))
    return torch.cat(outs, dim=2)


def ring_suffix(q, k, v, ring: int, other: str | None, block: int = 256) -> torch.Tensor:
    """window_cache._ring_step's attention over (ring + block) keys, block by block, with either mask."""
    outs = []
    l = q.shape[2]
    for start in range(0, l, block):
        end = min(l, start + block)
        n = end - start
        keys = torch.cat([k[:, :, :ring], k[:, :, ring + start: ring + end]], dim=2)
        values = torch.cat([v[:, :, :ring], v[:, :, ring + start: ring + end]], dim=2)
        qi = torch.arange(n)[:, None]
        kj = torch.arange(ring + n)[None, :]
        allowed = (kj < ring) & (kj >= qi) | (kj >= ring) & (kj - ring <= qi)  # the ring's last W+1 keys, causal
        mask = allowed if other is None else (additive_mask(allowed, q.dtype) if other == "additive" else None)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:end], keys, values, attn_mask=mask))
    return torch.cat(outs, dim=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", choices=("additive", "none"), default="additive")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    cases = {
        "stage-1 windowed, 2,730 positions, W 1,023, 6 heads": (lambda other, t=[torch.randn(1, 6, 2730, 16, generator=gen)
                                                                               for _ in range(3)]:
                                                               windowed_blocks(*t, 1023, other)),
        "ring continuation, 4,096 queries after 1,024 keys, 6 heads": (lambda other, t=[
            torch.randn(1, 6, n, 16, generator=gen) for n in (4096, 5120, 5120)]: ring_suffix(*t, 1024, other)),
    }
    result = {"command": f"python bench/attention_masks.py --against {args.against} --reps {args.reps} --threads {args.threads}",
              "machine": platform.machine(), "torch": torch.__version__, "threads": args.threads, "cases": {}}
    with torch.inference_mode():
        for name, fn in cases.items():
            diff = float((fn(args.against) - fn(None)).abs().max())
            times = {"boolean": [], args.against: []}
            for _ in range(args.reps):
                for variant in times:
                    start = time.perf_counter()
                    fn(None if variant == "boolean" else variant)
                    times[variant].append(time.perf_counter() - start)
            paired = [b / a for b, a in zip(times["boolean"], times[args.against])]
            result["cases"][name] = {"seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
                                     "paired_speedup_median": statistics.median(paired), "max_abs_diff": diff}
            print(f"{name}: boolean {statistics.median(times['boolean']) * 1e3:.1f} ms, {args.against} "
                  f"{statistics.median(times[args.against]) * 1e3:.1f} ms, paired {statistics.median(paired):.2f}x, "
                  f"max |diff| {diff:.1e}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
