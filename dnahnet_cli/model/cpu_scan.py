"""The compiled CPU scan for Mamba2's SSD at inference (`csrc/ssd_scan.c`), built once per machine.

Why: on a CPU the chunked SSD (ssd.py) spends a scoring forward's time in ~20 elementwise passes and many
small matmuls per layer; the plain recurrence over time, with each head's state in L1 cache, touches every
input once. It is the same arithmetic up to fp32 rounding (tests/test_cpu_scan.py; rel. error ~1e-7).

How: the C file has no dependency but libm, so any C compiler builds it in about a second (no torch headers,
no ninja). The shared library is cached per source, CPU and compiler under `$DNAHNET_KERNEL_CACHE`, else
`$XDG_CACHE_HOME/dnahnet/kernels`, else `~/.cache/dnahnet/kernels`, built with `-march=native` (the CPU's
flags are part of the cache key, so a home directory shared by different cluster nodes keeps one build per
CPU kind). After loading, it must match the reference scan on a random problem or it is not used. Without a
compiler, or when anything fails, the reference path runs and `status()` says why (`dnahnet info --device`,
one line on stderr). Only inference uses it: training needs the reference path's gradients.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "ssd_scan.c"
CHECK_TOLERANCE = 1e-4  # relative Frobenius error against ssd_chunked on the self-check problem (seen: ~1e-7)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_status: str | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _cache_dir() -> Path:
    if os.environ.get("DNAHNET_KERNEL_CACHE"):
        return Path(os.environ["DNAHNET_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dnahnet" / "kernels"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's feature flags (Linux) or, elsewhere, its name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _compiler() -> str | None:
    return os.environ.get("DNAHNET_CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _compile(cc: str, target: Path) -> None:
    """Compile to a temporary file and rename it into place (never a half-written library); -march=native
    first, then without it for compilers or CPUs that refuse the flag."""
    target.parent.mkdir(parents=True, exist_ok=True)
    base = ["-O3", "-fopenmp-simd", "-shared", "-fPIC", str(SOURCE), "-lm"]
    errors = []
    for extra in (["-march=native"], []):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            res = subprocess.run([cc, *extra, *base, "-o", tmp], capture_output=True, text=True, timeout=120)
            if res.returncode == 0:
                os.replace(tmp, target)
                return
            errors.append(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"{cc} failed: {errors[-1]}")


def _self_check(lib: ctypes.CDLL) -> float:
    """Relative error of the compiled scan against ssd_chunked on a small random problem (padding, an initial
    state, two batch rows)."""
    from dnahnet_cli.model.ssd import ssd_chunked

    gen = torch.Generator().manual_seed(0)
    b, l, h, p, n = 2, 70, 3, 8, 16
    xbc = torch.randn(b, l, h * p + 2 * n, generator=gen)
    dt = torch.rand(b, l, h, generator=gen) * 0.2
    dt[1, 50:] = 0.0  # padded tail
    A, D = -torch.rand(h, generator=gen) * 4 - 0.5, torch.randn(h, generator=gen)
    init = torch.randn(b, h, p, n, generator=gen)
    y, state = _run(lib, xbc, dt, A, D, h, p, n, init, threads=1)
    x = xbc[..., : h * p].reshape(b, l, h, p)
    B, C = xbc[..., h * p: h * p + n].reshape(b, l, 1, n), xbc[..., h * p + n:].reshape(b, l, 1, n)
    ref_y, ref_state = ssd_chunked(x * dt[..., None], dt * A, B, C, 16, init)
    ref_y = (ref_y + x * D[:, None]).reshape(b, l, h * p)
    return max(float((y - ref_y).norm() / ref_y.norm()), float((state - ref_state).norm() / ref_state.norm()))


def load() -> ctypes.CDLL | None:
    """The compiled scan, building it on first use; None when unavailable (see `status()`)."""
    global _lib, _status
    if _status is not None:
        return _lib
    with _lock:
        if _status is not None:
            return _lib
        cc = _compiler()
        if cc is None:
            _status = "unavailable: no C compiler (cc, gcc or clang; or set DNAHNET_CC)"
            return None
        key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), _cpu_signature().encode(), cc.encode(),
                                         platform.python_implementation().encode()])).hexdigest()[:16]
        target = _cache_dir() / f"ssd_scan-{key}.so"
        try:
            if not target.exists():
                _compile(cc, target)
            lib = ctypes.CDLL(str(target))
            lib.ssd_scan.restype = None
            lib.ssd_scan.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 7
            err = _self_check(lib)
            if not err <= CHECK_TOLERANCE:
                _status = f"unavailable: failed its numerical check (rel. error {err:.1e} > {CHECK_TOLERANCE:g})"
            else:
                _lib, _status = lib, f"compiled C scan ({target})"
        except Exception as exc:  # any build or load failure means: use the reference path
            _status = f"unavailable: {type(exc).__name__}: {exc}"[:300]
        if _lib is None:
            print(f"dnahnet: note: CPU SSD scan kernel {_status}; using the PyTorch reference scan",
                  file=sys.stderr)
        return _lib


def status() -> str:
    """Whether the compiled scan is in use here, and where it lives or why not (builds it if needed)."""
    load()
    return _status or "not loaded"


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dnahnet-scan"), threads
    return _pool


def _run(lib: ctypes.CDLL, xbc: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, D: torch.Tensor, nheads: int,
         headdim: int, d_state: int, init: torch.Tensor | None, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    b, l, cd = xbc.shape
    xbc, dt = xbc.float().contiguous(), dt.float().contiguous()
    A, D = A.float().contiguous(), D.float().contiguous()
    y = torch.empty(b, l, nheads * headdim, dtype=torch.float32)
    state = (init.float().contiguous().clone() if init is not None
             else torch.zeros(b, nheads, headdim, d_state, dtype=torch.float32))
    ptrs = [t.data_ptr() for t in (xbc, dt, A, D, y, state)]
    jobs = b * nheads

    def span(begin: int, end: int) -> None:  # ctypes releases the GIL for the call
        lib.ssd_scan(*ptrs, l, cd, nheads, headdim, d_state, begin, end)

    threads = max(1, min(threads, jobs))
    if threads == 1:
        span(0, jobs)
    else:
        bounds = [jobs * i // threads for i in range(threads + 1)]
        list(_executor(threads).map(span, bounds[:-1], bounds[1:]))
    return y, state


def ssd_scan(xbc: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, D: torch.Tensor, nheads: int, headdim: int,
             d_state: int, init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """y (b, l, nheads*headdim) with the D skip added, and the final state (b, nheads, headdim, d_state).

    xbc (b, l, >= nheads*headdim + 2*d_state): the conv output [x | B | C]; dt (b, l, nheads) after softplus and
    the padding mask; A, D (nheads); init (b, nheads, headdim, d_state) or None. fp32 CPU tensors, no gradient.
    """
    lib = load()
    if lib is None:
        raise RuntimeError(f"the CPU scan kernel is {status()}")
    return _run(lib, xbc, dt, A, D, nheads, headdim, d_state, init, torch.get_num_threads())
