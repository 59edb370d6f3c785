"""Compiled CPU kernels for Mamba2's mixer (`csrc/mamba2_cpu.c`), built once per machine, with the attention kernel
(`csrc/attention_cpu.c`, called from cpu_attention.py) in the same library.

Why: on a CPU the reference mixer (layers.py, ssd.py) spends a scoring forward's time in some thirty
elementwise passes and many small matmuls per layer. Here the causal conv + SiLU, the SSD scan and the gated
RMSNorm each make one pass: the SSD as the plain recurrence over time, with each head's state in L1 cache,
the other two row by row. The arithmetic is the reference's up to fp32 rounding (rel. error ~1e-7,
tests/test_cpu_mixer.py; exp is a branch-free polynomial so that its loops vectorise).

How: the C files need nothing but libm, so any C compiler builds them in a second or two (no torch headers,
no ninja). The shared library is cached per source files, CPU and compiler under `$DNAHNET_KERNEL_CACHE`, else
`$XDG_CACHE_HOME/dnahnet/kernels`, else `~/.cache/dnahnet/kernels`, built with `-march=native` and 512-bit
vectors preferred (`COMPILE_FLAGS`; the CPU's flags are part of the cache key, so a home directory shared by
different cluster nodes keeps one build per CPU kind). After loading, every function must match its
reference on a random problem or none is used. Without a compiler, or when anything fails, the reference path
runs and `status()` says why (`dnahnet info --device`; one line on stderr). Training takes the same three
passes with compiled backwards (`conv_silu_trainable`, `ssd_scan_trainable`, `gated_rmsnorm_trainable`),
checked the same way."""

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
import torch.nn.functional as F

from dnahnet_cli.genomics.fileio import current_umask

SOURCE = Path(__file__).with_name("csrc") / "mamba2_cpu.c"
ATTENTION_SOURCE = SOURCE.with_name("attention_cpu.c")
CHECK_TOLERANCE = 1e-4  # relative Frobenius error against ssd_chunked on the self-check problem (seen: ~1e-7)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_status: str | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _cache_dir() -> Path:
    """Where built kernels live: a private folder (owned by this user, writable by no one else: a library is only
    loaded from such a folder, and one that is not would be rebuilt on every run). $DNAHNET_KERNEL_CACHE when it is
    one (else a note says why not), else the per-user cache, else a private temporary folder (a read-only home
    directory on a cluster, or no home at all in a container), so the build still happens once per boot."""
    given = os.environ.get("DNAHNET_KERNEL_CACHE")
    if given:
        why = _unusable_folder(Path(given))
        if why is None:
            return Path(given)
        print(f"dnahnet: note: DNAHNET_KERNEL_CACHE {given} is not used: {why}", file=sys.stderr)
    try:
        default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnahnet" / "kernels"
        if default.is_dir() and not _private(default) and default.stat().st_uid == getattr(os, "getuid", lambda: -1)():
            os.chmod(default, default.stat().st_mode & ~0o022)  # made group-writable under umask 002 before
        if _unusable_folder(default) is None:
            return default
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without HOME or a passwd entry
        pass
    user = os.getuid() if hasattr(os, "getuid") else "user"
    temp = Path(tempfile.gettempdir())  # FileNotFoundError: no usable temporary folder at all
    real = [os.environ.get(v) for v in ("TMPDIR", "TEMP", "TMP")] + ["/tmp", "/var/tmp", "/usr/tmp"]
    if os.name == "posix" and temp.resolve() not in {Path(t).resolve() for t in real if t}:
        # Python's last resort is the working directory: not a results folder to leave a build in
        raise FileNotFoundError("no writable cache or temporary folder (only the working directory)")
    shared = temp / f"dnahnet-kernels-{user}"
    try:
        shared.mkdir(mode=0o700, exist_ok=True)
        if _private(shared):
            return shared
    except OSError:
        pass
    # someone else made that folder in the shared temporary directory (or can write to it): never load from it
    return Path(tempfile.mkdtemp(prefix="dnahnet-kernels-"))


