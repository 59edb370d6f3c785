"""How far two runs' essentiality scores lie apart on the genes both scored (e.g. the same model at two
precisions); prints JSON with the largest and median absolute difference and the scores' standard deviation.

    python docs/results/model_card/score_diff.py essentiality essentiality-2threads-bf16 v2/dnahnet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dnahnet_cli.genomics.outputs import read_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    kind_a, kind_b, name = sys.argv[1:4]
    a, b = (read_table(HERE / f"{name}.{kind}.tsv") for kind in (kind_a, kind_b))
    a, b = (df[df["status"] == "OK"].set_index("locus_tag")["essentiality_score"].astype(float) for df in (a, b))
    common = a.index.intersection(b.index)
    diff = (a[common] - b[common]).abs()
    print(json.dumps({"genes": len(common), "max_abs_diff": float(diff.max()), "median_abs_diff": float(diff.median()),
                      "score_sd": float(a[common].std())}, indent=1))


if __name__ == "__main__":
    main()
