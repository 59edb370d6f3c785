#!/bin/bash
# Command: bash docs/results/essentiality-kernels-ab-2026-12-06.sh (output: the .log beside it). Every 15th annotated gene, paper protocol, v6 at 8,192 nt, 2 threads: --kernels torch vs auto, alternating, 2 rounds
set -e
cd /work/main
gff=../shared/data/ecoli_k12/annot.gff.gz
genes=$(zcat $gff | awk -F'\t' '$3=="gene"' | grep -o 'locus_tag=b[0-9]*' | cut -d= -f2 | awk 'NR % 15 == 1' | paste -sd,)
for round in 1 2; do
  for k in torch auto; do
    start=$(date +%s.%N)
    dnahnet --threads 2 --kernels $k essentiality ../shared/data/ecoli_k12/genome.fa.gz --gff $gff --protocol paper \
      --genes "$genes" --device cpu -q -o /tmp/ess_ab_$k.tsv
    echo "round=$round kernels=$k wall_s=$(echo "$(date +%s.%N) - $start" | bc)"
  done
done