def _unusable_folder(path: Path) -> str | None:
    """Create `path` if needed (never group- or world-writable, whatever the umask: 002 on many clusters); None
    when it is private (see _private) and this process can write to it, else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
        if not _private(path):
            return ("another user owns it or others can write to it (kernels are built and loaded only in a folder "
                    "of this user that no one else can write to)")
        return None if os.access(path, os.W_OK) else "not writable"
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"


def _private(path: Path) -> bool:
    """Owned by this user (or root) and writable by no one else: safe to load code from."""
    st = path.stat()
    owner_ok = not hasattr(os, "getuid") or st.st_uid in (os.getuid(), 0)
    return owner_ok and not st.st_mode & 0o022


def _trusted_library(target: Path) -> bool:
    """A built library this process may load: private (see _private) and whole (its SHA-256, recorded beside it
    when it was built, matches: a truncated .so crashed every run with SIGBUS)."""
    digest = target.with_suffix(".sha256")
    try:
        return (_private(target) and _private(target.parent) and digest.is_file()
                and digest.read_text().strip() == hashlib.sha256(target.read_bytes()).hexdigest())
    except OSError:
        return False


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


# Target flags, tried in order until the compiler accepts them. -march=native alone also takes the tuning of
# the CPU model the compiler recognises, and GCC 12's tunings for Skylake-SP, Cascade Lake, Ice Lake and Rocket
# Lake (which it took a virtualised AMX Xeon for) prefer 256-bit vectors and copy each 64-byte vector in two
# halves, which stalls store forwarding when the whole vector is read back: on that Xeon a `small` forward took
# 1.8x as long and the attention kernel 4.7x (bench/kernel_tuning.py; docs/benchmarks.md, "Compiler tuning").
# The kernels are written for 16-float vectors, so 512-bit moves and loops are asked for where the compiler knows
# the options (GCC >= 12 all three; Clang only -mprefer-vector-width, the second attempt; none of them matters on
# a CPU without AVX-512); then plain -march=native; then nothing, for compilers or CPUs that refuse it.
COMPILE_FLAGS: tuple[tuple[str, ...], ...] = (
    ("-march=native", "-mprefer-vector-width=512", "-mmove-max=512", "-mstore-max=512"),
    ("-march=native", "-mprefer-vector-width=512"),
    ("-march=native",),
    (),
)


def _compile(cc: str, target: Path, sources: tuple[Path, ...]) -> None:
    """Compile to a temporary file and rename it into place (never a half-written library), with the first of
    COMPILE_FLAGS that the compiler accepts."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # -fno-trapping-math lets the clamps in exp_approx become vector selects; it changes no result
    base = ["-O3", "-fopenmp-simd", "-fno-trapping-math", "-shared", "-fPIC", *map(str, sources), "-lm"]
    errors = []
    for extra in COMPILE_FLAGS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            res = subprocess.run([cc, *extra, *base, "-o", tmp], capture_output=True, text=True, timeout=120)
            if res.returncode == 0:
                os.chmod(tmp, 0o777 & ~current_umask() & ~0o022)  # readable by the group like any output, never writable
                digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
                os.replace(tmp, target)
                _write_beside(target, ".sha256", digest)
                _write_beside(target, ".flags", " ".join(extra))  # for status(): what was used
                return
            errors.append(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"{cc} failed: {errors[-1]}")


def built_library(stem: str, sources: tuple[Path, ...]) -> Path:
    """The shared library `stem` built from `sources` for this CPU and compiler, from the cache or compiled now
    (see the module docstring); raises when there is no compiler or the build fails."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang; or set DNAHNET_CC)")
    key = hashlib.sha256(b"\0".join([*(s.read_bytes() for s in sources), _cpu_signature().encode(), cc.encode(),
                                     repr(COMPILE_FLAGS).encode(),
                                     platform.python_implementation().encode()])).hexdigest()[:16]
    target = _cache_dir() / f"{stem}-{key}.so"  # no writable folder at all: raises, and the caller falls back
    if not _trusted_library(target):  # missing, damaged, or not safely ours: build it (again)
        if target.exists() and not os.access(target.parent, os.W_OK):
            target = Path(tempfile.mkdtemp(prefix="dnahnet-kernels-")) / target.name
        _compile(cc, target, sources)
    return target


def _write_beside(target: Path, suffix: str, text: str) -> None:
    """One line in the file of that suffix next to the library, written whole (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, target.with_suffix(suffix))


