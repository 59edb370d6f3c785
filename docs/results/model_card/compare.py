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
import warnings
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


def paired_difference(metric, y: np.ndarray, a: np.ndarray, b: np.ndarray, reps: int = 2000, seed: int = 0,
                      groups: np.ndarray | None = None) -> dict:
    """metric(y, a) - metric(y, b) on the same items, and its 95 % interval from paired bootstrap resamples of the
    items; a resample on which the metric is undefined (e.g. AUROC with one class: NaN) is drawn again.

    With `groups`, whole groups are resampled (a cluster bootstrap): items that share a group (e.g. the mutants of
    one DMS site) are not independent, and resampling them one by one would understate the interval."""
    rng, diffs = np.random.default_rng(seed), []
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)] if groups is not None else None
    while len(diffs) < reps:
        if members is None:
            i = rng.integers(0, len(y), len(y))
        else:
            i = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns on the one-class resamples skipped here
            d = metric(y[i], a[i]) - metric(y[i], b[i])
        if np.isfinite(d):
            diffs.append(d)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    out = {"difference": float(metric(y, a) - metric(y, b)), "ci95": [float(lo), float(hi)], "bootstrap_resamples": reps}
    if members is not None:
        out["resampled_groups"] = len(members)
    return out


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
           "auroc_difference": paired_difference(roc_auc_score, y.to_numpy(), a["essentiality_score"].to_numpy(),
                                                 b["essentiality_score"].to_numpy())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
