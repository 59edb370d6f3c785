#!/usr/bin/env bash
# How long does a VCF take? `dnahnet score-variants` end to end (start-up included) on 100 random SNVs of E. coli
# K-12 (seed 0), the shipped model, default threads (the usable cores), at the default window and two shorter
# ones; one run each, in this order. Run from the repository root: bash docs/results/variant-rate-2026-12-07.sh
set -euo pipefail
out=${OUT:-/tmp/variant-rate}; mkdir -p "$out"
python - "$out/snvs.vcf" <<'PY'
import sys, numpy as np
from dnahnet_cli.genomics.genome import Genome
g = Genome.open("examples/ecoli_k12.fa.gz", quiet=True); n = g.length("NC_000913.3"); rng = np.random.default_rng(0)
with open(sys.argv[1], "w") as f:
    f.write("##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3,length=4641652>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    for pos in sorted(rng.choice(n, 100, replace=False) + 1):
        ref = g.fetch("NC_000913.3", pos - 1, pos)
        f.write(f"NC_000913.3\t{pos}\t.\t{ref}\t{'C' if ref != 'C' else 'T'}\t.\t.\t.\n")
PY
lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
for w in default 2048 1024; do
  opt=(); [ "$w" != default ] && opt=(--window "$w")
  start=$(date +%s.%N)
  dnahnet score-variants examples/ecoli_k12.fa.gz "$out/snvs.vcf" --all-circular -q "${opt[@]}" -o "$out/w$w.tsv"
  echo "window=$w snvs=100 wall_s=$(echo "$(date +%s.%N) - $start" | bc)"
done