def _built_with(target: Path) -> str:
    """The target flags the library was built with, as `_compile` recorded them (a performance question often
    comes down to whether the compiler was given -march=native and the 512-bit options)."""
    try:
        flags = target.with_suffix(".flags").read_text().strip()
    except OSError:
        return "target flags not recorded"
    return f"built with {flags}" if flags else "built without target flags"


def _self_check() -> float:
    """See _check_all; run outside any inference mode and any autocast (the first use may come from inside
    either), so that the gradient part can build a graph and the references run in fp32: under a bf16 autocast
    the reference conv and norm round to bf16 and the check failed (rel. error 2e-3) for no fault of the kernels."""
    with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
        return _check_all()


def _check_all() -> float:
    """Largest relative error of the compiled functions against the reference ops on small random problems (a
    padded row, an initial state, two batch rows, a strided gate; the training scan's gradients)."""
    from dnahnet_cli.model.layers import GatedRMSNorm, causal_depthwise_conv_silu
    from dnahnet_cli.model.ssd import ssd_chunked

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    def reference(xbc, dt, A, D, init=None):  # ssd_scan's y and final state through the chunked reference
        x = xbc[..., : h * p].reshape(b, l, h, p)
        B, C = xbc[..., h * p: h * p + n].reshape(b, l, 1, n), xbc[..., h * p + n:].reshape(b, l, 1, n)
        y, state = ssd_chunked(x * dt[..., None], dt * A, B, C, 16, init)
        return (y + x * D[:, None]).reshape(b, l, h * p), state

    gen = torch.Generator().manual_seed(0)
    b, l, h, p, n, k = 2, 70, 3, 8, 16, 4
    xbc = torch.randn(b, l, h * p + 2 * n, generator=gen)
    dt = torch.rand(b, l, h, generator=gen) * 0.2
    dt[1, 50:] = 0.0  # padded tail
    A, D = -torch.rand(h, generator=gen) * 4 - 0.5, torch.randn(h, generator=gen)
    init = torch.randn(b, h, p, n, generator=gen)
    y, state = ssd_scan(xbc, dt, A, D, h, p, n, init, threads=1)
    errors = [rel(got, want) for got, want in zip((y, state), reference(xbc, dt, A, D, init))]
    full = torch.randn(b, l + k - 1, 40, generator=gen) * 3  # large values reach exp's clamps
    weight, bias = torch.randn(40, 1, k, generator=gen), torch.randn(40, generator=gen)
    errors.append(rel(conv_silu(full, weight, bias, threads=1), causal_depthwise_conv_silu(full, weight, bias)))
    proj = torch.randn(b, l, 3 * h * p, generator=gen) * 4
    norm = GatedRMSNorm(h * p)
    norm.weight.data = torch.randn(h * p, generator=gen)
    z = proj[..., : h * p]  # a strided slice, as in the mixer
    errors.append(rel(gated_rmsnorm(y, z, norm.weight, norm.eps, threads=1), norm(y, z)))
    hidden, residual = torch.randn(b, l, 40, generator=gen), torch.randn(b, l, 40, generator=gen) * 3
    weight40 = torch.randn(40, generator=gen)
    for block_out, skip in ((hidden, residual), (hidden.bfloat16(), residual), (hidden, None)):
        want = block_out.float() + (skip if skip is not None else 0)
        want_norm = want * torch.rsqrt(want.pow(2).mean(-1, keepdim=True) + 1e-5) * weight40
        got, got_norm = add_rmsnorm(block_out, skip, weight40, 1e-5, threads=1)
        errors += [rel(got, want), rel(got_norm, want_norm)]
    with torch.enable_grad():  # the training passes' gradients against autograd through the references
        def compare(compiled, reference_fn, inputs, seed_shape):
            leaves = [t.clone().requires_grad_() for t in inputs]
            grad_out = torch.randn(*seed_shape, generator=gen)
            got = torch.autograd.grad((compiled(*leaves) * grad_out).sum(), leaves)
            want = torch.autograd.grad((reference_fn(*leaves) * grad_out).sum(), leaves)
            return [rel(g, r) for g, r in zip(got, want)]

        errors += compare(lambda *t: ssd_scan_trainable(*t, h, p, n), lambda *t: reference(*t)[0],
                          (xbc, dt, A, D), (b, l, h * p))
        errors += compare(conv_silu_trainable, causal_depthwise_conv_silu, (full, weight, bias), (b, l, 40))
        errors += compare(lambda x, r, w: sum(add_rmsnorm_trainable(x, r, w, 1e-5)),  # both outputs used
                          lambda x, r, w: (x + r) * (1 + torch.rsqrt((x + r).pow(2).mean(-1, keepdim=True) + 1e-5) * w),
                          (hidden, residual, weight40), (b, l, 40))
        errors += compare(lambda *t: gated_rmsnorm_trainable(*t, norm.eps),
                          lambda yy, zz, ww: _gated_norm(yy, zz, ww, norm.eps),
                          (y, z, norm.weight.detach()), (b, l, h * p))
    return max(errors + _attention_errors(gen))


