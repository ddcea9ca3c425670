#!/usr/bin/env bash
# The recipe sweep at `--scale gpu` (docs/results/recipe-gpu.md): 64 px cores of the shipped architecture,
# 512k images per variant, three processes on one GPU (one 11M-parameter core does not fill it), then the report:
#
#   OUT=gpu-out scripts/gpu_recipe.sh                   # every variant
#   OUT=gpu-out GROUPS_="baseline,combined vocab-control" scripts/gpu_recipe.sh   # chosen groups, one process each
#
# Unmeasured on a GPU so far: rehearsed on the CPU with IMAGES=512 EVAL_N=4 RECIPE_SET="data_n=2000
# batch_size=64" GROUPS_="baseline vocab-control" (a few steps and captions per variant). Cap it with
# RECIPE_TIMEOUT (seconds, default 480): finished variants are kept, evaluated and reported; copy $OUT's files
# into docs/results to publish them.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
RUNS="${RUNS:-/tmp/studio-recipe}"
mkdir -p "$RUNS"
IMAGES_ARGS=()
[ -n "${IMAGES:-}" ] && IMAGES_ARGS=(--images "$IMAGES")
[ -n "${EVAL_N:-}" ] && IMAGES_ARGS+=(--eval-n "$EVAL_N")
for item in ${RECIPE_SET:-}; do IMAGES_ARGS+=(--set "$item"); done  # e.g. RECIPE_SET="data_n=2000 batch_size=64"
GROUPS_="${GROUPS_:-baseline,layout-focus,layout-combined,noise-focus layout-relation,layout-light,ungated-position-repeat,combined,sigmoid-loss,joint-attention ungated-cross,position-repeat,vocab-control,pixel-layers,logit-normal,text-positions,text-transformer,x-loss}"
i=0
for group in $GROUPS_; do
    stamp "variants $group"
    timeout "${RECIPE_TIMEOUT:-480}" python3 -m studio experiment recipe --scale gpu --variants "$group" \
        "${IMAGES_ARGS[@]}" --out "$RUNS" > "$RUNS/group$i.log" 2>&1 &
    i=$((i + 1))
done
wait
tail -n 3 "$RUNS"/group*.log
finished=$(for d in "$RUNS"/*/; do [ -f "$d/recipe-eval.json" ] && basename "$d"; done | paste -sd, -)
stamp "report on $finished"
[ -n "$finished" ] && studio experiment recipe --scale gpu --variants "$finished" "${IMAGES_ARGS[@]}" --out "$RUNS" \
    --docs "$OUT"
tar czf "$OUT/recipe-runs.tar.gz" -C "$RUNS" --exclude='checkpoints' --exclude='*.safetensors' . 2>/dev/null
ls -la "$OUT"
