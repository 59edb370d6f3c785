#!/usr/bin/env bash
# A candidate model's training and evaluation as one resumable background job on both cores (v8 was made by this
# script under the name release-v8.sh, with the defaults below). From the repository root:
#     nohup bash docs/results/model_card/release.sh > /work/runs/release-v8.log 2>&1 &
#     VERSION=v9 INIT=<v8 weights> PREV=v8/dnahnet RUNS=/work/main/runs nohup bash docs/results/model_card/release.sh ...
# VERSION names the config (train-cpu-$VERSION.toml) and the output folder; INIT the weights it continues, or PRESET
# the preset a model trained from scratch starts from (its config's [model] table may change the architecture); PREV
# the evaluated model the shipping rule compares with; TRAIN_STEPS the training steps.
# Training resumes exactly (--resume); an evaluation part whose output exists is skipped (a part stopped midway
# starts over). THREADS (default 2) sets --threads for every part. Outputs: docs/results/model_card/$VERSION/dnahnet.*
# Order: training (train-cpu-$VERSION.toml); held-out bits/nt; the shipping rule fixed in that config, applied
# mechanically ($VERSION/shipping-rule.json: lower held-out bits/nt than PREV on both genomes; v8's file was written
# by release-v8.sh, with keys v8_bits_per_nt / v6_bits_per_nt); then DMS, segmentation,
# the paper protocol on every annotated gene (its wall time at THREADS threads is the whole-genome time) and evo2
# on every 32nd gene. Shipping itself (ship.py, dnahnet check --model dnahnet_cli/data/default_model --write-reference, the card) stays a reviewed step.
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ -x .venv/bin/dnahnet ] && export PATH="$PWD/.venv/bin:$PATH"
M=docs/results/model_card; E=$M/evaluate.sh; data=../shared/data
version=${VERSION:-v8}; init=${INIT:-$M/v7/model}; prev=${PREV:-dnahnet}; steps=${TRAIN_STEPS:-8000}
RUN=${RUNS:-/work/runs}/cpu-$version; threads=${THREADS:-2}; out=$M/$version
mkdir -p $out
stamp() { echo "$(date -u +%FT%TZ) $*"; }

if [ -d "$RUN/final" ]; then stamp "train: done already"; else
  resume=(); [ -d "$RUN/checkpoints" ] && resume=(--resume)
  start=(--init "$init"); [ -n "${PRESET:-}" ] && start=(--preset "$PRESET")
  stamp "train: start (threads $threads ${start[*]} ${resume[*]})"
  dnahnet --threads "$threads" train --config $M/train-cpu-$version.toml "${start[@]}" --data $data/corpus/train \
      --val $data/corpus/val --out "$RUN" --steps "$steps" --cache-dir "${RUNS:-/work/runs}/cache8192" "${resume[@]}"
  stamp "train: finished"
fi
cp "$RUN/metrics.jsonl" $out/dnahnet.train_metrics.jsonl

part() {  # STEP FILE [VAR=value ...]
  local step=$1 file=$2; shift 2
  if [ -s "$out/$file" ]; then stamp "$step: done already"; return; fi
  stamp "$step: start ($*)"
  env STEPS="$step" THREADS="$threads" "$@" bash $E "$RUN/final" $version/dnahnet
  stamp "$step: finished"
}

part heldout dnahnet.heldout.tsv
VERSION=$version PREV=$prev python - <<'PY' | tee $out/shipping-rule.json
import json, os, sys
sys.path.insert(0, "docs/results/model_card")
from summarize import heldout  # held-out bits/nt per genome, as the card's tables read them
version, prev = os.environ["VERSION"], os.environ["PREV"]
new, old = heldout(f"{version}/dnahnet"), heldout(prev)
lower = {g: new[g] < old[g] for g in old}
print(json.dumps({"rule": f"{version} ships only if its held-out bits/nt are lower than those of {prev} on both "
                          f"genomes (train-cpu-{version}.toml, fixed before training)",
                  f"{version}_bits_per_nt": new, "previous_bits_per_nt": old, "lower": lower,
                  "ships": all(lower.values())}, indent=1))
PY
part dms dnahnet.dms.json
part segment dnahnet.segment.tsv
part paper dnahnet.essentiality.json
part evo2 dnahnet.essentiality-evo2.json EVO2_EVERY=32
stamp "release $version: all parts done"
