"""Optional accelerated kernels, auto-detected and switchable process-wide (`--kernels auto|torch|fast`).

The plain-PyTorch code in ssd.py / layers.py is the reference and runs everywhere. On CPU, inference (no
gradient) takes compiled C kernels for the Mamba2 mixer (conv + SiLU, the SSD as a recurrence over time,
gated RMSNorm: `cpu_mixer.py`; the hook asks `cpu_mixer(tensor)`) and a compiled attention kernel
(`cpu_attention.py`; `cpu_attention(q)`) and fp32 linear layers through oneDNN's GEMM (`cpu_linear.py`;
`cpu_fp32_linear(x, weight)`), and training the mixer's three passes and attention with compiled backwards
(`cpu_training_mixer(tensor)`), whenever they build and pass their numerical check. On CUDA
tensors, and only there, the model's dispatch hooks ask `fast(component, tensor)` and route to the functions
below:

* "ssd": mamba_ssm's Triton `mamba_chunk_scan_combined` (Mamba2 scan; chunk 256). mamba-ssm installs
  without compiling CUDA (MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE, architecture.md §6.3); its
  package __init__ imports the Mamba-1 CUDA extension unguarded, so a stub module is registered first.
* "ema": the dechunk EMA through the same kernel (one state dimension, decay 1 - P).
* "conv": causal-conv1d's `causal_conv1d_fn` (depthwise causal conv + SiLU) for full-sequence forwards.
* "attention": sliding-window attention with flash-attn (fp16/bf16) or FlexAttention (compiled, a band
  block mask). Global causal attention already uses SDPA's flash backend on CUDA and is left alone.

Modes: "torch" never uses them; "auto" (default; env DNAHNET_KERNELS) uses whatever is importable on
CUDA; "fast" is "auto" that insists: it raises if CUDA or the mamba_ssm SSD kernel is missing. The Triton
kernels compute dot products in TF32 for fp32 inputs, so they match the reference to about 1e-3 relative
(fp32) and 1e-2 (bf16), not bit-for-bit (tests/test_kernels.py, GPU only).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import types
import warnings
from typing import Callable

import torch
import torch.nn.functional as F

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model import KERNEL_MODES

MODES = KERNEL_MODES
SSD_CHUNK = 256  # tile of the Triton SSD kernel (math-neutral)
FLEX_BLOCK = 128  # FlexAttention block size; lengths are padded to multiples of FLEX_BUCKET
FLEX_BUCKET = 1024  # coarse length buckets keep the number of compiled shapes small

_mode = os.environ.get("DNAHNET_KERNELS", "auto")
if _mode not in MODES:
    _mode = "auto"


def _try(fn: Callable[[], object]) -> tuple[object | None, str]:
    try:
        return fn(), "ok"
    except Exception as exc:  # any import-time failure means "not available"
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _import_mamba_ssd():
    # mamba_ssm/__init__ imports selective_scan_cuda (Mamba-1 CUDA extension) without a guard in releases
    # up to 2.3.2; a SKIP_CUDA_BUILD install lacks it, and only Mamba-1 needs it.
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    return mamba_chunk_scan_combined


def _import_causal_conv1d():
    from causal_conv1d import causal_conv1d_fn

    if causal_conv1d_fn is None:
        raise ImportError("causal_conv1d_fn is None")
    return causal_conv1d_fn


def _import_flash_attn():
    from flash_attn import flash_attn_func

    return flash_attn_func


def _import_flex():
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    return flex_attention, BlockMask


@functools.lru_cache(maxsize=1)
def detect() -> dict[str, dict]:
    """What is importable here (cached): {backend: {"available": bool, "detail": version or error}}."""
    cuda = torch.cuda.is_available()
    out: dict[str, dict] = {"cuda": {"available": cuda, "detail": torch.cuda.get_device_name() if cuda else "no CUDA"}}
    for name, loader in (("mamba_ssm", _import_mamba_ssd), ("causal_conv1d", _import_causal_conv1d),
                         ("flash_attn", _import_flash_attn), ("flex_attention", _import_flex)):
        fn, detail = _try(loader)
        out[name] = {"available": fn is not None, "detail": detail}
    return out


def _backend(component: str) -> str | None:
    """The fast backend a component would use on CUDA, or None (reference)."""
    d = detect()
    if not d["cuda"]["available"]:
        return None
    if component in ("ssd", "ema"):
        return "mamba_ssm" if d["mamba_ssm"]["available"] else None
    if component == "conv":
        return "causal_conv1d" if d["causal_conv1d"]["available"] else None
    if component == "attention":
        if d["flash_attn"]["available"]:
            return "flash_attn"
        return "flex_attention" if d["flex_attention"]["available"] else None
    raise ValueError(f"unknown kernel component {component!r}")


def set_kernels(mode: str) -> None:
    """Switch the whole process between the reference ("torch") and accelerated kernels."""
    global _mode
    if mode not in MODES:
        raise DnahnetError(f"invalid --kernels {mode!r} (choose {', '.join(MODES)})")
    if mode == "fast" and _backend("ssd") is None:
        d = detect()
        why = d["cuda"]["detail"] if not d["cuda"]["available"] else d["mamba_ssm"]["detail"]
        raise DnahnetError(f"--kernels fast needs CUDA and mamba-ssm's Triton SSD kernel ({why}); "
                           "use --kernels auto or torch")
    _mode = mode


def kernel_mode() -> str:
    """The --kernels mode in force ("auto", "torch" or "fast")."""
    return _mode


def active_kernels() -> dict[str, str]:
    """The mode and, per component, the implementation CUDA tensors would take (CPU is always "torch")."""
    out = {"mode": _mode}
    for component in ("ssd", "ema", "conv", "attention"):
        backend = _backend(component) if _mode != "torch" else None
        out[component] = backend or "torch"
    return out


def fast(component: str, tensor: torch.Tensor) -> bool:
    """True when `component` should take its accelerated kernel for this tensor (the hooks' only test)."""
    return _mode != "torch" and tensor.is_cuda and _backend(component) is not None


def _cpu_kernels_for(tensor: torch.Tensor) -> bool:
    """An fp32 CPU tensor, kernels not set to "torch", and the compiled CPU kernels built and checked."""
    if _mode == "torch" or tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        return False
    from dnahnet_cli.model import cpu_mixer

    return cpu_mixer.load() is not None


def cpu_mixer(tensor: torch.Tensor) -> bool:
    """True when a Mamba2 mixer over this tensor should take the compiled CPU kernels (cpu_mixer.py): inference
    (no gradient being taken) on an fp32 CPU tensor, with the kernels available."""
    return not torch.is_grad_enabled() and _cpu_kernels_for(tensor)


def cpu_training_mixer(tensor: torch.Tensor) -> bool:
    """True when a Mamba2 mixer over this tensor, with a gradient being taken, should take the compiled CPU passes
    and their compiled backwards (cpu_mixer.py): an fp32 CPU tensor, with the kernels available."""
    return torch.is_grad_enabled() and _cpu_kernels_for(tensor)


def hooked(module: torch.nn.Module) -> bool:
    """True when forward hooks (the module's own or global ones) would observe a call of this module: a fused path
    that skips the module's forward must then step aside, so that they still run."""
    from torch.nn.modules import module as torch_module

    return bool(module._forward_hooks or module._forward_pre_hooks or torch_module._global_forward_hooks
                or torch_module._global_forward_pre_hooks)


def cpu_add_norm(hidden: torch.Tensor, residual: torch.Tensor | None) -> bool:
    """True when a block's residual add + RMSNorm over these tensors should take the compiled pass
    (cpu_mixer.add_rmsnorm; with its compiled backward when a gradient is taken): a 3-D fp32 or bf16 CPU hidden,
    an fp32 residual or none, with the kernels available."""
    if (_mode == "torch" or hidden.device.type != "cpu" or hidden.dim() != 3
            or hidden.dtype not in (torch.float32, torch.bfloat16)
            or (residual is not None and (residual.dtype != torch.float32 or residual.shape != hidden.shape))):
        return False
    from dnahnet_cli.model import cpu_mixer

    return cpu_mixer.load() is not None


def cpu_attention(q: torch.Tensor) -> bool:
    """True when attention with these queries (B, H, L, D) should take the compiled CPU kernel (cpu_attention.py;
    with its compiled backward when a gradient is taken): an fp32 or bf16 CPU tensor, heads at most
    cpu_attention.MAX_WIDTH wide, with the kernels available."""
    if _mode == "torch" or q.device.type != "cpu" or q.dtype not in (torch.float32, torch.bfloat16):
        return False
    from dnahnet_cli.model import cpu_attention, cpu_mixer

    return q.shape[-1] <= cpu_attention.MAX_WIDTH and cpu_mixer.load() is not None


def amx_causal_attention(q: torch.Tensor) -> bool:
    """True when a full causal attention over these queries should take torch's fused SDPA rather than the
    compiled kernel: bf16 CPU queries, no gradient, on a CPU with AMX-BF16, where torch's bf16 attention
    multiplies on the tiles (the kernel computes in fp32 on vectors): 7.6 against 18.2 ms for a layer of
    `small`'s main network, 8.0 against 9.3 for the shipped model's (docs/benchmarks.md). Elsewhere, and for
    windows and caches, the kernel wins."""
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or torch.is_grad_enabled():
        return False
    from dnahnet_cli.model.precision import cpu_bf16_features

    return "amx_bf16" in cpu_bf16_features()


def cpu_fp32_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when a linear layer over x should take oneDNN's fp32 GEMM (cpu_linear.py): inference (no gradient),
    fp32 CPU input and weight outside a CPU autocast (where F.linear would run bf16), at least
    cpu_linear.MIN_ROWS rows, and oneDNN's linear available and checked."""
    if (_mode == "torch" or torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32
            or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):
        return False
    from dnahnet_cli.model import cpu_linear

    return x.numel() >= cpu_linear.MIN_ROWS * x.shape[-1] and cpu_linear.status() == "ok"


def cpu_padded_gemm(tensor: torch.Tensor) -> bool:
    """True when a linear layer with an odd output width over this tensor should pad its GEMM to a multiple of 16
    (layers.Linear): a CPU tensor and kernels not set to "torch" (the reference path is plain nn.Linear)."""
    return _mode != "torch" and tensor.device.type == "cpu"


def cpu_kernels(bf16: bool = False) -> str:
    """What CPU inference runs beside plain torch: "mamba2+attention=compiled-c" (the Mamba2 mixers and attention,
    cpu_mixer.py; attention over heads wider than 64 still takes torch's), "linear=onednn" (fp32 linear layers,
    cpu_linear.py) and, for a bf16 run (`bf16`) on an AMX CPU, "fp32-islands=amx-split-bf16" (the fp32 encoders
    and stage-0 decoder through split-bf16 products, cpu_linear.py), comma-separated, or "torch" for none.
    Builds and checks them on first call."""
    if _mode == "torch":
        return "torch"
    from dnahnet_cli.model import cpu_linear, cpu_mixer

    used = ["mamba2+attention=compiled-c"] if cpu_mixer.load() is not None else []
    if cpu_linear.status() == "ok":
        used += ["linear=onednn"] + (["fp32-islands=amx-split-bf16"] if bf16 and cpu_linear.split_status() == "ok"
                                     else [])
    return ", ".join(used) or "torch"


# -- SSD and EMA -----------------------------------------------------------------------------------

def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
        initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba2 scan via mamba_chunk_scan_combined. x (b,l,h,p) NOT scaled by dt; dt (b,l,h) after softplus
    (0 at padding); A (h,); B, C (b,l,g,n). Returns y (b,l,h,p) fp32 and the final state (b,h,p,n) fp32,
    like ssd_chunked(x * dt, dt * A, ...)."""
    kernel = _import_mamba_ssd()
    init = initial_state.float().contiguous() if initial_state is not None else None
    y, final = kernel(x.contiguous(), dt.float().contiguous(), A.float().contiguous(), B.contiguous(),
                      C.contiguous(), chunk_size=SSD_CHUNK, initial_states=init, return_final_states=True)
    return y.float(), final.float()


def ema(values: torch.Tensor, weights: torch.Tensor, initial: torch.Tensor | None = None,
        ssd_fn: Callable = ssd) -> tuple[torch.Tensor, torch.Tensor]:
    """e_j = P_j v_j + (1 - P_j) e_{j-1} through the SSD kernel: dt = -log(1 - P), A = -1 gives the decay
    1 - P; the input term dt * x * B must be P * v, so x = v and B = P / dt (-> 1 as P -> 0; 0 where P = 0,
    i.e. invalid slots carry the last value). Channels are split into heads of 64 (or 32). `ssd_fn` (same
    signature as `ssd`) lets the CPU tests check this reformulation with the reference scan."""
    b, m, d = values.shape
    p = 64 if d % 64 == 0 else 32 if d % 32 == 0 else d
    h = d // p
    P = weights.float()
    dt1 = -torch.log1p(-P)  # (b, m)
    Bv = torch.where(dt1 > 0, P / dt1.clamp(min=1e-30), torch.zeros_like(P))
    x = values.float().reshape(b, m, h, p)
    dt = dt1[..., None].expand(b, m, h)
    ones = torch.ones(b, m, 1, 1, device=values.device, dtype=torch.float32)
    A = -torch.ones(h, device=values.device, dtype=torch.float32)
    init = initial.float().reshape(b, h, p, 1) if initial is not None else None
    y, final = ssd_fn(x, dt, A, Bv[..., None, None], ones, init)
    return y.reshape(b, m, d), final.reshape(b, d)


# -- causal conv -----------------------------------------------------------------------------------

def conv_silu(xbc: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(causal depthwise conv) of xbc (b,l,c) from a zero history; weight (c,1,k). Returns (b,l,c)."""
    fn = _import_causal_conv1d()
    x = xbc.transpose(1, 2).contiguous()
    w = weight.squeeze(1).to(x.dtype).contiguous()
    out = fn(x, w, bias.to(x.dtype) if bias is not None else None, activation="silu")
    return out.transpose(1, 2)


# -- sliding-window attention ----------------------------------------------------------------------

def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor | None:
    """Causal attention where query i sees keys i-W .. i. q, k, v (B, H, L, Dh) after RoPE; returns
    (B, H, L, Dh), or None when no fast backend takes this input (the caller then runs the reference)."""
    global _flex_failed
    dh = q.shape[-1]
    if _backend("attention") == "flash_attn" and q.dtype in (torch.float16, torch.bfloat16) and dh <= 256:
        out = _import_flash_attn()(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True,
                                   window_size=(window, 0))
        return out.transpose(1, 2)
    if _flex_failed or dh < 16 or dh & (dh - 1):  # FlexAttention wants power-of-two head dims >= 16
        return None
    try:
        return flex_window_attention(q, k, v, window, compiled=q.is_cuda)
    except Exception as exc:  # a compile failure must not take the model down: reference from now on
        _flex_failed = True
        warnings.warn(f"FlexAttention failed ({type(exc).__name__}: {exc}); using the reference attention")
        return None


_flex_failed = False


@functools.lru_cache(maxsize=64)
def band_block_mask(length: int, window: int, device: str, block: int = FLEX_BLOCK):
    """FlexAttention BlockMask of the causal band (j <= i, i - j <= W) for `length` (a multiple of `block`),
    built from block indices directly: no dense L x L evaluation, so it scales to 2^20 positions."""
    _, BlockMask = _import_flex()
    nb = length // block
    qb = torch.arange(nb, device=device)[:, None]
    kb = torch.arange(nb, device=device)[None, :]
    # a key block is touched when some (i, j) pair in it is allowed; full when every pair is allowed
    touched = (kb <= qb) & (qb * block - (kb * block + block - 1) <= window)
    full = (kb < qb) & ((qb * block + block - 1) - kb * block <= window)
    partial = touched & ~full

    def to_indices(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = sel.sum(-1).to(torch.int32)
        order = torch.argsort((~sel).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return counts[None, None], order[None, None]

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)

    kv_num, kv_idx = to_indices(partial)
    full_num, full_idx = to_indices(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    flex_attention, _ = _import_flex()
    import torch._dynamo

    # one compiled graph per length bucket; the default limit (8) would drop long sweeps to eager (dense)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(flex_attention, dynamic=False)


def flex_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                          compiled: bool = True) -> torch.Tensor:
    """Windowed attention with FlexAttention. Lengths are padded at the end to a bucket (causality keeps
    the padding invisible to real queries); compiled=False runs eager (CPU tests)."""
    length = q.shape[2]
    bucket = FLEX_BUCKET if compiled else FLEX_BLOCK
    padded = math.ceil(length / bucket) * bucket
    if padded != length:
        q, k, v = (F.pad(t, (0, 0, 0, padded - length)) for t in (q, k, v))
    mask = band_block_mask(padded, window, str(q.device))
    if compiled:
        out = _compiled_flex()(q, k, v, block_mask=mask)
    else:  # eager FlexAttention (CPU tests) is meant here: its "called without torch.compile" warning is not news
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            out = _import_flex()[0](q, k, v, block_mask=mask)
    return out[:, :, :length]