def _gated_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """layers.GatedRMSNorm's arithmetic as a function: the gradient check calls no module, since a first use from
    inside a module under FlopCounterMode (whose module hooks autograd.grad trips over) failed the check."""
    x = y * F.silu(z)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _attention_errors(gen: torch.Generator) -> list[float]:
    """cpu_attention's three masks against SDPA with the same mask written out, for each compiled head width:
    causal with a window, a cache continued at different positions per row, and keys out of order (a ring)."""
    from dnahnet_cli.model import cpu_attention

    errors = []
    for d in (*cpu_attention.WIDTHS, 24):  # and a width padded to the next
        b, h, l, window = 2, 3, 53, 20
        q, k, v = (torch.randn(b, h, l, d, generator=gen) * 2 for _ in range(3))
        i = torch.arange(l)
        allowed = (i[None] <= i[:, None]) & (i[:, None] - i[None] <= window)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        errors.append(float((cpu_attention.causal(q, k, v, window) - want).norm() / want.norm()))
        positions = torch.stack([torch.arange(30, 30 + 9), torch.arange(40, 40 + 9)])  # 9 queries after a cache
        qc = q[:, :, :9]
        allowed = i[None, None, :] <= positions[:, :, None]
        want = F.scaled_dot_product_attention(qc, k, v, attn_mask=allowed[:, None])
        errors.append(float((cpu_attention.by_position(qc, k, v, positions) - want).norm() / want.norm()))
        key_positions = torch.randperm(l, generator=gen).expand(b, l)  # a shuffled ring, some slots empty
        valid = torch.rand(b, l, generator=gen) < 0.8
        allowed = valid[:, None, :] & (key_positions[:, None, :] <= positions[:, :, None]) & (
            positions[:, :, None] - key_positions[:, None, :] <= window)
        want = F.scaled_dot_product_attention(qc, k, v, attn_mask=allowed[:, None])
        got = cpu_attention.ring(qc, k, v, key_positions, valid, positions, window)
        errors.append(float((got - want).norm() / want.norm()))
        # the training backward against the gradients written out (no autograd: the first use can come from
        # inside a module under a dispatch mode such as FlopCounterMode, whose hooks autograd.grad trips over)
        allowed = (i[None] <= i[:, None]) & (i[:, None] - i[None] <= window)
        dout = torch.randn(b, h, l, d, generator=gen)
        errors += [float((g - w).norm() / w.norm()) for g, w in zip(cpu_attention.gradients(q, k, v, window, dout),
                                                                   _attention_gradients(q, k, v, allowed, dout))]
    return errors


