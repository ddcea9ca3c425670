"""Timing and memory helpers: synchronised wall-clock medians, the CPU share a process got, and peak memory
(polled RSS on the CPU, `max_memory_allocated` on a GPU)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import torch

try:  # optional: a cheaper RSS read than /proc/self/statm
    import psutil
except ImportError:
    psutil = None
try:  # Unix only: the lifetime peak RSS
    import resource
except ImportError:
    resource = None

MB = 2 ** 20


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], *, warmup: int, iters: int, device, max_seconds: float | None = None,
          cpu_times: list[float] | None = None) -> list[float]:
    """Wall seconds per call of `fn` for up to `iters` calls after `warmup` uncounted ones. Stops early (after
    at least one counted call) once `max_seconds` of counted time have passed. `cpu_times` (optional) gets the
    process CPU seconds (all threads) of each counted call: on a shared machine, wall time also measures
    the other jobs, CPU time mostly measures our work."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    for _ in range(max(1, iters)):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return times


def cpu_share(wall: float, cpu: float) -> float | None:
    """The share of the torch threads' capacity the process got: CPU seconds / (wall seconds x threads)."""
    return cpu / (wall * torch.get_num_threads()) if wall > 0 else None


def rss_bytes() -> int | None:
    """This process's resident memory now (psutil if installed, else /proc/self/statm; None without either)."""
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float | None:
    """This process's peak RSS since it started its program (VmHWM of /proc/self/status, in MiB). Unlike
    getrusage's ru_maxrss, which a child keeps from its parent across fork + exec, VmHWM belongs to the
    address space that exec creates, so a fresh child reports its own peak. None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_rss_mb() -> float | None:
    """The process's lifetime peak RSS (getrusage), in MiB."""
    if resource is None:
        return None
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except OSError:
        return None
    return round(peak / (MB if sys.platform == "darwin" else 1024), 1)


class PeakMemory:
    """Peak memory inside a `with` block: allocated bytes on a GPU; on the CPU the process RSS, polled from a
    thread every `interval` s (psutil if installed, else /proc/self/statm). `result()` -> dict in MiB."""

    def __init__(self, device, interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval  # psutil's RSS read costs ~50 us: 1% of one core at 5 ms
        self.base = self.peak = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = self.peak = rss_bytes()
            if self.base is not None:
                self._thread = threading.Thread(target=self._poll, name="bench-rss", daemon=True)
                self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            rss = rss_bytes()
            if rss is not None and rss > self.peak:
                self.peak = rss

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes() or 0)

    def result(self) -> dict:
        kind = "cuda_max_allocated" if self.device.type == "cuda" else "rss"
        if self.peak is None:
            return dict(kind=kind, peak_mb=None, delta_mb=None)
        return dict(kind=kind, peak_mb=round(self.peak / MB, 1), delta_mb=round((self.peak - self.base) / MB, 1))
