"""Side-by-side essentiality metrics of two models on the genes both scored (the model card's table), with the
gene-length and GC-content baselines on the same genes.

    python docs/results/model_card/compare.py dnahnet tpp essentiality  > docs/results/model_card/compare-essentiality.json
    python docs/results/model_card/compare.py dnahnet tpp essentiality-evo2 > docs/results/model_card/compare-essentiality-evo2.json

Reads NAME.KIND.tsv written by evaluate.sh; a gene is positive when its name or locus tag is in the Keio list.
`auroc_difference` is the first model's AUROC minus the second's, with a 95 % interval from 2,000 paired
bootstrap resamples of the genes (seed 0): how far the sampling of genes alone could move the gap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from dnahnet_cli.genomics.outputs import read_table

HERE = Path(__file__).resolve().parent
LABELS = HERE.parents[2].parent / "shared" / "data" / "essentiality" / "ecoli_k12" / "keio_essential_names.txt"


def load(name: str, kind: str) -> pd.DataFrame:
    df = read_table(HERE / f"{name}.{kind}.tsv")
    return df[df["status"] == "OK"].set_index("locus_tag")


def metrics(y: pd.Series, score: pd.Series) -> dict:
    return {"auroc": float(roc_auc_score(y, score)), "auprc": float(average_precision_score(y, score))}


def auroc_difference(y: pd.Series, a: pd.Series, b: pd.Series, reps: int = 2000, seed: int = 0) -> dict:
    """AUROC(a) - AUROC(b) on the same genes, and its paired-bootstrap 95 % interval (resampling genes)."""
    yv, av, bv = y.to_numpy(), a.to_numpy(), b.to_numpy()
    rng, diffs = np.random.default_rng(seed), []
    while len(diffs) < reps:
        i = rng.integers(0, len(yv), len(yv))
        if 0 < yv[i].sum() < len(i):  # a resample needs both classes
            diffs.append(roc_auc_score(yv[i], av[i]) - roc_auc_score(yv[i], bv[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(roc_auc_score(yv, av) - roc_auc_score(yv, bv)), "ci95": [float(lo), float(hi)],
            "bootstrap_resamples": reps}


def main() -> None:
    a_name, b_name, kind = sys.argv[1:4]
    essential = {line.strip() for line in LABELS.read_text().splitlines() if line.strip() and not line.startswith("#")}
    a, b = load(a_name, kind), load(b_name, kind)
    shared = a.index.intersection(b.index)
    a, b = a.loc[shared], b.loc[shared]
    y = pd.Series([int(n in essential or t in essential) for n, t in zip(a["name"], shared)], index=shared)
    out = {"kind": kind, "n_genes": int(len(shared)), "n_essential": int(y.sum()),
           a_name: metrics(y, a["essentiality_score"]), b_name: metrics(y, b["essentiality_score"]),
           "gene_length": metrics(y, a["cds_len"]), "gc_content": metrics(y, a["gc_content"]),
           "auroc_difference": auroc_difference(y, a["essentiality_score"], b["essentiality_score"])}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
