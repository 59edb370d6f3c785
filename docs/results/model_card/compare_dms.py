"""Spearman rho of two models' DMS scores against the assay on the mutants both scored, and the gap between them
with a 95 % interval from 2,000 paired bootstrap resamples of the mutants (seed 0).

    python docs/results/model_card/compare_dms.py v7/dnahnet v7/tpp > docs/results/model_card/v7/compare-dms.json

Reads NAME.dms.tsv written by evaluate.sh (columns mutant, dms_score, delta, status).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from compare import paired_difference
from dnahnet_cli.genomics.outputs import read_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    a_name, b_name = sys.argv[1:3]
    a, b = (read_table(HERE / f"{n}.dms.tsv") for n in (a_name, b_name))
    a, b = (df[df["status"] == "OK"].set_index("mutant") for df in (a, b))
    shared = a.index.intersection(b.index)
    y, sa, sb = a.loc[shared, "dms_score"].to_numpy(), a.loc[shared, "delta"].to_numpy(), b.loc[shared, "delta"].to_numpy()
    keep = np.isfinite(y)
    y, sa, sb = y[keep], sa[keep], sb[keep]
    rho = lambda truth, scores: float(spearmanr(scores, truth).statistic)
    print(json.dumps({"n_mutants": int(len(y)), a_name: rho(y, sa), b_name: rho(y, sb),
                      "rho_difference": paired_difference(rho, y, sa, sb)}, indent=1))

if __name__ == "__main__":
    main()
