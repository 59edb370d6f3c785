"""The Triton SSD glue (kernels.ssd / kernels.ema) on CPU, through Triton's interpreter (TRITON_INTERPRET=1).

tests/test_kernels.py checks the GPU paths only where CUDA is present and the EMA reformulation with the
reference scan on CPU. This file runs mamba-ssm's real `mamba_chunk_scan_combined` (its Triton kernels
executed by the interpreter, in numpy) behind dnahnet's `kernels.ssd` and `kernels.ema`, and compares them
with the plain-PyTorch references `ssd_chunked(x * dt, dt * A, ...)` and `ema_chunked` (in float64). It
checks the calling conventions of the glue (x not scaled by dt, dt after softplus, A per head, groups,
initial and final states, dt = 0 / P = 0 padding, several chunks), not GPU numerics: the interpreter does
dot products in plain fp32, not TF32. fp32 only: bf16 is not checked here because the interpreter (triton
3.9.0) stores bf16 results wrongly (a two-line kernel storing tl.load(x) * 2 to a bf16 tensor is off by ~7).

Needs `triton` and `mamba_ssm` (installed with MAMBA_SKIP_CUDA_BUILD=TRUE, plus its import-time
dependencies einops, huggingface_hub, transformers); skipped when they are not importable, as in the
project's own venv. The comparison runs in a subprocess because TRITON_INTERPRET must be set before triton
is first imported, and because of two CPU-only accommodations that must not leak into other tests:

* mamba-ssm wraps every launch in `torch.cuda.device(tensor.device.index)`, which raises for a CPU tensor
  (index None); there, and only for index None, it is replaced by a no-op context.
* MAMBA_DETERMINISTIC=1 makes mamba-ssm's autotuners keep a single config, since the interpreter has no
  driver to benchmark configs with. Its other effect (deterministic reductions) is in the backward only.

Measured (triton 3.9.0, mamba-ssm 2.3.2.post1, torch 2.13.0+cpu; inputs are seeded, so fixed), as relative
Frobenius error ||kernel - ref|| / ||ref||: SSD outputs 1.3e-7 .. 1.8e-6, final states 5e-8 .. 6.3e-7; EMA
outputs 2.5e-7 .. 1.7e-6, last values 1.4e-7 .. 1.1e-5 (the largest: chunk 256, where the kernel's fp32
cumulative sum of deep log decays loses ~1e-5 to cancellation). TOL = 1e-4 keeps a 10x margin over that and
is still far below what a convention bug gives: x pre-scaled by dt is off by 0.42
(test_tolerance_detects_convention_errors). The whole file runs in about 12 s on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4  # relative Frobenius error, kernel (interpreted, fp32) vs float64 reference
MISSING = [m for m in ("triton", "mamba_ssm") if importlib.util.find_spec(m) is None]
SKIP_RC = 77

# (name, b, l, h, p, n, g, with initial state, kernels.SSD_CHUNK)
SSD_CASES = [
    ("l64-chunk16", 1, 64, 2, 16, 16, 1, False, 16),
    ("l200-chunk32-init", 1, 200, 2, 16, 16, 1, True, 32),
    ("b2-l200-h4-g2-chunk64-init", 2, 200, 4, 16, 16, 2, True, 64),
    ("l300-chunk256-init", 1, 300, 2, 16, 16, 1, True, None),  # the production chunk (two chunks)
]
# (name, b, m, d, with initial value, kernels.SSD_CHUNK)
EMA_CASES = [
    ("m100-d64-chunk32", 1, 100, 64, False, 32),
    ("b2-m150-d96-chunk32-init", 2, 150, 96, True, 32),
    ("m200-d64-chunk256-init", 1, 200, 64, True, None),
]

WORKER = r"""
import contextlib, json, os, sys, warnings
assert os.environ.get("TRITON_INTERPRET") == "1"
import torch
import torch.nn.functional as F
from dnahnet_cli.model import kernels
from dnahnet_cli.model.ssd import ema_chunked, ssd_chunked

warnings.filterwarnings("ignore", message="Deterministic mode")
try:
    kernels._import_mamba_ssd()
