#!/usr/bin/env bash
# Window-size ablation of the shipped model (docs/eval.md, "Which window?"): held-out bits/nt, IF1 DMS and Keio
# essentiality (paper protocol, every 8th gene) scored with windows of 1,024 to 16,384 nt, through
# docs/results/model_card/evaluate.sh with WINDOW=N, OUT=docs/results/window_ablation. Two streams of one thread
# each share the two cores; each window's files are docs/results/window_ablation/v8-wN.*. Run from the repository
# root; summarise with `python docs/results/window_ablation/summarize.py`.
set -euo pipefail
model=${MODEL:-dnahnet_cli/data/default_model}
eval_one() { OUT=docs/results/window_ablation WINDOW=$1 STEPS="heldout dms paper" PAPER_EVERY=8 THREADS=1 \
  bash docs/results/model_card/evaluate.sh "$model" "v8-w$1"; }
( for w in ${STREAM_A:-8192 1024 4096}; do eval_one "$w"; done ) &
( for w in ${STREAM_B:-16384 2048}; do eval_one "$w"; done ) &
wait
