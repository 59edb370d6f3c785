#!/usr/bin/env bash
# Evaluate one checkpoint for docs/model-card.md. Usage: evaluate.sh MODEL_DIR NAME
# Every number in the model card's results table comes from the files this script writes into
# docs/results/model_card/NAME.* (run from the repository root, CPU, 1 thread).
set -euo pipefail
model=$1; name=$2
out=docs/results/model_card; data=../shared/data
dn() { dnahnet --threads 1 "$@"; }

# 1. held-out log-likelihood (bits/nt = -mean_ll / ln 2): the first 300 kb of E. coli K-12 (held out of the
#    corpus) and of Synechococcus sp. NIES-970 (the validation genome), forward strand, 1024-nt windows
python - <<'PY' > "$out/heldout_300kb.fa"
from dnahnet_cli.genomics.genome import Genome
for path in ("../shared/data/ecoli_k12/genome.fa.gz", "../shared/data/corpus/val/GCF_002356215.1.fa.gz"):
    g = Genome.open(path, quiet=True)
    name = g.names[0]
    seq = g.fetch(name, 0, 300_000)
    print(f">{name}:1-300000"); print(seq)
PY
dn score-seqs "$out/heldout_300kb.fa" --model "$model" --strand forward --window 1024 --context 512 \
   --device cpu -q -o "$out/$name.heldout.tsv"

# 2. IF1 (infA) deep mutational scan, all 1,367 substitutions: Spearman rho
dn eval dms --genome $data/ecoli_k12/genome.fa.gz --gff $data/ecoli_k12/annot.gff.gz --gene infA \
   --dms $data/dms/IF1_ECOLI_Kelsic_2016/dms.csv --model "$model" --device cpu -q \
   -o "$out/$name.dms.tsv" --metrics "$out/$name.dms.json"

# 3. Keio essentiality on every 4th annotated gene (deterministic subset; the whole genome takes ~40 min
#    per model on this CPU): AUROC/AUPRC with the gene-length and GC baselines on the same genes
genes=$(zcat $data/ecoli_k12/annot.gff.gz | awk -F'\t' '$3=="gene"' | grep -o 'locus_tag=b[0-9]*' \
        | cut -d= -f2 | awk 'NR % 4 == 1' | paste -sd,)
dn essentiality $data/ecoli_k12/genome.fa.gz --gff $data/ecoli_k12/annot.gff.gz --model "$model" \
   --genes "$genes" --labels $data/essentiality/ecoli_k12/keio_essential_names.txt --device cpu -q \
   -o "$out/$name.essentiality.tsv" --metrics "$out/$name.essentiality.json"

# 4. segmentation report (hierarchical models only): 100 kb of E. coli K-12, + strand
if [ "${3:-}" = "segment" ]; then
  dn segment $data/ecoli_k12/genome.fa.gz --model "$model" --gff $data/ecoli_k12/annot.gff.gz \
     --region NC_000913.3:1-100000 --strand + --device cpu --report "$out/$name.segment.tsv" \
     --plot "$out/$name.segment.png" > "$out/$name.segment.bed"
fi