def _attention_gradients(q, k, v, allowed, dout):
    """d(sum(dout * softmax(q k^T / sqrt(d), masked) v)) / d(q, k, v), in float64."""
    q, k, v, dout = (t.double() for t in (q, k, v, dout))
    scale = q.shape[-1] ** -0.5
    p = torch.softmax((q @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf")), dim=-1)
    dp = dout @ v.transpose(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    return ds @ k * scale, ds.transpose(-1, -2) @ q * scale, p.transpose(-1, -2) @ dout


def load() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None when unavailable (see `status()`)."""
    global _lib, _status
    if _status is not None:
        return _lib
    with _lock:
        if _status is not None:
            return _lib
        if _compiler() is None:  # said once on stderr below, as any other reason is
            _status = "unavailable: no C compiler (cc, gcc or clang; or set DNAHNET_CC)"
        else:
            try:
                target = built_library("mamba2_cpu", (SOURCE, ATTENTION_SOURCE))
                lib = ctypes.CDLL(str(target))
                ptr, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
                none, c_int = None, ctypes.c_int
                for name, result, args in (
                        ("ssd_scan", none, [ptr] * 7 + [i64] * 8), ("conv_silu", none, [ptr] * 4 + [i64] * 5),
                        ("ssd_scan_backward", none, [ptr] * 6 + [i64] + [ptr] * 6 + [i64] * 7),
                        ("gated_rmsnorm", none, [ptr, ptr, i64, ptr, f32, ptr, ptr] + [i64] * 3),
                        ("add_rmsnorm", none, [ptr, i64, ptr, ptr, f32, ptr, ptr, ptr] + [i64] * 3),
                        ("add_rmsnorm_backward", none, [ptr] * 7 + [i64] * 3),
                        ("gated_rmsnorm_backward", none, [ptr, ptr, i64] + [ptr] * 6 + [i64] * 3),
                        ("conv_silu_backward", none, [ptr] * 7 + [i64] * 6),
                        ("attend_ranges", c_int, [ptr] * 7 + [i64] * 4 + [ptr] + [i64] * 2),
                        ("attend_ranges_backward", c_int, [ptr] * 12 + [i64] * 4 + [ptr] + [i64] * 2),
                        ("attention_block", i64, [i64])):
                    getattr(lib, name).restype = result
                    getattr(lib, name).argtypes = args
                _lib = lib  # for the self-check's calls; withdrawn if it fails
                err = _self_check()
                if not err <= CHECK_TOLERANCE:
                    _lib = None
                    _status = f"unavailable: failed its numerical check (rel. error {err:.1e} > {CHECK_TOLERANCE:g})"
                else:
                    _status = f"compiled C kernels ({target}; {_built_with(target)})"
            except Exception as exc:  # any build or load failure means: use the reference path
                _lib, _status = None, f"unavailable: {type(exc).__name__}: {exc}"[:300]
        if _lib is None:
            print(f"dnahnet: note: the compiled CPU kernels are {_status}; using the PyTorch reference path",
                  file=sys.stderr)
        return _lib


def status() -> str:
    """Whether the compiled kernels are in use here, and where they live or why not (builds them if needed)."""
    load()
    return _status or "not loaded"


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dnahnet-cpu"), threads
    return _pool


PARALLEL_MIN_WORK = 1 << 16  # floats touched; below this (e.g. one decoding step) a thread hand-off costs more


def spans(jobs: int, threads: int | None, work: int) -> list[int]:
    """Bounds of one contiguous span of [0, jobs) per thread: one span when the work is small."""
    threads = max(1, min(torch.get_num_threads() if threads is None else threads, jobs))
    if work < PARALLEL_MIN_WORK:
        threads = 1
    return [jobs * i // threads for i in range(threads + 1)]


def run_spans(call, bounds: list[int]) -> None:
    """call(span index, begin, end) for each span: the first on the calling thread, the others on the pool
    (ctypes releases the GIL), so that no more threads run than spans."""
    count = len(bounds) - 1
    if count == 1:
        call(0, bounds[0], bounds[1])
        return
    rest = [_executor(count - 1).submit(call, i, bounds[i], bounds[i + 1]) for i in range(1, count)]
    call(0, bounds[0], bounds[1])
    for future in rest:
        future.result()


def parallel(call, jobs: int, threads: int | None, work: int) -> None:
    """call(begin, end) over [0, jobs) split into one contiguous span per thread."""
    run_spans(lambda _, begin, end: call(begin, end), spans(jobs, threads, work))


def library() -> ctypes.CDLL:
    """The loaded kernels (built on first use), or RuntimeError saying why they are unavailable."""
    if _lib is None and load() is None:
        raise RuntimeError(f"the compiled CPU kernels are {status()}")
    return _lib  # type: ignore[return-value]


def _scan(xbc: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, D: torch.Tensor, nheads: int, headdim: int,
          d_state: int, init: torch.Tensor | None, threads: int | None, every: int | None):
    """The forward scan shared by inference and training: (y, final state, checkpoints or None, and the fp32
    contiguous inputs it read, which training saves for the backward)."""
    lib = library()
    b, l, cd = xbc.shape
    inputs = [t.float().contiguous() for t in (xbc, dt, A, D)]
    y = torch.empty(b, l, nheads * headdim, dtype=torch.float32)
    state = (init.float().contiguous().clone() if init is not None
             else torch.zeros(b, nheads, headdim, d_state, dtype=torch.float32))
    ckpt = torch.empty(b, nheads, -(-l // every), d_state, headdim, dtype=torch.float32) if every else None
    ptrs = [t.data_ptr() for t in (*inputs, y, state)] + [ckpt.data_ptr() if every else None]
    parallel(lambda i, j: lib.ssd_scan(*ptrs, every or 1, l, cd, nheads, headdim, d_state, i, j), b * nheads,
              threads, b * l * nheads * headdim * d_state)
    return y, state, ckpt, inputs


def ssd_scan(xbc: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, D: torch.Tensor, nheads: int, headdim: int,
             d_state: int, init: torch.Tensor | None = None, threads: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """y (b, l, nheads*headdim) with the D skip added, and the final state (b, nheads, headdim, d_state).

    xbc (b, l, >= nheads*headdim + 2*d_state): the conv output [x | B | C]; dt (b, l, nheads) after softplus and
    the padding mask; A, D (nheads); init (b, nheads, headdim, d_state) or None. CPU tensors, no gradient.
    """
    y, state, _, _ = _scan(xbc, dt, A, D, nheads, headdim, d_state, init, threads, None)
    return y, state


CHECKPOINT_EVERY = 64  # training: positions between saved states; the backward recomputes the ones between


class _CompiledSSD(torch.autograd.Function):
    """ssd_scan from a zero state with a compiled backward (training on a CPU): the forward keeps the state at
    every CHECKPOINT_EVERY-th position, the backward recomputes each segment's states from it and runs the
    adjoint recurrence (csrc/mamba2_cpu.c, ssd_scan_backward)."""

    @staticmethod
    def forward(ctx, xbc, dt, A, D, nheads: int, headdim: int, d_state: int):
        y, _, ckpt, inputs = _scan(xbc, dt, A, D, nheads, headdim, d_state, None, None, CHECKPOINT_EVERY)
        ctx.save_for_backward(*inputs, ckpt)
        ctx.dims = (nheads, headdim, d_state)
        return y

    @staticmethod
    def backward(ctx, dy):
        lib = library()
        xbc, dt, A, D, ckpt = ctx.saved_tensors
        h, p, n = ctx.dims
        b, l, cd = xbc.shape
        dy = dy.float().contiguous()
        dxbc = torch.zeros(b, l, cd, dtype=torch.float32)
        dB, dC = torch.empty(b, h, l, n, dtype=torch.float32), torch.empty(b, h, l, n, dtype=torch.float32)
        ddt = torch.empty(b, l, h, dtype=torch.float32)
        dA, dD = torch.empty(b * h, dtype=torch.float32), torch.empty(b * h, dtype=torch.float32)
        first = [t.data_ptr() for t in (xbc, dt, A, D, dy, ckpt)]
        grads = [t.data_ptr() for t in (dxbc, dB, dC, ddt, dA, dD)]
        parallel(lambda i, j: lib.ssd_scan_backward(*first, CHECKPOINT_EVERY, *grads, l, cd, h, p, n, i, j),
                  b * h, None, b * l * h * p * n)
        dxbc[..., h * p: h * p + n] = dB.sum(1)
        dxbc[..., h * p + n: h * p + 2 * n] = dC.sum(1)
        return dxbc, ddt, dA.view(b, h).sum(0), dD.view(b, h).sum(0), None, None, None


def ssd_scan_trainable(xbc: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, D: torch.Tensor, nheads: int,
                       headdim: int, d_state: int) -> torch.Tensor:
    """ssd_scan's y from a zero initial state, differentiable in xbc, dt, A and D (training on a CPU)."""
    return _CompiledSSD.apply(xbc, dt, A, D, nheads, headdim, d_state)


def conv_silu(full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, threads: int | None = None
              ) -> torch.Tensor:
    """silu(causal depthwise conv) like layers.causal_depthwise_conv_silu: full (b, k-1+l, c) holds k-1 history
    rows then l new ones, weight (c, 1, k) with k >= 2, bias (c); returns (b, l, c) fp32."""
    lib = library()
    b, rows, cd = full.shape
    k = weight.shape[-1]
    l = rows - (k - 1)
    full = full.float().contiguous()
    taps = weight[:, 0, :].t().float().contiguous()  # (k, c)
    bias = bias.float().contiguous()
    out = torch.empty(b, l, cd, dtype=torch.float32)
    ptrs = [t.data_ptr() for t in (full, taps, bias, out)]
    parallel(lambda i, j: lib.conv_silu(*ptrs, l, cd, k, i, j), b * l, threads, b * l * cd * k)
    return out


CHANNEL_BLOCK = 16  # the conv backward splits channels over threads in blocks of this many (whole vectors)


class _CompiledConvSiLU(torch.autograd.Function):
    """conv_silu with a compiled backward that recomputes the pre-activation from `full` (nothing else saved)."""

    @staticmethod
    def forward(ctx, full, weight, bias):
        full32 = full.float().contiguous()
        ctx.save_for_backward(full32, weight, bias)
        ctx.full_dtype = full.dtype
        return conv_silu(full32, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        lib = library()
        full, weight, bias = ctx.saved_tensors
        b, rows, cd = full.shape
        k = weight.shape[-1]
        l = rows - (k - 1)
        taps = weight[:, 0, :].t().float().contiguous()
        bias32, grad = bias.float().contiguous(), grad.float().contiguous()
        dfull = torch.zeros(b, rows, cd, dtype=torch.float32)
        dtaps, dbias = torch.zeros(k, cd, dtype=torch.float32), torch.zeros(cd, dtype=torch.float32)
        ptrs = [t.data_ptr() for t in (full, taps, bias32, grad, dfull, dtaps, dbias)]
        blocks = -(-cd // CHANNEL_BLOCK)
        bounds = [min(cd, CHANNEL_BLOCK * i) for i in spans(blocks, None, b * l * cd * k)]
        run_spans(lambda _, c0, c1: lib.conv_silu_backward(*ptrs, b, l, cd, k, c0, c1), bounds)
        return dfull.to(ctx.full_dtype), dtaps.t()[:, None, :].to(weight.dtype), dbias.to(bias.dtype)


def conv_silu_trainable(full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv_silu, differentiable in full, weight and bias (training on a CPU)."""
    return _CompiledConvSiLU.apply(full, weight, bias)


def gated_rmsnorm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float, threads: int | None = None,
                  rstd: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm(y * silu(z)) * weight over the last dim, like layers.GatedRMSNorm: y (b, l, d); z (b, l, d) may be
    a slice of a wider tensor (rows evenly spaced); returns (b, l, d) fp32. rstd (b * l fp32), if given,
    receives each row's 1 / rms."""
    lib = library()
    b, l, d = y.shape
    y = y.float().contiguous()
    z = _gate_rows(z, l)
    weight = weight.float().contiguous()
    out = torch.empty(b, l, d, dtype=torch.float32)
    args = (y.data_ptr(), z.data_ptr(), z.stride(1), weight.data_ptr(), eps, out.data_ptr(),
            rstd.data_ptr() if rstd is not None else None, d)
    parallel(lambda i, j: lib.gated_rmsnorm(*args, i, j), b * l, threads, b * l * d)
    return out


def add_rmsnorm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                threads: int | None = None, rstd: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden + residual, RMSNorm of it * weight), both fp32 (b, l, d), as layers.Block's pre-norm step computes
    them: hidden fp32 or bf16, residual fp32 or None (the first block: hidden alone). No gradient. rstd (b * l
    fp32), if given, receives each row's 1 / rms."""
    lib = library()
    b, l, d = hidden.shape
    bf16 = hidden.dtype == torch.bfloat16
    hidden = hidden.contiguous() if bf16 else hidden.float().contiguous()
    residual = residual.float().contiguous() if residual is not None else None
    weight = weight.float().contiguous()
    total, out = torch.empty(b, l, d, dtype=torch.float32), torch.empty(b, l, d, dtype=torch.float32)
    args = (hidden.data_ptr(), int(bf16), residual.data_ptr() if residual is not None else None, weight.data_ptr(),
            eps, total.data_ptr(), out.data_ptr(), rstd.data_ptr() if rstd is not None else None, d)
    parallel(lambda i, j: lib.add_rmsnorm(*args, i, j), b * l, threads, b * l * d)
    return total, out


class _CompiledAddRMSNorm(torch.autograd.Function):
    """add_rmsnorm with a compiled backward (training on a CPU); saves the sum and one 1/rms per row."""

    @staticmethod
    def forward(ctx, hidden, residual, weight, eps: float):
        b, l, _ = hidden.shape
        rstd = torch.empty(b * l, dtype=torch.float32)
        total, out = add_rmsnorm(hidden, residual, weight, eps, rstd=rstd)
        ctx.save_for_backward(total, weight, rstd)
        ctx.hidden_dtype = hidden.dtype
        ctx.has_residual = residual is not None
        return total, out

    @staticmethod
    def backward(ctx, dtotal, dout):
        lib = library()
        total, weight, rstd = ctx.saved_tensors
        b, l, d = total.shape
        if dout is None:  # only the sum was used downstream
            dout = torch.zeros(b, l, d, dtype=torch.float32)
        dout, w = dout.float().contiguous(), weight.float().contiguous()
        dsum = dtotal.float().contiguous() if dtotal is not None else None
        grad = torch.empty(b, l, d, dtype=torch.float32)
        bounds = spans(b * l, None, b * l * d)
        dw_parts = torch.zeros(len(bounds) - 1, d, dtype=torch.float32)
        ptrs = [total.data_ptr(), w.data_ptr(), rstd.data_ptr(), dout.data_ptr(),
                dsum.data_ptr() if dsum is not None else None, grad.data_ptr()]
        run_spans(lambda span, begin, end: lib.add_rmsnorm_backward(*ptrs, dw_parts[span].data_ptr(), d, begin, end),
                  bounds)
        return (grad.to(ctx.hidden_dtype), grad if ctx.has_residual else None, dw_parts.sum(0).to(weight.dtype),
                None)


def add_rmsnorm_trainable(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """add_rmsnorm, differentiable in hidden, residual and weight (training on a CPU)."""
    return _CompiledAddRMSNorm.apply(hidden, residual, weight, eps)


def _gate_rows(z: torch.Tensor, l: int) -> torch.Tensor:
    """z as the kernels read it: fp32, unit stride within a row, rows evenly spaced (else a contiguous copy)."""
    if z.dtype != torch.float32 or z.stride(2) != 1 or z.stride(0) != l * z.stride(1):
        return z.float().contiguous()
    return z


class _CompiledGatedRMSNorm(torch.autograd.Function):
    """gated_rmsnorm with a compiled backward; saves y, z and one 1/rms per row."""

    @staticmethod
    def forward(ctx, y, z, weight, eps: float):
        b, l, d = y.shape
        y32, z32 = y.float().contiguous(), _gate_rows(z, l)
        rstd = torch.empty(b * l, dtype=torch.float32)
        out = gated_rmsnorm(y32, z32, weight, eps, rstd=rstd)
        ctx.save_for_backward(y32, z32, weight, rstd)
        ctx.dtypes = (y.dtype, z.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        lib = library()
        y, z, weight, rstd = ctx.saved_tensors
        b, l, d = y.shape
        dout, w = dout.float().contiguous(), weight.float().contiguous()
        dy, dz = torch.empty(b, l, d, dtype=torch.float32), torch.empty(b, l, d, dtype=torch.float32)
        bounds = spans(b * l, None, b * l * d)
        dw_parts = torch.zeros(len(bounds) - 1, d, dtype=torch.float32)
        ptrs = [t.data_ptr() for t in (w, rstd, dout, dy, dz)]

        def call(span: int, begin: int, end: int) -> None:
            lib.gated_rmsnorm_backward(y.data_ptr(), z.data_ptr(), z.stride(1), *ptrs, dw_parts[span].data_ptr(),
                                       d, begin, end)

        run_spans(call, bounds)
        return dy.to(ctx.dtypes[0]), dz.to(ctx.dtypes[1]), dw_parts.sum(0).to(weight.dtype), None


def gated_rmsnorm_trainable(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """gated_rmsnorm, differentiable in y, z and weight (training on a CPU)."""
    return _CompiledGatedRMSNorm.apply(y, z, weight, eps)
