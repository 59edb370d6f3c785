"""The window-size ablation's table (docs/eval.md): one row per window from the files run.sh wrote, and each
window's gap to the shipped model's training length (8,192 nt) on the same items with a paired-bootstrap 95 %
interval (model_card/compare.py's resampling: genes for essentiality, mutants and whole sites for the DMS).

    python docs/results/window_ablation/summarize.py > docs/results/window_ablation/summary.json
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "model_card"))
from compare import LABELS, paired_difference  # noqa: E402

from dnahnet_cli.genomics.outputs import read_table  # noqa: E402
from dnahnet_cli.tasks.dms import parse_mutant  # noqa: E402

REFERENCE = 8192  # the shipped model's training length


def spearman(y: np.ndarray, s: np.ndarray) -> float:
    return float(spearmanr(y, s).statistic)


def heldout(prefix: Path) -> dict[str, float]:
    df = read_table(prefix.with_name(prefix.name + ".heldout.tsv"))
    return {row["name"].split(":")[0]: -row["mean_ll"] / math.log(2) for _, row in df.iterrows()}


def dms(prefix: Path) -> pd.DataFrame:
    """Scored mutants with an assay value (as compare_dms.py: a mutant the assay left blank has no rank)."""
    df = read_table(prefix.with_name(prefix.name + ".dms.tsv"))
    df = df[(df["status"] == "OK") & np.isfinite(df["dms_score"])]
    return df.set_index("mutant")[["dms_score", "delta"]]


def essentiality(prefix: Path) -> pd.DataFrame:
    df = read_table(prefix.with_name(prefix.name + ".essentiality.tsv"))
    return df[df["status"] == "OK"].set_index("locus_tag")


def essential(genes: pd.DataFrame) -> np.ndarray:
    names = {line.strip() for line in LABELS.read_text().splitlines() if line.strip() and not line.startswith("#")}
    return np.array([tag in names or gene in names for tag, gene in zip(genes.index, genes["name"])], dtype=int)


def site_of(mutant: str) -> str:
    """The residue positions a mutant changes (the unit of compare_dms.py's site bootstrap)."""
    return ":".join(str(s.pos) for s in parse_mutant(mutant, "dms.tsv"))


def row(window: int, ref: Path) -> dict:
    prefix = HERE / f"v8-w{window}"
    out: dict = {"window": window, "heldout_bpn": heldout(prefix)}
    mine, base = dms(prefix), dms(ref)
    shared = mine.index.intersection(base.index)
    y = mine.loc[shared, "dms_score"].to_numpy()
    a, b = mine.loc[shared, "delta"].to_numpy(), base.loc[shared, "delta"].to_numpy()
    sites = np.array([site_of(m) for m in shared])
    out["dms"] = {"n": int(len(shared)), "spearman": spearman(y, a),
                  "minus_8192": paired_difference(spearman, y, a, b),
                  "minus_8192_by_site": paired_difference(spearman, y, a, b, groups=sites)}
    mine_e, base_e = essentiality(prefix), essentiality(ref)
    genes = mine_e.index.intersection(base_e.index)
    labels = essential(mine_e.loc[genes])
    a, b = mine_e.loc[genes, "essentiality_score"].to_numpy(), base_e.loc[genes, "essentiality_score"].to_numpy()
    out["essentiality"] = {"n": int(len(genes)), "n_essential": int(labels.sum()),
                           "auroc": float(roc_auc_score(labels, a)),
                           "minus_8192": paired_difference(roc_auc_score, labels, a, b)}
    timing = prefix.with_name(prefix.name + ".essentiality.time")
    out["essentiality_wall_s"] = float(re.search(r"wall_s=([\d.]+)", timing.read_text()).group(1))
    return out


def against_the_card(ref: Path) -> dict:
    """The 8,192-nt row (here --dtype auto: bf16 on an AVX512-BF16 CPU) against the model card's fp32 run of the
    same model and window, on the same genes and mutants: how far the precision alone moves the numbers."""
    card = HERE.parent / "model_card" / "v8" / "dnahnet"
    mine_e, card_e = essentiality(ref), essentiality(card)
    genes = mine_e.index.intersection(card_e.index)
    labels = essential(mine_e.loc[genes])
    a, b = mine_e.loc[genes, "essentiality_score"], card_e.loc[genes, "essentiality_score"]
    mine_d, card_d = dms(ref), dms(card)
    muts = mine_d.index.intersection(card_d.index)
    y = mine_d.loc[muts, "dms_score"].to_numpy()
    return {"card_files": str(card.relative_to(HERE.parents[2])) + ".*",
            "heldout_bpn": {"this_run": heldout(ref), "card": heldout(card)},
            "essentiality": {"n": int(len(genes)), "auroc_this_run": float(roc_auc_score(labels, a)),
                             "auroc_card": float(roc_auc_score(labels, b)),
                             "max_abs_score_difference": float((a - b).abs().max())},
            "dms": {"n": int(len(muts)), "spearman_this_run": spearman(y, mine_d.loc[muts, "delta"].to_numpy()),
                    "spearman_card": spearman(y, card_d.loc[muts, "delta"].to_numpy()),
                    "max_abs_delta_difference": float((mine_d.loc[muts, "delta"] - card_d.loc[muts, "delta"]).abs().max())}}


def main() -> None:
    windows = sorted(int(m.group(1)) for p in HERE.glob("v8-w*.essentiality.time")
                     if (m := re.fullmatch(r"v8-w(\d+)\.essentiality\.time", p.name)))
    ref = HERE / f"v8-w{REFERENCE}"
    print(json.dumps({"command": "python docs/results/window_ablation/summarize.py",
                      "rows": [row(w, ref) for w in windows], "bf16_against_the_card_fp32": against_the_card(ref)},
                     indent=1))


if __name__ == "__main__":
    main()
