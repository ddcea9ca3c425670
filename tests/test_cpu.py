"""The malloc setting that keeps sampling's freed activations for the next step (glibc on Linux)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
from studio.cpu import keep_freed_memory
applied = keep_freed_memory()
def faults(n=5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(16 << 20)  # 64 MB, freed at once, as a step's activations are
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(10)  # the heap grows to its working size first
print(applied, faults())
"""


def _run(env: dict) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    applied, kept = _run({})
    off, default = _run({"STUDIO_KEEP_FREED_MEMORY": "0"})
    assert (applied, off) == ("True", "False")
    assert default > 5 * 16_000  # each 64 MB tensor faults in its ~16k pages again by default
    assert kept < default / 10


POOL = """
import glob, sys
from studio.cpu import release_openmp_threads
before_torch = release_openmp_threads()
import torch
torch.set_num_threads(2)
def threads():
    return len(glob.glob("/proc/self/task/*"))
alone = threads()
torch.ones(1 << 22).exp()  # a parallel op: this thread gets a pool with one OpenMP worker
with_pool = threads()
released = release_openmp_threads()
after = threads()
ok = bool(torch.ones(1 << 22).exp().isfinite().all())  # the next parallel op starts the pool again
print(before_torch, alone, with_pool, released, after, threads(), ok)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp's pools (torch's Linux wheels)")
def test_release_openmp_threads_frees_the_calling_threads_pool():
    import torch

    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch was built without OpenMP")
    out = subprocess.run([sys.executable, "-c", POOL], capture_output=True, text=True, check=True).stdout.split()
    before_torch, alone, with_pool, released, after, again, ok = out
    assert before_torch == "False"  # nothing to release before torch (and its libgomp) is loaded
    assert int(with_pool) == int(alone) + 1 and released == "True"
    assert int(after) == int(alone)  # the worker thread is gone
    assert int(again) == int(with_pool) and ok == "True"

