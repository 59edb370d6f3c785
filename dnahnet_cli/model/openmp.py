"""OpenMP wait policy: idle OpenMP workers sleep after a short spin instead of a long one.

Why: the compiled CPU kernels (cpu_mixer.py) split their work between the calling thread and a small pool of
their own, next to torch's OpenMP workers. GNU OpenMP (the runtime of PyTorch's Linux wheels) lets an idle
worker spin for a while after every parallel torch op (300,000 spins by default), and on a machine with as many
threads as cores that spinning worker can hold the core a kernel's second thread needs: a two-thread `small`
forward at 8,192 nt ran 1.15x faster with 10,000 spins (bench/openmp_spin_ab.py, docs/benchmarks.md). It must
be set before torch (and its libgomp) is loaded, so the `dnahnet` command applies it at start-up; a
GOMP_SPINCOUNT or OMP_WAIT_POLICY already in the environment is left alone, and other OpenMP runtimes ignore it.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "10000"

_applied: str | None = None


def short_spin() -> str:
    """Apply the policy once per process, before torch is imported; returns what was done."""
    global _applied
    if _applied is None:
        if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
            _applied = "as set in the environment"
        elif "torch" in sys.modules:
            _applied = "OpenMP default (torch was imported first)"
        else:
            os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
            _applied = f"idle workers sleep after {SPIN_COUNT} spins (GOMP_SPINCOUNT)"
    return _applied


def openmp_policy() -> str:
    """What this process runs with, without changing it (for `dnahnet info --device`)."""
    if _applied is not None:
        return _applied
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return "as set in the environment"
    return "OpenMP default (the dnahnet command shortens the spin at start-up; not applied here)"
