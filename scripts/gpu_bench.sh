#!/usr/bin/env bash
# Every GPU measurement of `studio bench` in one go, then the table (also written as Markdown and JSON).
#
#   OUT=bench-gpu scripts/gpu_bench.sh                 # the shipped presets (core-64, grown-256)
#   OUT=bench-gpu scripts/gpu_bench.sh --set width=128 --set heads=2 --set core_channels=64 \
#       --stage-channels 64,32,16,16                   # extra options go to `studio bench`
#
# GPU defaults (see studio.bench.BenchConfig.resolved): training batches 64 (core) and 32 (grown) as in the
# training configs, 3 warm-up + 10 counted steps, fp32 and bf16 autocast; sampling at 64/128/256 px, batch
# 1 and 8, fp32 and bf16 weights, 3 trajectories each; matmul peaks at n = 4096 and 8192; the diffusers peer;
# the data path; peak allocated memory; and the candidate speed-ups (channels_last, no host syncs, noise on
# the device generator, torch.compile with its compile time).
#
# Status: written and checked on the CPU only (no GPU was available when it was written); its numbers have
# not been measured yet. Budget: about 5-8 minutes on one H100 (most of it torch.compile and sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-gpu}"
mkdir -p "$OUT"
export STUDIO_DATA="${STUDIO_DATA:-$OUT/data}"   # tiny shapes caches for the data-path measurement
export HF_HUB_OFFLINE=1
PY="${PYTHON:-python}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv \
    | tee "$OUT/nvidia-smi.csv" || true
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if ok else 'NO CUDA DEVICE'); sys.exit(0 if ok else 3)"

timeout "${BENCH_TIMEOUT:-540}" "$PY" -m studio bench --device cuda \
    --only train,sample,peer,loader,memory,tweaks \
    --json "$OUT/bench-gpu.json" --markdown "$OUT/bench-gpu.md" "$@" 2> >(tee "$OUT/bench-gpu.log" >&2)
