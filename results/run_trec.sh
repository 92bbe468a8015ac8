#!/usr/bin/env bash
# The README's TREC-6 results: 4 setups x 3 seeds, one run at a time.
#   bash results/run_trec.sh [OUT]      (default OUT: runs/results/trec)
set -u
cd "$(dirname "$0")/.."
out=${1:-runs/results/trec}
mkdir -p "$out"
for cfg in rnn:trec rnn:trec_reg lstm:trec_reg bilstm:trec_reg; do
  for seed in 0 1 2; do
    dir="$out/${cfg/:/_}_s$seed"
    [ -f "$dir/summary.json" ] && continue
    start=$(date +%s.%N)
    .venv/bin/python -m jaxreg.main --config=configs/${cfg%%:*}.py:${cfg#*:} \
        --workdir="$dir" --config.seed=$seed > "$dir.log" 2>&1
    echo "$cfg seed=$seed rc=$? wall=$(echo "$(date +%s.%N) - $start" | bc) s" | tee -a "$out/walltimes.txt"
  done
done
