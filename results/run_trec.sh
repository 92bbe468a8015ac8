#!/usr/bin/env bash
# The TREC-6 results of docs/results/trec.md: each setup x seeds 0,1,2, one run at a time.
#   bash results/run_trec.sh [OUT [SETUP ...]]   (default OUT: runs/results/trec,
#   SETUPs: rnn:trec rnn:trec_reg lstm:trec_reg bilstm:trec_reg)
# Finished runs (summary.json present) are skipped, so it resumes and can be split
# across processes by SETUP.
set -u
cd "$(dirname "$0")/.."
out=${1:-runs/results/trec}
shift || true
setups=${*:-rnn:trec rnn:trec_reg lstm:trec_reg bilstm:trec_reg}
mkdir -p "$out"
for cfg in $setups; do
  for seed in 0 1 2; do
    dir="$out/${cfg/:/_}_s$seed"
    [ -f "$dir/summary.json" ] && continue
    start=$(date +%s)
    .venv/bin/python -m jaxreg.main --config=configs/${cfg%%:*}.py:${cfg#*:} \
        --workdir="$dir" --config.seed=$seed > "$dir.log" 2>&1
    echo "$cfg seed=$seed rc=$? wall=$(( $(date +%s) - start )) s" | tee -a "$out/walltimes.txt"
  done
done
