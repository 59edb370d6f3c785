"""fp32 linear layers for CPU inference through oneDNN's GEMM, which PyTorch's CPU builds carry.

Why: torch's fp32 `F.linear` on a CPU calls MKL, which on the AMD EPYC this project measures on (AVX-512, family
26) ran at ~100 GFLOP/s a core (52 at an odd width), where oneDNN's fp32 GEMM, reached through
`torch.ops.mkldnn._linear_pointwise`, ran the same products at 200-240, 2.1-2.5x faster from 512 rows up (the
stage-0 projections that the precision policy keeps fp32 when scoring: 8,193 x 80 -> 389 in 9.8 against 2.5 ms,
8,193 x 160 -> 80 in 2.0 against 0.9 ms; bench/linear_onednn.py, docs/benchmarks.md). Below ~64 rows oneDNN's
fixed cost (~14 us a call) loses, so `kernels.cpu_fp32_linear` only sends it calls of at least MIN_ROWS rows. It has no autograd formula, so training keeps `F.linear`.
Same weights and bias, same result up to the GEMM's summation order; checked against `F.linear` on first use
(`status()`), and unused (the reference `F.linear` runs) where the op is missing or disagrees.

On a CPU with AMX-BF16, the layers that the precision policy keeps fp32 by measurement inside a bf16 run (the
scoring encoders and the nucleotide-resolution decoder: `precision.fp32_island`) take instead three bf16 tile
products with fp32 accumulation (`csrc/linear_amx.c`: x w^T = x_hi w_hi + x_lo w_hi + x_hi w_lo, each value split
into two bf16 parts): relative error ~4e-6 against float64 (fp32's GEMM ~2e-7, one bf16 product ~3e-3), at
1.4-2.3x oneDNN's fp32 speed on the stage-0 and stage-1 shapes (docs/benchmarks.md). Each such layer keeps its
packed weight and a copy of the weight to notice changes (about twice its fp32 size in memory). Checked against
float64 on first use (`split_status()`); `--dtype float32` never takes it, so fp32 runs and `dnahnet check` are
unchanged.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.model import kernels, precision

MIN_ROWS = 256  # rows (tokens) below which F.linear runs: oneDNN lost below ~64 rows, won 1.9x at 256
CHECK_TOLERANCE = 1e-5  # relative Frobenius error against F.linear on the self-check problem (seen: ~1e-7)

SPLIT_SOURCE = Path(__file__).with_name("csrc") / "linear_amx.c"
SPLIT_TOLERANCE = 2e-5  # relative Frobenius error against float64 on the self-check problems (seen: ~4.4e-6)
SPLIT_ROWS = 32  # rows per block of the AMX kernel (two 16-row tiles); threads take whole blocks

_lock = threading.Lock()
_status: str | None = None
_split_lib: ctypes.CDLL | None = None
_split_status: str | None = None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for fp32 CPU tensors, through oneDNN (no gradient)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def status() -> str:
    """"ok" when oneDNN's linear is in use for fp32 CPU inference, else why not (checked once per process)."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                _status = _check()
    return _status


def _check() -> str:
    if not torch.backends.mkldnn.is_available():
        return "unavailable: this torch has no oneDNN (mkldnn)"
    try:
        with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(2, 300, 80, generator=gen)
            weight, bias = torch.randn(389, 80, generator=gen), torch.randn(389, generator=gen)
            errors = []
            for w, b, inputs in ((weight, bias, x), (weight, None, x[:, ::2]), (weight.t().contiguous().t(), bias, x)):
                want = F.linear(inputs, w, b)
                errors.append(float((linear(inputs, w, b) - want).norm() / want.norm()))
    except Exception as exc:  # a build without the op, or one that refuses these inputs: the reference runs
        return f"unavailable: {type(exc).__name__}: {exc}"[:200]
    err = max(errors)
    return "ok" if err <= CHECK_TOLERANCE else f"unavailable: failed its numerical check (rel. error {err:.1e})"


def split_status() -> str:
    """"ok" when the split-bf16 AMX products are in use for the fp32 islands of bf16 CPU inference, else why not
    (built and checked once per process)."""
    global _split_status
    if _split_status is None:
        with _lock:
            if _split_status is None:
                _split_status = _load_split()
    return _split_status


