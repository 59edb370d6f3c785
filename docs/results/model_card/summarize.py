"""Print the model card's numbers from the files evaluate.sh and compare.py wrote (no model is run).

    python docs/results/model_card/summarize.py dnahnet tpp
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dnahnet_cli.genomics.outputs import read_table

HERE = Path(__file__).resolve().parent


def maybe_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def heldout(name: str) -> dict:
    path = HERE / f"{name}.heldout.tsv"
    if not path.exists():
        return {}
    df = read_table(path)
    return {row["name"].split(":")[0]: -row["mean_ll"] / math.log(2) for _, row in df.iterrows()}


def last_val(name: str) -> float | None:
    path = HERE / f"{name}.train_metrics.jsonl"
    if not path.exists():
        return None
    vals = [json.loads(line) for line in path.read_text().splitlines() if '"val"' in line]
    return vals[-1]["val_bpn"] if vals else None


def main() -> None:
    out = {}
    for name in sys.argv[1:]:
        dms = maybe_json(HERE / f"{name}.dms.json") or {}
        ess = maybe_json(HERE / f"{name}.essentiality.json") or {}
        evo = maybe_json(HERE / f"{name}.essentiality-evo2.json") or {}
        seg = maybe_json(HERE / f"{name}.segment.json")
        out[name] = {
            "val_bpn_end_of_training": last_val(name), "heldout_bpn": heldout(name),
            "dms_spearman": dms.get("spearman_rho"), "dms_baselines": dms.get("baselines_spearman_rho"),
            "dms_n": dms.get("n_used_for_rho"),
            "paper_auroc": (ess.get("essentiality_score") or {}).get("auroc"),
            "paper_n": (ess.get("essentiality_score") or {}).get("n"),
            "paper_n_pos": (ess.get("essentiality_score") or {}).get("n_positive"),
            "paper_baselines": {k: v.get("auroc") for k, v in (ess.get("baselines") or {}).items()},
            "evo2_auroc": (evo.get("essentiality_score") or {}).get("auroc"),
            "evo2_n": (evo.get("essentiality_score") or {}).get("n"),
            "evo2_baselines": {k: v.get("auroc") for k, v in (evo.get("baselines") or {}).items()},
            "segment": seg,
        }
        t = HERE / f"{name}.essentiality.time"
        if t.exists():
            out[name]["paper_time"] = t.read_text().strip()
    for kind in ("essentiality", "essentiality-evo2"):
        c = maybe_json(HERE / f"compare-{kind}.json")
        if c:
            out[f"compare-{kind}"] = c
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
