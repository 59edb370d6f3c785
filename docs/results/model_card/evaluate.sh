#!/usr/bin/env bash
# Evaluate one checkpoint for docs/model-card.md. Usage: evaluate.sh MODEL_DIR NAME [segment]
# Every number in the model card's results table comes from the files this script writes into
# docs/results/model_card/NAME.* (run from the repository root, CPU). STEPS picks the parts (default: all of
# heldout dms paper evo2, plus segment when asked); THREADS sets --threads (default 1), so two parts can run
# side by side on two cores, e.g.  STEPS="paper" evaluate.sh M dnahnet & STEPS="heldout dms evo2" evaluate.sh M dnahnet
# WINDOW=N scores the heldout, dms and paper parts with N-nt windows instead of the model's training length (to
# compare two models trained at different lengths on the same windows; heldout then uses N/2 as context); evo2
# scores each CDS plus its flanks whole, whatever the window. OUT=DIR writes the files there instead (e.g. the
# window-size ablation, docs/results/window_ablation/run.sh).
set -euo pipefail
model=$1; name=$2
out=${OUT:-docs/results/model_card}; data=../shared/data
steps=${STEPS:-"heldout dms paper evo2 ${3:-}"}
dn() { dnahnet --threads "${THREADS:-1}" "$@"; }
want() { [[ " $steps " == *" $1 "* ]]; }
win=(); [ -n "${WINDOW:-}" ] && win=(--window "$WINDOW")
gff=$data/ecoli_k12/annot.gff.gz; genome=$data/ecoli_k12/genome.fa.gz
labels=$data/essentiality/ecoli_k12/keio_essential_names.txt

# 1. held-out log-likelihood (bits/nt = -mean_ll / ln 2): the first 300 kb of E. coli K-12 (held out of the
#    corpus) and of Synechococcus sp. NIES-970 (the validation genome), forward strand, windows of the model's
#    training length with half of it as context
if want heldout; then
fa=$(mktemp "$out/.heldout_300kb.XXXXXX")  # then renamed: two parts running side by side never read a partial file
python - <<'PY' > "$fa"
from dnahnet_cli.genomics.genome import Genome
for path in ("../shared/data/ecoli_k12/genome.fa.gz", "../shared/data/corpus/val/GCF_002356215.1.fa.gz"):
    g = Genome.open(path, quiet=True)
    name = g.names[0]
    seq = g.fetch(name, 0, 300_000)
    print(f">{name}:1-300000"); print(seq)
PY
mv "$fa" "$out/heldout_300kb.fa"
dn score-seqs "$out/heldout_300kb.fa" --model "$model" --strand forward "${win[@]}" --device cpu -q -o "$out/$name.heldout.tsv"
fi

# 2. IF1 (infA) deep mutational scan, all 1,367 substitutions: Spearman rho (and the BLOSUM62 / substitution-count
#    baselines), the CDS plus flanks filling a window of the model's training length (cropped around the mutated
#    codon only where the gene is longer)
if want dms; then
dn eval dms --genome $genome --gff $gff --gene infA --dms $data/dms/IF1_ECOLI_Kelsic_2016/dms.csv --model "$model" \
   "${win[@]}" --device cpu -q -o "$out/$name.dms.tsv" --metrics "$out/$name.dms.json"
fi

# every Nth annotated gene (deterministic subsets for the costlier runs)
every() { zcat $gff | awk -F'\t' '$3=="gene"' | grep -o 'locus_tag=b[0-9]*' | cut -d= -f2 | awk -v n="$1" 'NR % n == 1 || n == 1' | paste -sd,; }

# 3. Keio essentiality, paper protocol (TAATAATAATAGTGA replaces CDS offsets 12-26, window centred on the gene),
#    every annotated gene (PAPER_EVERY=N: every Nth): AUROC/AUPRC with the gene-length and GC baselines on the
#    same genes; the wall time of the whole-genome run is written to NAME.essentiality.time
if want paper; then
sub=(); [ "${PAPER_EVERY:-1}" != 1 ] && sub=(--genes "$(every "$PAPER_EVERY")")
start=$(date +%s.%N)
dn essentiality $genome --gff $gff --model "$model" --protocol paper "${sub[@]}" "${win[@]}" --labels $labels --device cpu -q \
   -o "$out/$name.essentiality.tsv" --metrics "$out/$name.essentiality.json"
echo "wall_s=$(echo "$(date +%s.%N) - $start" | bc) threads=${THREADS:-1} window=${WINDOW:-model} paper_every=${PAPER_EVERY:-1}" > "$out/$name.essentiality.time"
fi

# 4. Keio essentiality, evo2 protocol (the stop inserted every 12 nt of the CDS, 4,096-nt flanks) on every 16th
#    annotated gene (EVO2_EVERY; each gene's sequence is its CDS plus 8,192 nt of flank, longer than the paper
#    protocol's window)
if want evo2; then
dn essentiality $genome --gff $gff --model "$model" --protocol evo2 --genes "$(every "${EVO2_EVERY:-16}")" \
   --labels $labels --device cpu -q \
   -o "$out/$name.essentiality-evo2.tsv" --metrics "$out/$name.essentiality-evo2.json"
fi

# 5. segmentation report (hierarchical models only): 100 kb of E. coli K-12, + strand
if want segment; then
  dn segment $genome --model "$model" --gff $gff --region NC_000913.3:1-100000 --strand + --device cpu \
     --report "$out/$name.segment.tsv" --plot "$out/$name.segment.png" > "$out/$name.segment.bed"
fi
