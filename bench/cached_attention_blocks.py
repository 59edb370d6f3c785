"""Prefix reuse with full attention: suffix queries attended in blocks against the keys each block can see,
against one SDPA call over the whole key cache with an explicit mask (layers.CausalSelfAttention.CACHED_QUERY_BLOCK).

The case is what `eval dms` and `essentiality` do with a Transformer++: one 8,191-nt REF window, four SNVs near its
middle, so each ALT runs a ~4,100-nt suffix from the REF state at its first differing base. Both variants run in
the same process, alternating, fp32, one thread; the totals must agree to fp32 rounding.

    python bench/cached_attention_blocks.py --preset cpu-tpp --reps 3 --out docs/results/cached-attention-blocks.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.model.layers import CausalSelfAttention
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.tasks.engine import LikelihoodEngine

GENOME = Path(__file__).resolve().parents[1] / "examples" / "ecoli_k12.fa.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-tpp")
    ap.add_argument("--length", type=int, default=8191)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = LikelihoodEngine(DNAHNet(get_preset(args.preset)).eval(), device="cpu", batch_size=4)
    genome = Genome.open(str(GENOME), quiet=True)
    chrom = genome.names[0]
    ref = genome.fetch(chrom, 1_000_000, 1_000_000 + args.length).upper()
    mid = args.length // 2
    alts = [ref[:p] + ("A" if ref[p] != "A" else "C") + ref[p + 1:] for p in (mid, mid + 100, mid + 200, mid + 300)]
    variants = {"one call, whole cache": 1 << 30, f"blocks of {CausalSelfAttention.CACHED_QUERY_BLOCK}":
                CausalSelfAttention.CACHED_QUERY_BLOCK}
    times: dict[str, list[float]] = {name: [] for name in variants}
    totals: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for name, block in variants.items():
            CausalSelfAttention.CACHED_QUERY_BLOCK = block
            start = time.perf_counter()
            _, alt_ll = engine.loglik_pairs([ref] * len(alts), alts)
            times[name].append(time.perf_counter() - start)
            totals[name] = [float(x) for x in alt_ll]
    before, after = list(variants)
    paired = [b / a for b, a in zip(times[before], times[after])]
    result = {
        "command": "python bench/cached_attention_blocks.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": args.threads,
        "preset": args.preset, "length": args.length, "alts": len(alts),
        "seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
        "paired_speedup_median": statistics.median(paired), "paired_speedups": paired,
        "max_abs_total_diff_nats": float(np.max(np.abs(np.array(totals[before]) - np.array(totals[after])))),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
