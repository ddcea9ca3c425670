"""What the numbers were measured on: CPU, GPU, library versions and how busy the machine was."""

from __future__ import annotations

import os
import platform

import diffusers
import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device) -> dict:
    """What the numbers were measured on (and how busy it was when the run started)."""
    device = torch.device(device)
    info = dict(device=str(device), cpu=cpu_model(), cpu_count=os.cpu_count(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                load_average_start=load_average())
    try:
        info["nice"] = os.nice(0)
    except (AttributeError, OSError):
        pass
    info["diffusers"] = diffusers.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                    cuda=torch.version.cuda, capability=f"{props.major}.{props.minor}")
    return info