def _load_split() -> str:
    global _split_lib
    if "amx_bf16" not in precision.cpu_bf16_features():
        return "unavailable: the CPU has no AMX-BF16"
    from dnahnet_cli.model import cpu_mixer

    try:
        lib = ctypes.CDLL(str(cpu_mixer.built_library("linear_amx", (SPLIT_SOURCE,))))
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        for name, result, args in (("amx_enable", ctypes.c_int, []), ("amx_packed_size", i64, [i64, i64]),
                                   ("amx_pack_weight", None, [ptr, i64, i64, ptr]),
                                   ("amx_linear", ctypes.c_int,
                                    [ptr, i64, i64, ptr, i64, ptr, ptr, i64, i64, i64, i64, ptr, i64, i64, i64])):
            getattr(lib, name).restype = result
            getattr(lib, name).argtypes = args
        code = lib.amx_enable()
        if code != 0:
            return ("unavailable: " + ("the CPU reports no AMX-BF16 tiles" if code == 1
                                       else "the operating system refused the AMX tile state"))
        _split_lib = lib
        with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
            gen = torch.Generator().manual_seed(0)
            errors = []
            for rows, k, n, with_bias in ((70, 40, 37, True), (300, 80, 389, False), (64, 96, 32, True)):
                x, weight = torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen)
                bias = torch.randn(n, generator=gen) if with_bias else None
                want = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
                got = split_linear(x, weight, bias, pack(weight))
                errors.append(float((got.double() - want).norm() / want.norm()))
            # two batch rows of 45 into two destinations: columns 0-39 after 3 spare rows each, the rest apart
            x, weight = torch.randn(2, 45, 64, generator=gen), torch.randn(50, 64, generator=gen)
            want = F.linear(x.double(), weight.double())
            first, rest = split_linear_into(x, pack(weight), 50, 40, 3)
            errors += [float((first[:, 3:].double() - want[..., :40]).norm() / want[..., :40].norm()),
                       float((rest.double() - want[..., 40:]).norm() / want[..., 40:].norm())]
    except Exception as exc:  # a compiler or assembler without AMX, or any other failure: oneDNN's fp32 runs
        _split_lib = None
        return f"unavailable: {type(exc).__name__}: {exc}"[:300]
    if not max(errors) <= SPLIT_TOLERANCE:
        _split_lib = None
        return f"unavailable: failed its numerical check (rel. error {max(errors):.1e})"
    return "ok"


def pack(weight: torch.Tensor) -> torch.Tensor:
    """An (n, k) fp32 weight as the AMX kernel reads it: bf16 hi and lo parts in tile layout (int16 storage)."""
    n, k = weight.shape
    weight = weight.detach().float().contiguous()
    packed = torch.empty(_split_lib.amx_packed_size(n, k), dtype=torch.int16)
    _split_lib.amx_pack_weight(weight.data_ptr(), n, k, packed.data_ptr())
    return packed


def split_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 packed: torch.Tensor) -> torch.Tensor:
    """F.linear(x, weight, bias) for fp32 CPU tensors from three bf16 AMX products (no gradient); `packed` is
    pack(weight). Row blocks are split over --threads."""
    n, k = weight.shape
    flat = x.reshape(-1, k).float().contiguous()
    y = torch.empty(flat.shape[0], n, dtype=torch.float32)
    bias = None if bias is None else bias.detach().float().contiguous()
    _run(flat, packed, n, bias, y, n, 0, 0, n, None, 0)
    return y.reshape(*x.shape[:-1], n)


