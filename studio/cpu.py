"""Process-wide CPU settings that make sampling faster on a CPU.

glibc's malloc returns large freed blocks to the operating system (every block above a threshold is its own
mmap, and the heap top is trimmed). A 256 px sampling step allocates and frees tens of megabytes of
activations, so each step faults in ~100k fresh zeroed pages: about a fifth of a step's wall time on two
cores is the kernel handing memory back and forth. `keep_freed_memory` asks malloc to keep freed memory for
the next step instead (`mallopt`, glibc on Linux; nothing elsewhere). The price is that the process keeps its
peak memory. `STUDIO_KEEP_FREED_MEMORY=0` turns it off (`studio bench --only latency` measures both).

GNU OpenMP (the libgomp that Linux wheels of torch use) keeps a pool of worker threads for every thread that ran
a parallel op. Once the process holds more OpenMP threads than it has CPUs, libgomp stops letting idle workers
spin between parallel regions: they sleep, and every op then waits for its worker to wake up. A sampler on a
worker thread (the app's, a notebook's live preview) runs far slower while the thread that loaded the model
still holds its idle pool. `release_openmp_threads` frees the calling thread's pool; the app calls it on each
thread that is done with torch work, so only the sampling thread keeps one.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEEP_BYTES = 1 << 30  # no block below 1 GiB is mmap'd on its own, and up to 1 GiB of free heap top is kept
TOP_PAD_BYTES = 256 << 20
ENV = "STUDIO_KEEP_FREED_MEMORY"
OMP_PAUSE_SOFT = 1  # omp_pause_resource_t (OpenMP 5.0): libgomp frees the calling thread's pool for either kind

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the malloc settings once per process; whether they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in (
            (M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES), (M_TOP_PAD, TOP_PAD_BYTES)))
    except (OSError, AttributeError):  # not glibc (musl, ...): its allocator keeps its own policy
        return False


def release_openmp_threads() -> bool:
    """Free the OpenMP worker threads that parallel torch ops on the calling thread started (GNU libgomp; the next
    parallel op on this thread starts them again). Whether libgomp released them; False on other OpenMP
    runtimes, whose pause is process-wide and would stop another thread's sampler, and before torch is loaded."""
    pause = _libgomp_pause()
    return pause is not None and pause(OMP_PAUSE_SOFT) == 0


def _libgomp_pause():
    if "torch" not in sys.modules:  # its libgomp is not loaded yet: look again later
        return None
    return _find_libgomp_pause()


@functools.cache
def _find_libgomp_pause():
    """`omp_pause_resource_all` of the libgomp this process loaded (torch's own copy), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split(maxsplit=5)[-1].strip() for line in maps if "libgomp" in line})
    except OSError:
        return None
    for path in paths:
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):  # an older libgomp without OpenMP 5.0's pause
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        return pause
    return None


def releasing_openmp_threads(fn):
    """Decorate a function that runs torch work on a thread other than the sampler's (an app handler): the
    thread's OpenMP pool is released when it returns (`release_openmp_threads`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_openmp_threads()

    return wrapper
