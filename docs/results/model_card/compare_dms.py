"""Spearman rho of two models' DMS scores against the assay on the mutants both scored, the gap between them, and
where each model's signal sits: between sites (which positions tolerate change) or within a site (which residue).

    python docs/results/model_card/compare_dms.py v7/dnahnet v7/tpp > docs/results/model_card/v7/compare-dms.json

Reads NAME.dms.tsv written by evaluate.sh (columns mutant, dms_score, delta, status). A site is the set of residue
positions a mutant changes. `rho_difference` resamples mutants (2,000 paired bootstrap resamples, seed 0);
`rho_difference_by_site` resamples whole sites, because the ~19 mutants of one site share that site's effect and are
not independent draws. `site_level` is rho of the per-site means of score and assay; `within_site` is rho after
subtracting each site's means. BLOSUM62 (the trivial baseline) is decomposed the same way; `rho_with_blosum62`
says how far each model's scores follow it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from compare import paired_difference
from dnahnet_cli.genomics.outputs import read_table
from dnahnet_cli.tasks.dms import blosum62_score, parse_mutant

HERE = Path(__file__).resolve().parent


def rho(truth: np.ndarray, scores: np.ndarray) -> float:
    return float(spearmanr(scores, truth).statistic)


def decompose(y: np.ndarray, score: np.ndarray, site: np.ndarray) -> dict:
    """rho over all mutants, between site means, and within sites (site means removed)."""
    df = pd.DataFrame({"y": y, "s": score, "site": site})
    means = df.groupby("site")[["y", "s"]].transform("mean")
    per_site = df.groupby("site")[["y", "s"]].mean()
    return {"all": rho(y, score), "site_level": rho(per_site["y"].to_numpy(), per_site["s"].to_numpy()),
            "within_site": rho((df["y"] - means["y"]).to_numpy(), (df["s"] - means["s"]).to_numpy())}


def main() -> None:
    a_name, b_name = sys.argv[1:3]
    a, b = (read_table(HERE / f"{n}.dms.tsv") for n in (a_name, b_name))
    a, b = (df[df["status"] == "OK"].set_index("mutant") for df in (a, b))
    shared = a.index.intersection(b.index)
    y, sa, sb = a.loc[shared, "dms_score"].to_numpy(), a.loc[shared, "delta"].to_numpy(), b.loc[shared, "delta"].to_numpy()
    keep = np.isfinite(y)
    y, sa, sb, mutants = y[keep], sa[keep], sb[keep], shared[keep]
    subs = [parse_mutant(m, f"{a_name}.dms.tsv") for m in mutants]
    site = np.array([":".join(str(s.pos) for s in ss) for ss in subs])
    blosum = np.array([blosum62_score(ss) for ss in subs])
    print(json.dumps({"n_mutants": int(len(y)), "n_sites": int(len(np.unique(site))), a_name: rho(y, sa), b_name: rho(y, sb),
                      "rho_difference": paired_difference(rho, y, sa, sb),
                      "rho_difference_by_site": paired_difference(rho, y, sa, sb, groups=site),
                      "decomposition": {a_name: decompose(y, sa, site), b_name: decompose(y, sb, site),
                                        "blosum62": decompose(y, blosum, site)},
                      "rho_with_blosum62": {a_name: rho(blosum, sa), b_name: rho(blosum, sb)}}, indent=1))


if __name__ == "__main__":
    main()
