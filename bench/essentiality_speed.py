"""`dnahnet essentiality` (paper protocol) wall time, three ways side by side, on a deterministic subset of genes.

Modes, each run as its own process (malloc settings are per process), alternating round by round:
  before     glibc malloc as it is (DNAHNET_MALLOC=system) and windows batched by length only
  keep       the host-memory policy of dnahnet_cli/model/allocator.py, still batched by length only
  after      both: the policy, and equal-length windows batched by where the stop replacement splits them
             (prefix reuse runs each batch phase by phase, padded to its longest piece)
"Batched by length only" is the working tree with LikelihoodEngine.batches told to ignore the split points.
The modes' order rotates every round. Reported: median wall time per mode (the whole command: GFF, genome, model
load, scoring), genes/s, the whole-genome time projected from genes/s (an upper bound: the command's fixed cost
is counted once per subset), the speedup as the median of per-round ratios, and the largest score difference
from `before` (same genes, same windows: differences are float rounding only).

    python bench/essentiality_speed.py --every 30 --reps 3 --threads 2 --out docs/results/essentiality-speed.json
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODES = {"before": ("system", False), "keep": ("keep", False), "after": ("keep", True)}


def gene_subset(gff: Path, every: int) -> list[str]:
    """Locus tags of every Nth `gene` feature, in file order (as docs/results/model_card/evaluate.sh does)."""
    tags = []
    with gzip.open(gff, "rt") as fh:
        for line in fh:
            cols = line.split("\t")
            if len(cols) > 8 and cols[2] == "gene":
                m = re.search(r"locus_tag=(b\d+)", cols[8])
                if m:
                    tags.append(m.group(1))
    return [t for i, t in enumerate(tags) if i % every == 0]


def worker(split_batching: bool, argv: list[str]) -> None:
    """Run the CLI in this process, optionally with batching by length only."""
    if not split_batching:
        from dnahnet_cli.tasks.batching import length_batches
        from dnahnet_cli.tasks.engine import LikelihoodEngine

        LikelihoodEngine.batches = lambda self, lengths, tiebreak=None: length_batches(  # type: ignore[method-assign]
            lengths, self.batch_size, self.max_tokens)
    from dnahnet_cli.cli import main

    sys.argv = ["dnahnet", *argv]
    main()


def scores(tsv: Path) -> dict[str, float]:
    rows = [line.rstrip("\n").split("\t") for line in tsv.read_text().splitlines() if not line.startswith("##")]
    head, body = rows[0], rows[1:]
    gene, score = head.index("locus_tag"), head.index("essentiality_score")
    return {r[gene]: float(r[score]) for r in body if r[score] not in ("", "NA", "nan")}


def subset_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of a timed essentiality run on a gene subset (here and in essentiality_ab.py)."""
    ap.add_argument("--every", type=int, default=30, help="every Nth annotated gene")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--genome", type=Path, default=DATA / "ecoli_k12" / "genome.fa.gz")
    ap.add_argument("--gff", type=Path, default=DATA / "ecoli_k12" / "annot.gff.gz")
    ap.add_argument("--out", type=Path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subset_arguments(ap)
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker[0] == "split", args.worker[1:])

    genes = gene_subset(args.gff, args.every)
    all_genes = len(gene_subset(args.gff, 1))
    tmp = Path(tempfile.mkdtemp(prefix="ess-speed-"))
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    outputs: dict[str, Path] = {}
    names = list(MODES)
    for rep in range(args.reps):
        for mode in names[rep % len(names):] + names[: rep % len(names)]:  # rotated: no mode always goes first
            malloc, split = MODES[mode]
            out = tmp / f"{mode}.{rep}.tsv"
            cli = ["--threads", str(args.threads), "essentiality", str(args.genome), "--gff", str(args.gff),
                   "--protocol", "paper", "--genes", ",".join(genes), "--device", "cpu", "-q", "-o", str(out)]
            env = {**os.environ, "DNAHNET_MALLOC": malloc}
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--worker", "split" if split else "length", *cli],
                           env=env, check=True)
            samples[mode].append(time.perf_counter() - start)
            outputs[mode] = out
            print(f"rep {rep} {mode}: {samples[mode][-1]:.1f} s", file=sys.stderr)
    ref = scores(outputs["before"])
    result = {"command": "python bench/essentiality_speed.py " + " ".join(sys.argv[1:]),
              "environment": {**environment(), "threads": args.threads}, "genes": len(genes), "scored": len(ref),
              "genome_genes": all_genes, "modes": {}}
    for mode in MODES:
        got = scores(outputs[mode])
        median = statistics.median(samples[mode])
        result["modes"][mode] = {
            "median_s": median, "samples_s": samples[mode], "genes_per_s": len(genes) / median,
            # includes the per-command fixed cost (imports, model, GFF) ~30 times over: an upper bound
            "whole_genome_min_projected": all_genes / (len(genes) / median) / 60,
            "max_abs_score_diff_vs_before": max(abs(got[g] - ref[g]) for g in ref),
            "speedup_vs_before": statistics.median(b / m for b, m in zip(samples["before"], samples[mode]))}
    emit(result, args.out)


if __name__ == "__main__":
    main()
