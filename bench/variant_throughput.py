"""Variants per second of `score-variants`' engine with and without prefix reuse, side by side.

Real E. coli K-12 windows around random SNVs (and multi-allelic sites), both strands as score-variants does,
timed interleaved in one process; also checks that both modes give the same scores.

    python bench/variant_throughput.py --preset small --window 2048 --variants 24 --reps 3 --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, gemm_probe  # noqa: E402

from dnahnet_cli.genomics.alphabet import reverse_complement  # noqa: E402
from dnahnet_cli.model.checkpoint import load_checkpoint  # noqa: E402
from dnahnet_cli.tasks.engine import LikelihoodEngine  # noqa: E402
from dnahnet_cli.genomics.genome import Genome  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(genome: Genome, n: int, window: int, alts_per_site: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    contig = genome.names[0]
    refs, alts = [], []
    for pos in rng.integers(window, genome.length(contig) - window, n):
        start = int(pos) - window // 2
        ref = genome.fetch(contig, start, start + window)
        centre = window // 2
        for alt_base in [b for b in "ACGT" if b != ref[centre]][:alts_per_site]:
            alt = ref[:centre] + alt_base + ref[centre + 1:]
            for r, a in ((ref, alt), (reverse_complement(ref), reverse_complement(alt))):  # both strands
                refs.append(r)
                alts.append(a)
    return refs, alts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="untrained model of this preset (ignored with --model)")
    ap.add_argument("--model", type=Path, help="checkpoint directory, e.g. dnahnet_cli/data/default_model")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--variants", type=int, default=16, help="variant sites")
    ap.add_argument("--alts-per-site", type=int, default=1, help="1: SNVs; 3: every ALT of a multi-allelic site")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_checkpoint(args.model)[0] if args.model else DNAHNet(get_preset(args.preset))
    genome = Genome.open(ROOT / "examples" / "ecoli_k12.fa.gz", quiet=True)
    refs, alts = make_pairs(genome, args.variants, args.window, args.alts_per_site, seed=1)
    n_variants = len(alts) // 2
    engines = {mode: LikelihoodEngine(model, batch_size=args.batch_size, prefix_reuse=(mode == "prefix_reuse"))
               for mode in ("full_rescoring", "prefix_reuse")}
    scores = {}
    samples: dict[str, list[float]] = {m: [] for m in engines}
    probes = []
    for rep in range(args.reps + 1):  # repetition 0 is the warm-up
        probes.append(gemm_probe())
        for mode in (list(engines) if rep % 2 == 0 else list(engines)[::-1]):
            t = time.perf_counter()
            ll_ref, ll_alt = engines[mode].loglik_pairs(refs, alts)
            if rep:
                samples[mode].append(time.perf_counter() - t)
            scores[mode] = ll_alt - ll_ref
    max_diff = float(np.max(np.abs(scores["prefix_reuse"] - scores["full_rescoring"])))
    med = {m: statistics.median(s) for m, s in samples.items()}
    speedups = [a / b for a, b in zip(samples["full_rescoring"], samples["prefix_reuse"])]
    result = {
        "command": " ".join(sys.argv), "environment": environment(), "model": str(args.model or args.preset),
        "window": args.window,
        "variants": n_variants, "alts_per_site": args.alts_per_site, "strands": 2, "samples_s": samples,
        "variants_per_s": {m: n_variants / t for m, t in med.items()},
        "paired_speedup_median": statistics.median(speedups), "max_abs_score_diff": max_diff,
        "probe_gflops": probes,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model or args.preset} window={args.window} variants={n_variants} (x2 strands, {args.alts_per_site} ALT/site)")
    for m in engines:
        print(f"  {m:15s} {result['variants_per_s'][m]:8.2f} variants/s  (median {med[m]:.2f} s)")
    print(f"  prefix-reuse speedup (median of paired ratios) x{result['paired_speedup_median']:.2f};"
          f" max |score difference| {max_diff:.2e}")


if __name__ == "__main__":
    main()
