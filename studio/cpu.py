"""Process-wide CPU settings that make sampling faster on a CPU.

glibc's malloc returns large freed blocks to the operating system (every block above a threshold is its own
mmap, and the heap top is trimmed). A 256 px sampling step allocates and frees tens of megabytes of
activations, so each step faults in ~100k fresh zeroed pages: about a fifth of a step's wall time on two
cores is the kernel handing memory back and forth. `keep_freed_memory` asks malloc to keep freed memory for
the next step instead (`mallopt`, glibc on Linux; nothing elsewhere). The price is that the process keeps its
peak memory. `STUDIO_KEEP_FREED_MEMORY=0` turns it off (`studio bench --only latency` measures both).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEEP_BYTES = 1 << 30  # no block below 1 GiB is mmap'd on its own, and up to 1 GiB of free heap top is kept
TOP_PAD_BYTES = 256 << 20
ENV = "STUDIO_KEEP_FREED_MEMORY"

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
