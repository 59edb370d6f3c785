"""How much do `dnahnet embed` vectors know? A linear probe: coding vs intergenic windows of E. coli K-12.

    python bench/embedding_probe.py --out docs/results/embedding-probe.json      # the shipped model
    python bench/embedding_probe.py --model DIR --windows 300 --length 256

Windows of --length bases lying wholly inside one CDS (either strand) or wholly between annotated genes are drawn
at random, trained on in the first 70 % of the chromosome and tested on the last 30 % (a spatial split, so that
neighbouring, overlapping windows cannot carry the answer across; E. coli has only 76 separate intergenic
stretches of 512 bases, hence 256-base windows by default). Each feature set gets the same L2-regularised
logistic regression (standardised features, LBFGS; the penalty picked by 5-fold cross-validation on the training
part only). Feature sets: the model's embedding (`dnahnet embed`, both strands), the same architecture untrained
(random weights: what the layout alone gives), strand-symmetric 3-mer frequencies (the k-mer baseline), and GC
content alone. Reports test AUROC per feature set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.gff import parse_gff
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.tasks.embedding import mean_embeddings
from dnahnet_cli.tasks.engine import LikelihoodEngine
from dnahnet_cli.tasks.metrics import auroc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "examples" / "ecoli_k12.fa.gz"
GFF = ROOT.parent / "shared" / "data" / "ecoli_k12" / "annot.gff.gz"
CHROM = "NC_000913.3"


def draw_windows(length: int, n: int, seed: int) -> tuple[list[int], list[int]]:
    """Start positions of n coding and n intergenic windows (0-based), drawn without overlap within a class."""
    ann = parse_gff(str(GFF))
    size = 4_641_652
    coding = np.zeros(size, dtype=bool)
    genic = np.zeros(size, dtype=bool)
    for g in ann.genes:
        if g.seqid != CHROM:
            continue
        genic[g.start0 % size: min(g.end, size)] = True
        for part in g.cds:
            coding[part.start0 % size: min(part.end, size)] = True
    # a window is coding when one CDS part holds it whole; intergenic when no gene line touches it
    in_one_cds = np.zeros(size, dtype=bool)
    for g in ann.genes:
        for part in g.cds if g.seqid == CHROM else ():
            if part.end - part.start0 >= length and part.end <= size:
                in_one_cds[part.start0: part.end - length + 1] = True
    free = np.convolve(~genic, np.ones(length, dtype=int), "valid") == length
    rng = np.random.default_rng(seed)
    picked = []
    for ok in (in_one_cds[: size - length + 1], free):
        starts, taken = rng.permutation(np.flatnonzero(ok)), []
        for s in starts:
            if all(abs(int(s) - t) >= length for t in taken):
                taken.append(int(s))
            if len(taken) == n:
                break
        picked.append(sorted(taken))
    return picked[0], picked[1]


def kmer_features(seqs: list[str], k: int = 3) -> np.ndarray:
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    out = np.zeros((len(seqs), len(index)))
    for r, s in enumerate(seqs):
        for strand in (s, reverse_complement(s)):
            for i in range(len(strand) - k + 1):
                j = index.get(strand[i: i + k])
                if j is not None:
                    out[r, j] += 1
    return out / out.sum(1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def probe(train_x, train_y, test_x, test_y, seed: int) -> dict:
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-12
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    folds = np.random.default_rng(seed).permutation(len(a)) % 5
    cv = {}
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        scores = []
        for f in range(5):
            w, c = fit_logistic(a[folds != f], train_y[folds != f], l2)
            scores.append(auroc(train_y[folds == f], a[folds == f] @ w + c))
        cv[l2] = float(np.mean(scores))
    best = max(cv, key=cv.get)
    w, c = fit_logistic(a, train_y, best)
    return {"test_auroc": auroc(test_y, b @ w + c), "l2": best, "cv_auroc": cv[best], "n_features": a.shape[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--windows", type=int, default=300, help="windows per class (default: %(default)s)")
    ap.add_argument("--length", type=int, default=256, help="window length in bases (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the JSON record here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    genome = Genome.open(str(GENOME), quiet=True)
    coding, intergenic = draw_windows(args.length, args.windows, args.seed)
    starts = coding + intergenic
    labels = np.array([1] * len(coding) + [0] * len(intergenic))
    seqs = [genome.fetch(CHROM, s, s + args.length) for s in starts]
    train = np.array([s < 0.7 * genome.length(CHROM) - args.length for s in starts])
    test = np.array([s >= 0.7 * genome.length(CHROM) for s in starts])
    engine = LikelihoodEngine.load(args.model, dtype="auto")
    torch.manual_seed(args.seed)  # the control: the same architecture, untrained (what the layout alone gives)
    untrained = LikelihoodEngine(DNAHNet(engine.model.config), {"model": "untrained"}, dtype="auto")
    t0 = time.perf_counter()
    features = {
        "dnahnet embed (both strands)": mean_embeddings(engine, seqs, args.length, args.length // 2),
        "dnahnet embed, untrained (same architecture)": mean_embeddings(untrained, seqs, args.length, args.length // 2),
        "3-mer frequencies (both strands)": kmer_features(seqs),
        "GC content": np.array([[(s.count("G") + s.count("C")) / len(s)] for s in seqs]),
    }
    embed_s = time.perf_counter() - t0
    results = {name: probe(x[train], labels[train], x[test], labels[test], args.seed) for name, x in features.items()}
    record = {
        "command": "python " + " ".join(sys.argv), "model": engine.provenance, "windows_per_class": args.windows,
        "length": args.length, "train": {"coding": int(labels[train].sum()), "intergenic": int((1 - labels[train]).sum())},
        "test": {"coding": int(labels[test].sum()), "intergenic": int((1 - labels[test]).sum())},
        "features_s": embed_s, "results": results, "environment": environment(),
    }
    for name, r in results.items():
        print(f"{name:46s} test AUROC {r['test_auroc']:.3f}  (cv {r['cv_auroc']:.3f}, l2 {r['l2']:g}, "
              f"{r['n_features']} features)")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
