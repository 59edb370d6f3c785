"""Host-memory policy: keep freed tensor memory in the process instead of returning it to the OS after every op.

PyTorch's CPU allocator is plain malloc. glibc serves every block above its mmap threshold (at most 32 MiB) with a
fresh `mmap` and unmaps it on free, so each forward pass over a batch of 2,048-nt windows faults in and zeroes
gigabytes of new pages: scoring 16 such windows spent 25-29 % of its CPU time in the kernel. With mmap off for
malloc and the heap trimmed only above 1 GiB of free space, those pages are reused: scoring 16 x 2,047 nt with
the shipped model ran 1.30x faster on 1 thread and 1.38x on 2, page faults per call fell from ~600,000 to ~4,000,
and peak memory stayed within 2 %; a training step, which faults little, is unchanged (1.01x)
(`bench/allocator_probe.py`, docs/results/allocator.json). Only glibc has these knobs (`mallopt`); elsewhere
this is a no-op. `DNAHNET_MALLOC=system` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from dnahnet_cli.errors import DnahnetError

MODES = ("keep", "system")  # DNAHNET_MALLOC values
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
KEEP_UP_TO = 1 << 30  # bytes of free heap kept before glibc trims it back to the OS

_applied: str | None = None


def keep_freed_memory() -> str:
    """Apply the policy once per process (the CLI does it at start-up); returns what was done, for
    `dnahnet info --device`. Safe to call more than once, and before or after torch is imported."""
    global _applied
    if _applied is not None:
        return _applied
    mode = os.environ.get("DNAHNET_MALLOC", "keep")
    if mode not in MODES:
        raise DnahnetError(f"DNAHNET_MALLOC={mode!r}: choose {' or '.join(MODES)} (or leave it unset)")
    if mode == "system":
        _applied = "system malloc (DNAHNET_MALLOC=system)"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _applied = "system malloc (not glibc)"
    else:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO) == 1
        except (OSError, AttributeError):
            ok = False
        _applied = ("glibc malloc keeps freed memory (mmap off, trim above 1 GiB; DNAHNET_MALLOC=system to "
                    "turn off)" if ok else "system malloc (mallopt refused)")
    return _applied


def host_memory_policy() -> str:
    """What this process runs with, without changing it (for `dnahnet info --device`)."""
    return _applied or "system malloc (the dnahnet command applies the policy at start-up; not applied here)"
