"""Precision policy: which parts of the model may run in bf16 under autocast, and when bf16 is worth it.

Under `torch.autocast(..., dtype=bfloat16)` the GEMM-heavy parts run in bf16: the Mamba2 in/out
projections (its depthwise conv reads an fp32 copy of the projection and runs in fp32), the attention projections and the attention itself, the SwiGLU MLPs. These stay in
fp32 whatever autocast says, because their error compounds or decides something discrete:
  * the SSD and EMA scans (cumulative decays; `ssd.py`),
  * the router (cosine of projected neighbours, thresholded at 0.5: a bf16 cosine moves boundaries),
  * the residual stream (every `Block` adds in fp32) and `residual_proj` (the official H-Net keeps it fp32),
  * the RMSNorms and the next-nucleotide head (4 logits per position: cheap, and they are the scores),
  * when scoring (eval mode), every encoder (it feeds its stage's router) and the nucleotide-resolution
    decoder (it feeds the head): with them in bf16, 6 of 2,125 boundaries moved away from the threshold and
    SNV scores moved by up to 0.1 nats (Spearman 0.9988 on 500 E. coli SNVs); in fp32, no boundary moves and
    scores agree to 1e-3 nats (tests/test_bf16_accuracy.py). So scoring runs bf16 in the chunked stages'
    decoders and the main network, where the GEMMs are (the Transformer main network and its MLPs).
    Training (train mode) runs encoders and decoders under autocast too, as the official H-Net trains: their
    GEMMs are most of a training step at nucleotide resolution (docs/model.md has the gate and the speed-up).
`full_precision(t)` is the context that switches autocast off for one of these islands; `fp32_island(t)` does
the same for the scoring encoders and the stage-0 decoder, and lets their fp32 linear layers take split-bf16
products on an AMX CPU when the run itself is bf16 (cpu_linear.py: ~4e-6 relative error, not fp32's ~2e-7).

`resolve_device(name)` turns a --device value into a device this machine has (one-line errors otherwise), and
`choose_dtype("auto", device)` picks bf16 where the hardware multiplies bf16 natively (an NVIDIA GPU of compute
capability 8.0 or later, or a CPU with AMX-BF16 or AVX512-BF16, detected, not guessed) and fp32 elsewhere, and
says why. Not `torch.cuda.is_bf16_supported()`: by default it also counts the emulated bf16 of a T4 or V100, slower
than their fp32.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator

import torch

from dnahnet_cli.errors import DnahnetError

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@contextlib.contextmanager
def full_precision(t: torch.Tensor) -> Iterator[None]:
    """Autocast off for the device of `t` (a no-op outside autocast)."""
    device_type = t.device.type if t.device.type in ("cpu", "cuda", "xpu", "mps") else "cpu"
    with torch.autocast(device_type, enabled=False):
        yield


_island = contextvars.ContextVar("dnahnet_fp32_island", default=False)


@contextlib.contextmanager
def fp32_island(t: torch.Tensor) -> Iterator[None]:
    """full_precision for a part kept fp32 because bf16 was measured to move its results (the scoring encoders
    and the nucleotide-resolution decoder), as opposed to one that is fp32 by construction (scans, router, residual
    path, head). Entered from a CPU bf16 autocast, it marks its linear layers as free to take the split-bf16 AMX
    products (in_fp32_island); in an fp32 run nothing changes."""
    token = _island.set(t.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                        and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    try:
        with full_precision(t):
            yield
    finally:
        _island.reset(token)


def in_fp32_island() -> bool:
    """True inside fp32_island entered from a CPU bf16 autocast (see there)."""
    return _island.get()


@functools.lru_cache(maxsize=1)
def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU's native bf16 matrix features ('amx_bf16', 'avx512_bf16'); empty when it has none."""
    found = []
    probes = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    flags: set[str] | None = None
    for name, probe in probes:
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    found.append(name)
                continue
            except Exception:  # a torch build without the probe: fall back to the kernel's flags
                pass
        if flags is None:
            flags = _proc_cpuinfo_flags()
        if name in flags:
            found.append(name)
    return tuple(found)


def _proc_cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; a device this machine lacks (or one dnahnet does not run on,
    such as meta or xpu) is a usage error, not a traceback from deep inside torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise DnahnetError(f"invalid --device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DnahnetError(f"--device {device}: no CUDA GPU is available (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DnahnetError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DnahnetError(f"--device {device}: Apple's MPS backend is not available on this machine (use --device cpu)")
    return dev


def choose_dtype(requested: str, device: torch.device) -> tuple[str, str]:
    """(dtype name, reason) for a --dtype value; 'auto' decides from the hardware."""
    requested = ALIASES.get(requested, requested)
    if requested != "auto":
        return requested, "requested"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.version.hip:  # ROCm GPUs bf16-capable enough to run PyTorch do it natively
            return "bfloat16", f"auto: {name} supports bf16"
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return "bfloat16", f"auto: {name} (compute capability {major}.{minor}) multiplies bf16 natively"
        return "float32", f"auto: {name} (compute capability {major}.{minor}) has no native bf16 matmul"
    if device.type == "cpu":
        feats = cpu_bf16_features()
        if feats:
            return "bfloat16", f"auto: CPU has native bf16 matmul ({'+'.join(feats)})"
        return "float32", "auto: CPU has no native bf16 matmul (AMX-BF16 or AVX512-BF16)"
    return "float32", f"auto: fp32 on {device.type}"


def cpu_kernels_status() -> str:
    """The compiled CPU kernels as this process would use them: off under --kernels torch (or
    DNAHNET_KERNELS=torch), else where they live or why they are unavailable."""
    from dnahnet_cli.model.cpu_mixer import status
    from dnahnet_cli.model.kernels import kernel_mode

    return "off (--kernels torch)" if kernel_mode() == "torch" else status()


def cpu_linear_status() -> str:
    """What fp32 linear layers take in CPU inference: oneDNN's GEMM (cpu_linear.py), or why not."""
    from dnahnet_cli.model import cpu_linear
    from dnahnet_cli.model.kernels import kernel_mode

    if kernel_mode() == "torch":
        return "off (--kernels torch)"
    status = cpu_linear.status()
    if status != "ok":
        return status
    split = cpu_linear.split_status()
    islands = ("split-bf16 AMX products for the encoders and the stage-0 decoder of bf16 runs" if split == "ok"
               else f"split-bf16 AMX products {split}")
    return f"oneDNN fp32 GEMM from {cpu_linear.MIN_ROWS} rows; {islands}"


def describe_compute() -> dict:
    """What this machine offers the model (for `dnahnet info --device`): devices, threads, bf16 support and
    what --dtype auto would choose on each device, and why."""
    import platform

    from dnahnet_cli.model.allocator import host_memory_policy
    from dnahnet_cli.model.openmp import openmp_policy

    cpu = torch.device("cpu")
    out = {"torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_bf16_matmul": list(cpu_bf16_features()) or None,
           "cpu_auto_dtype": "{} ({})".format(*choose_dtype("auto", cpu)),
           "host_memory": host_memory_policy(),
           "openmp_wait": openmp_policy(),
           "cpu_kernels": cpu_kernels_status(),
           "cpu_fp32_linear": cpu_linear_status(),
           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if torch.cuda.is_available():
        out["cuda_auto_dtype"] = "{} ({})".format(*choose_dtype("auto", torch.device("cuda")))
    return out