def split_linear_into(x: torch.Tensor, packed: torch.Tensor, n: int, n1: int, gap: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """x (b, l, k) times a packed (n, k) weight, without bias, as two tensors: output columns [0, n1) in rows
    [gap, gap + l) of a (b, gap + l, n1) tensor whose first `gap` rows of each batch row are left for the caller
    (Mamba2's conv input, its history rows first: no copy into it afterwards), and columns [n1, n) as (b, l, n - n1)."""
    b, l, k = x.shape
    flat = x.reshape(-1, k).float().contiguous()
    first = torch.empty(b, gap + l, n1, dtype=torch.float32)
    rest = torch.empty(b, l, n - n1, dtype=torch.float32)
    _run(flat, packed, n, None, first, n1, l, gap, n1, rest, n - n1)
    return first, rest


def _run(flat: torch.Tensor, packed: torch.Tensor, n: int, bias: torch.Tensor | None, y: torch.Tensor, ldy: int,
         batch_rows: int, gap: int, n1: int, y2: torch.Tensor | None, ld2: int) -> None:
    """The AMX kernel over all rows of `flat`, row blocks split over --threads (see linear_amx.c for the layout)."""
    from dnahnet_cli.model import cpu_mixer

    rows, k = flat.shape
    args = (flat.data_ptr(), rows, k, packed.data_ptr(), n, None if bias is None else bias.data_ptr(), y.data_ptr(),
            ldy, batch_rows, gap, n1, None if y2 is None else y2.data_ptr(), ld2)
    failed = []

    def run(begin: int, end: int) -> None:
        if _split_lib.amx_linear(*args, begin * SPLIT_ROWS, min(end * SPLIT_ROWS, rows)) != 0:
            failed.append(True)

    cpu_mixer.parallel(run, -(-rows // SPLIT_ROWS), None, rows * n)
    if failed:
        raise MemoryError("the AMX linear kernel could not allocate its buffers")


class Linear(nn.Linear):
    """nn.Linear with CPU fast paths; same parameters, state-dict keys and hooks, the same values up to the GEMM's
    summation order (up to ~4e-6 relative in the split-bf16 case). fp32 inference over enough rows takes oneDNN's
    GEMM (above: 2.1-2.5x MKL's on an AMD EPYC), or inside the fp32 islands of a bf16 run on an AMX CPU the
    split-bf16 products (weights packed once, and again whenever they change). Otherwise an odd output width such
    as Mamba2's in_proj (2 d_inner + 2 d_state + nheads = 389 for `cpu`) is zero-padded to a multiple of 16 for the
    GEMM, and a view of the real outputs returned: MKL's fp32 GEMM ran odd widths at a third to a half of its speed
    at 400 on an AVX2 CPU (docs/benchmarks.md), for under 4 % more arithmetic; the padding's gradient is dropped.
    `--kernels torch` (the reference path) turns all of them off."""

    MULTIPLE = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if kernels.cpu_fp32_linear(x, self.weight):
            if precision.in_fp32_island() and split_status() == "ok":
                return split_linear(x, self.weight, self.bias, self._packed())
            return linear(x, self.weight, self.bias)
        pad = -self.out_features % self.MULTIPLE
        if pad == 0 or not kernels.cpu_padded_gemm(x):
            return super().forward(x)
        bias = None if self.bias is None else F.pad(self.bias, (0, pad))
        return F.linear(x, F.pad(self.weight, (0, 0, 0, pad)), bias)[..., : self.out_features]

    def split_into(self, x: torch.Tensor, order: tuple[tuple[int, int], ...], n1: int, gap: int
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This layer's output for x (b, l, in), its output features taken in `order` (ranges of rows of the
        weight), as split_linear_into's two tensors (the first n1 of them after `gap` spare rows per batch row);
        None where the split-bf16 products do not apply, or where forward hooks are registered (they would not
        run: the caller then calls the layer, and they see its output as usual). No bias."""
        if (kernels.hooked(self) or self.bias is not None or x.dim() != 3 or not kernels.cpu_fp32_linear(x, self.weight)
                or not precision.in_fp32_island() or split_status() != "ok"):
            return None
        return split_linear_into(x, self._packed(order), self.out_features, n1, gap)

    def _packed(self, order: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
        """pack(self.weight), its rows taken in `order` if given, kept while the weight stays bitwise the same
        (compared on every call, ~1 % of a `small` forward in an ad-hoc profile: an in-place change through .data
        leaves no version count)."""
        cache = self.__dict__.setdefault("_split_packed", {})
        cached = cache.get(order)
        if cached is None or not torch.equal(cached[0], self.weight):
            rows = self.weight if order is None else torch.cat([self.weight[a:b] for a, b in order])
            cached = cache[order] = (self.weight.detach().clone(), pack(rows))
        return cached[1]
