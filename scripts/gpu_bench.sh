#!/usr/bin/env bash
# Every GPU measurement of `studio bench` in one go, then the tables (also written as Markdown and JSON).
#
#   OUT=bench-gpu scripts/gpu_bench.sh                 # both pairs below, ~6-8 minutes on one H100
#   OUT=bench-gpu scripts/gpu_bench.sh --iters 5       # extra options go to both `studio bench` runs
#
# 1. The GPU-sized pair (core-64 11.4M + grown-256), GPU defaults (see studio.bench.BenchConfig.resolved):
#    training batches 64 (core) and 32 (grown) as in the GPU training configs, 3 warm-up + 10 counted steps,
#    fp32 and bf16 autocast against the fp32/bf16 matmul peaks (n = 4096, 8192) measured in the same run;
#    sampling at 64/128/256 px, batch 1 and 8, fp32 and bf16 weights, 25 guided steps, first-preview latency,
#    previews every step vs every 5; the diffusers UNet2DConditionModel peer of the same parameter count;
#    the data path; peak allocated memory; the shipped shapes-256 sampled as `studio sample` does; profiles;
#    and the candidate speed-ups (channels_last, fused/foreach AdamW, no host syncs, noise on the device
#    generator, torch.compile with its compile time).
# 2. The pair the shipped models use (core-64-cpu + grown-256-cpu) on the GPU: training, sampling, peer.
#
# Status: written and checked on the CPU only (no GPU was lent when it was written); its GPU numbers have
# not been measured yet.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-gpu}"
mkdir -p "$OUT"
export STUDIO_DATA="${STUDIO_DATA:-$OUT/data}"   # tiny shapes caches for the data-path measurement
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
PY="${PYTHON:-python}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv \
    | tee "$OUT/nvidia-smi.csv" || true
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if ok else 'NO CUDA DEVICE'); sys.exit(0 if ok else 3)"

timeout "${BENCH_TIMEOUT:-420}" "$PY" -m studio bench --device cuda \
    --only train,sample,peer,loader,memory,shipped,profile,tweaks \
    --json "$OUT/bench-gpu.json" --markdown "$OUT/bench-gpu.md" "$@" 2> >(tee "$OUT/bench-gpu.log" >&2)

timeout "${BENCH_TIMEOUT_CPU_PAIR:-150}" "$PY" -m studio bench --device cuda \
    --core-preset core-64-cpu --grown-preset grown-256-cpu --only train,sample,peer \
    --json "$OUT/bench-gpu-cpu-presets.json" --markdown "$OUT/bench-gpu-cpu-presets.md" "$@" \
    2> >(tee "$OUT/bench-gpu-cpu-presets.log" >&2)
