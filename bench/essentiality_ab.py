"""`dnahnet essentiality` (paper protocol, default model) wall time: the code of an earlier commit against this
checkout, side by side on every Nth annotated E. coli gene.

Each run is the whole command in its own process (GFF, genome, model load, scoring), the two checkouts
alternating and the order rotating every round; "before" is the commit's dnahnet_cli unpacked with git archive
(as bench/cpu_fast_path.py does), so both score with their own shipped model files. Reported: median wall time
per side, the speedup as the median of per-round ratios, the whole genome projected from genes/s (an upper bound:
the command's fixed cost is counted once per subset), and the largest score difference between the two.

    python bench/essentiality_ab.py --before 0aea2fd --every 30 --reps 3 --threads 2 --out docs/results/essentiality-attention-ab.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402
from cpu_fast_path import unpack  # noqa: E402
from essentiality_speed import ROOT, gene_subset, scores, subset_arguments  # noqa: E402

RUN = "import sys; sys.path.insert(0, sys.argv[1]); from dnahnet_cli.cli import main; sys.argv[1:2] = []; main()"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="commit of the 'before' code")
    subset_arguments(ap)
    args = ap.parse_args()

    roots = {"before": unpack(args.before, Path("/tmp") / f"dnahnet-before-{args.before}"), "after": ROOT}
    genes = gene_subset(args.gff, args.every)
    all_genes = len(gene_subset(args.gff, 1))
    tmp = Path(tempfile.mkdtemp(prefix="ess-ab-"))
    samples: dict[str, list[float]] = {side: [] for side in roots}
    outputs: dict[str, Path] = {}
    for rep in range(args.reps):
        for side in (["before", "after"] if rep % 2 == 0 else ["after", "before"]):
            out = tmp / f"{side}.{rep}.tsv"
            cli = ["--threads", str(args.threads), "essentiality", str(args.genome), "--gff", str(args.gff),
                   "--protocol", "paper", "--genes", ",".join(genes), "--device", "cpu", "-q", "-o", str(out)]
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", RUN, str(roots[side]), *cli], check=True, cwd=tmp)
            samples[side].append(time.perf_counter() - start)
            outputs[side] = out
            print(f"rep {rep} {side}: {samples[side][-1]:.1f} s", file=sys.stderr)
    before, after = scores(outputs["before"]), scores(outputs["after"])
    medians = {side: statistics.median(s) for side, s in samples.items()}
    emit({"command": "python bench/essentiality_ab.py " + " ".join(sys.argv[1:]),
          "environment": {**environment(), "threads": args.threads}, "before_commit": args.before,
          "genes": len(genes), "scored": len(after), "genome_genes": all_genes,
          "median_s": medians, "samples_s": samples,
          "whole_genome_min_projected": {side: all_genes / (len(genes) / m) / 60 for side, m in medians.items()},
          "speedup": statistics.median(b / a for b, a in zip(samples["before"], samples["after"])),
          "max_abs_score_diff": max(abs(after[g] - before[g]) for g in before)}, args.out)


if __name__ == "__main__":
    main()