except ImportError as exc:
    print(f"mamba_ssm's Triton SSD kernel is not importable: {type(exc).__name__}: {exc}")
    sys.exit(SKIP_RC)

_cuda_device = torch.cuda.device
torch.cuda.device = lambda idx: contextlib.nullcontext() if idx is None else _cuda_device(idx)

def rel(a, b):
    return float((a.double() - b).norm() / b.norm().clamp(min=1e-300))

gen = torch.Generator().manual_seed(0)
out = {"ssd": {}, "ema": {}, "wrong": {}}
default_chunk = kernels.SSD_CHUNK
for name, b, l, h, p, n, g, init, chunk in SSD_CASES:
    kernels.SSD_CHUNK = chunk or default_chunk
    x = torch.randn(b, l, h, p, generator=gen)
    dt = F.softplus(torch.randn(b, l, h, generator=gen) - 1)
    dt[:, -5:] = 0  # padding positions: no input, no decay
    A = -torch.rand(h, generator=gen) - 0.5
    B = torch.randn(b, l, g, n, generator=gen)
    C = torch.randn(b, l, g, n, generator=gen)
    s0 = torch.randn(b, h, p, n, generator=gen) if init else None
    y, final = kernels.ssd(x, dt, A, B, C, s0)
    xd, dtd = x.double(), dt.double()
    y_ref, final_ref = ssd_chunked(xd * dtd[..., None], dtd * A.double(), B.double(), C.double(), 64,
                                   None if s0 is None else s0.double())
    out["ssd"][name] = {"y": rel(y, y_ref), "state": rel(final, final_ref),
                        "y_shape": list(y.shape), "state_shape": list(final.shape), "dtype": str(y.dtype)}
    if name == SSD_CASES[0][0]:  # what the same check says about a wrong convention: x pre-scaled by dt
        y_bad, _ = kernels.ssd(x * dt[..., None], dt, A, B, C, s0)
        out["wrong"]["x_prescaled"] = rel(y_bad, y_ref)
for name, b, m, d, init, chunk in EMA_CASES:
    kernels.SSD_CHUNK = chunk or default_chunk
    v = torch.randn(b, m, d, generator=gen)
    P = torch.rand(b, m, generator=gen) * 0.99
    P[:, ::7] = 0  # invalid slots carry the last value
    e0 = torch.randn(b, d, generator=gen) if init else None
    e, last = kernels.ema(v, P, e0)
    e_ref, last_ref = ema_chunked(v.double(), P.double(), None if e0 is None else e0.double())
    out["ema"][name] = {"y": rel(e, e_ref), "state": rel(last, last_ref),
                        "y_shape": list(e.shape), "state_shape": list(last.shape), "dtype": str(e.dtype)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results() -> dict:
    if MISSING:
        pytest.skip(f"needs {' and '.join(MISSING)} (Triton interpreter check of the mamba-ssm SSD glue)")
    src = (f"SKIP_RC = {SKIP_RC}\nSSD_CASES = {SSD_CASES!r}\nEMA_CASES = {EMA_CASES!r}\n") + WORKER
    env = dict(os.environ, TRITON_INTERPRET="1", MAMBA_DETERMINISTIC="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == SKIP_RC:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, f"worker failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", SSD_CASES, ids=[c[0] for c in SSD_CASES])
def test_ssd_kernel_matches_reference(results, case):
    name, b, l, h, p, n, *_ = case
    r = results["ssd"][name]
    assert r["y_shape"] == [b, l, h, p] and r["state_shape"] == [b, h, p, n]
    assert r["dtype"] == "torch.float32"
    assert r["y"] < TOL, r
    assert r["state"] < TOL, r


@pytest.mark.parametrize("case", EMA_CASES, ids=[c[0] for c in EMA_CASES])
def test_ema_kernel_matches_reference(results, case):
    name, b, m, d, *_ = case
    r = results["ema"][name]
    assert r["y_shape"] == [b, m, d] and r["state_shape"] == [b, d]
    assert r["dtype"] == "torch.float32"
    assert r["y"] < TOL, r
    assert r["state"] < TOL, r


def test_tolerance_detects_convention_errors(results):
    assert results["wrong"]["x_prescaled"] > 1e-2, results["wrong"]
