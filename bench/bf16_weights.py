"""Would bf16 weight storage do for the shipped model? Its fp32 weights rounded to bf16 (then run in fp32, so the
storage alone is measured) against the weights as shipped: SNV scores on random E. coli K-12 sites (257-nt
windows, forward strand), hard boundaries and per-nucleotide log-likelihood on the first 18 kb of the genome.

    python bench/bf16_weights.py --snvs 300 --out docs/results/bf16-weights.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402

from dnahnet_cli.genomics.genome import Genome  # noqa: E402
from dnahnet_cli.tasks.engine import LikelihoodEngine  # noqa: E402

GENOME = Path(__file__).resolve().parents[1] / "examples" / "ecoli_k12.fa.gz"
FLANK = 128


def snv_pairs(genome: Genome, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    chrom, rng, refs, alts = genome.names[0], np.random.default_rng(seed), [], []
    while len(refs) < n:
        pos = int(rng.integers(FLANK, genome.length(chrom) - FLANK - 1))
        ref = genome.fetch(chrom, pos - FLANK, pos + FLANK + 1).upper()
        if ref[FLANK] in "ACGT":
            refs.append(ref)
            alts.append(ref[:FLANK] + rng.choice([b for b in "ACGT" if b != ref[FLANK]]) + ref[FLANK + 1:])
    return refs, alts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snvs", type=int, default=300)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    shipped = LikelihoodEngine.load(None, device="cpu", dtype="float32", batch_size=64)
    rounded_model = copy.deepcopy(shipped.model)
    with torch.no_grad():
        for p in rounded_model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    rounded = LikelihoodEngine(rounded_model, device="cpu", dtype="float32", batch_size=64)
    genome = Genome.open(str(GENOME), quiet=True)
    refs, alts = snv_pairs(genome, args.snvs)
    scores = [np.subtract(*reversed(e.loglik_pairs(refs, alts))) for e in (shipped, rounded)]
    diff = np.abs(scores[0] - scores[1])
    seq = genome.fetch(genome.names[0], 0, 20_000).upper()
    windows = [seq[i:i + 2047] for i in range(0, len(seq) - 2047, 2047)]
    tracks = [e.boundaries(windows) for e in (shipped, rounded)]
    moved = sum(int(((x > 0.5) != (y > 0.5)).sum()) for a, b in zip(*tracks) for x, y in zip(a, b))
    kept = sum(int((x > 0.5).sum()) for a in tracks[0] for x in a)
    ll = [e.loglik(windows) for e in (shipped, rounded)]
    emit({"command": "python bench/bf16_weights.py " + " ".join(sys.argv[1:]), "environment": environment(),
          "snvs": args.snvs, "snv_score_max_abs_diff": float(diff.max()), "snv_score_median_abs_diff": float(np.median(diff)),
          "snv_score_sd": float(scores[0].std()), "snv_spearman": float(spearmanr(*scores).statistic),
          "boundaries_moved": moved, "boundaries": kept, "bases_segmented": len(windows) * 2047,
          "loglik_max_abs_diff_per_nt": float(np.abs(ll[0] - ll[1]).max() / 2047)}, args.out)


if __name__ == "__main__":
    main()
