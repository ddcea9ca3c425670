#!/usr/bin/env bash
# The experiments of docs/results/experiments.md at `--scale gpu` (the same models, ~27x the images), one
# process per seed on one GPU (the models are too small to fill it alone), then the report:
#
#   OUT=gpu-out scripts/gpu_experiments.sh          # results.json + the report files in $OUT
#
# Unmeasured: written when no GPU time was left. Budget it at ~10 minutes of an H100 and cap it with
# EXPERIMENT_TIMEOUT (seconds, default 480): finished runs are kept, and `--reuse-only` then reports the
# experiments whose runs all finished. Copy $OUT's files into docs/results to publish them.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
RUNS="${RUNS:-/tmp/studio-experiments}"
mkdir -p "$RUNS"
for seed in ${SEEDS:-0 1 2}; do
    timeout "${EXPERIMENT_TIMEOUT:-480}" python3 -m studio experiment run --scale gpu --seeds "$seed" --out "$RUNS" \
        > "$RUNS/seed$seed.log" 2>&1 &
done
wait
tail -n 3 "$RUNS"/seed*.log
studio experiment run --scale gpu --reuse-only --out "$RUNS" --docs "$OUT"
cp "$RUNS/results.json" "$OUT/results.json"
ls -la "$OUT"
