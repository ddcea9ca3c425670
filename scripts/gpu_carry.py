"""What a GPU machine without diffusers or the MiniLM package needs, small enough to travel with a call:

- `.whl/diffusers-<version>-py3-none-any.whl`: the installed diffusers version's wheel without its concrete
  pipelines (studio uses `DiffusionPipeline` only): 2.9 MB instead of 6.4 MB;
- `.minilm/minilm-fp16/`: the MiniLM text encoder with fp16 weights (46 MB instead of 91 MB), used through
  `STUDIO_TEXT_ENCODER` (loading upcasts to fp32; embeddings differ from the package's by fp16 rounding).

    python scripts/gpu_carry.py        # or: make gpu-carry
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")


def trimmed_diffusers_wheel(out: Path) -> Path:
    import diffusers

    out.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(out), f"diffusers=={diffusers.__version__}"], check=True)
    wheel = next(out.glob(f"diffusers-{diffusers.__version__}-*.whl"))
    trimmed = wheel.with_suffix(".trim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for item in src.infolist():
            parts = item.filename.split("/")
            if parts[0] == "diffusers" and len(parts) > 3 and parts[1] == "pipelines":
                continue  # a concrete pipeline's subpackage
            dst.writestr(item, src.read(item.filename))
    trimmed.replace(wheel)
    return wheel


def fp16_text_encoder(out: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    from studio.text import default_text_encoder_path

    source = default_text_encoder_path()
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out


if __name__ == "__main__":
    wheel = trimmed_diffusers_wheel(ROOT / ".whl")
    encoder = fp16_text_encoder(ROOT / ".minilm" / "minilm-fp16")
    size = sum(f.stat().st_size for f in encoder.iterdir())
    print(f"{wheel.relative_to(ROOT)}: {wheel.stat().st_size / 1e6:.1f} MB; {encoder.relative_to(ROOT)}: {size / 1e6:.1f} MB")
