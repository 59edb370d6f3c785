"""ROC/PR figure of a finished essentiality run, from its TSV (the same figure `dnahnet essentiality --plot`
draws), so the model card's figure needs no rerun:

    python docs/results/model_card/plot_essentiality.py dnahnet docs/results/model_card/dnahnet.essentiality.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dnahnet_cli.genomics.gff import parse_gff
from dnahnet_cli.genomics.outputs import read_table
from dnahnet_cli.tasks.essentiality import match_labels, read_labels
from dnahnet_cli.tasks.plots import plot_essentiality_curves

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2].parent / "shared" / "data"
LABELS = DATA / "essentiality" / "ecoli_k12" / "keio_essential_names.txt"
GFF = DATA / "ecoli_k12" / "annot.gff.gz"


def main() -> None:
    name, out = sys.argv[1:3]
    df = read_table(HERE / f"{name}.essentiality.tsv")  # one row per annotated gene, in annotation order
    annotation = parse_gff(GFF)
    assert len(df) == len(annotation.genes)
    scored = [i for i in range(len(df)) if df["status"].iat[i] == "OK" and np.isfinite(df["essentiality_score"].iat[i])]
    label_map, fmt = read_labels(str(LABELS))
    gene_labels, _ = match_labels(label_map, fmt, annotation, scored)  # the command's own matching
    rows = [i for i in scored if i in gene_labels]
    pick = lambda col: df[col].to_numpy(dtype=float)[rows]  # noqa: E731
    plot_essentiality_curves(out, np.array([gene_labels[i] for i in rows]),
                             {"dnahnet essentiality_score": pick("essentiality_score"),
                              "gene length": pick("cds_len"), "GC content": pick("gc_content")},
                             f"Keio essentiality, paper protocol ({name})")


if __name__ == "__main__":
    main()
