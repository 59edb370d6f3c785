"""Kernel switch and accelerated paths (dnahnet_cli/model/kernels.py).

CPU: the switch, that CPU tensors never leave the reference path, the FlexAttention band block mask and the
EMA-through-SSD reformulation (checked with the reference scan). GPU (skipped without CUDA or the kernel's
package): every fast path against the plain-PyTorch reference. Stated tolerances, as relative Frobenius
error ||fast - ref|| / ||ref||: fp32 3e-3 (the Triton kernels use TF32 dot products), bf16 2e-2.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnahnet_cli.model import kernels
from dnahnet_cli.genomics.alphabet import BOS
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.hnet import RoutingModule
from dnahnet_cli.model.layers import CausalSelfAttention, Mamba2
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.model.ssd import ema_chunked, ema_sequential, ssd_chunked

TOL = {torch.float32: 3e-3, torch.bfloat16: 2e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


@pytest.fixture(autouse=True)
def _restore_mode():
    before = kernels.active_kernels()["mode"]
    yield
    kernels.set_kernels(before)


def ids_of(length: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 6, (1, length), generator=g)
    ids[:, 0] = BOS
    return ids.to(device)


def fixed_routers(model: DNAHNet, every: int = 3) -> DNAHNet:
    """Deterministic boundaries (every k-th position), so fast and reference runs route identically."""
    for m in model.modules():
        if isinstance(m, RoutingModule):
            def forward(h, mask, state=None, _real=m.forward):
                _real(h, mask, state)
                pos = torch.arange(h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
                if state is not None:
                    pos = pos + state.setdefault("n", torch.zeros(h.shape[0], dtype=torch.long, device=h.device))[:, None]
                    state["n"] = state["n"] + mask.sum(1)
                p = torch.where(pos % every == 0, 0.9, 0.1)
                return p, (p > 0.5) & mask
            m.forward = forward
    return model


# -- CPU ------------------------------------------------------------------------------------------

def test_modes_and_validation():
    with pytest.raises(DnahnetError):
        kernels.set_kernels("bogus")
    kernels.set_kernels("torch")
    assert set(kernels.active_kernels().values()) == {"torch"}
    kernels.set_kernels("auto")
    assert kernels.active_kernels()["mode"] == "auto"
    assert set(kernels.detect()) >= {"cuda", "mamba_ssm", "causal_conv1d", "flash_attn", "flex_attention"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_fast_mode_refuses_without_cuda():
    with pytest.raises(DnahnetError, match="CUDA"):
        kernels.set_kernels("fast")


def test_cpu_tensors_never_take_gpu_paths():
    """On a CPU, auto differs from torch only by the compiled SSD scan (tests/test_cpu_mixer.py); without it,
    the two are the same computation, bit for bit."""
    kernels.set_kernels("auto")
    x = torch.zeros(2)
    assert not any(kernels.fast(c, x) for c in ("ssd", "ema", "conv", "attention"))
    scan = kernels.cpu_kernels() != "torch"
    model = DNAHNet(get_preset("tiny")).eval()
    ids = ids_of(300)
    try:
        with torch.inference_mode():
            auto = model(ids).logits
            kernels.set_kernels("torch")
            ref = model(ids).logits
    finally:
        kernels.set_kernels("auto")
    assert float((auto - ref).abs().max()) < 1e-4 if scan else torch.equal(auto, ref)


@pytest.mark.parametrize("length,window", [(256, 127), (512, 100), (1024, 300), (384, 0), (640, 1023)])
def test_band_block_mask_matches_dense_mask(length, window):
    from torch.nn.attention.flex_attention import create_block_mask

    mine = kernels.band_block_mask(length, window, "cpu")
    ref = create_block_mask(lambda b, h, q, k: (k <= q) & (q - k <= window), 1, 1, length, length, device="cpu")
    for attr in ("kv_num_blocks", "full_kv_num_blocks"):
        assert torch.equal(getattr(mine, attr), getattr(ref, attr)), attr
    for num, idx in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        counts = getattr(mine, num)[0, 0]
        for row, n in enumerate(counts.tolist()):
            assert sorted(getattr(mine, idx)[0, 0, row, :n].tolist()) == sorted(getattr(ref, idx)[0, 0, row, :n].tolist())


def test_flex_window_attention_eager_matches_reference():
    torch.manual_seed(0)
    layer = CausalSelfAttention(48, 3, 0, window=100)
    q, k, v = (torch.randn(2, 3, 300, 16) for _ in range(3))
    ref = layer._attend_fresh(q, k, v)
    out = kernels.flex_window_attention(q, k, v, 100, compiled=False)
    assert rel(out, ref) < 1e-5


def test_ema_reformulation_with_reference_scan():
    """kernels.ema's mapping onto the SSD kernel (x = v, dt = -log(1-P), A = -1, B = P/dt) is exact math:
    run it through the reference scan, with invalid slots (P = 0) and an initial value."""
    def reference_ssd(x, dt, A, B, C, init):
        return ssd_chunked(x * dt[..., None], dt * A, B, C, 16, init)

    torch.manual_seed(0)
    v, P = torch.randn(2, 70, 96), torch.rand(2, 70) * 0.9
    P[1, 50:] = 0.0
    init = torch.randn(2, 96)
    got, last = kernels.ema(v, P, init, ssd_fn=reference_ssd)
    want = ema_sequential(v, P, init)
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(last, want[:, -1], atol=1e-5)


# -- GPU ------------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def need(backend: str) -> None:
    if not kernels.detect()[backend]["available"]:
        pytest.skip(f"{backend} not importable: {kernels.detect()[backend]['detail']}")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d_state", [16, 64, 128])
def test_gpu_ssd_matches_reference(dtype, d_state):
    need("mamba_ssm")
    torch.manual_seed(0)
    b, l, h, p = 2, 1000, 4, 64  # l not a multiple of the 256 tile
    x = torch.randn(b, l, h, p, device="cuda", dtype=dtype, requires_grad=True)
    dt = F.softplus(torch.randn(b, l, h, device="cuda") - 3).requires_grad_()
    A = (-torch.rand(h, device="cuda") * 8 - 1).requires_grad_()
    B = torch.randn(b, l, 1, d_state, device="cuda", dtype=dtype, requires_grad=True)
    C = torch.randn(b, l, 1, d_state, device="cuda", dtype=dtype, requires_grad=True)
    init = torch.randn(b, h, p, d_state, device="cuda")
    y, final = kernels.ssd(x, dt, A, B, C, init)
    y_ref, final_ref = ssd_chunked(x.float() * dt[..., None], dt * A, B.float(), C.float(), 64, init)
    assert rel(y, y_ref) < TOL[dtype] and rel(final, final_ref) < TOL[dtype]
    if dtype == torch.float32:
        grads = torch.autograd.grad(y.sum() + final.sum(), (x, dt, A, B, C))
        grads_ref = torch.autograd.grad(y_ref.sum() + final_ref.sum(), (x, dt, A, B, C))
        for g, g_ref in zip(grads, grads_ref):
            assert rel(g, g_ref) < 1e-2


@pytest.mark.gpu
@cuda
def test_gpu_ema_matches_reference():
    need("mamba_ssm")
    torch.manual_seed(0)
    v = torch.randn(2, 3000, 256, device="cuda")
    P = torch.rand(2, 3000, device="cuda").clamp(1e-4, 1 - 1e-4)
    P[1, 2500:] = 0.0  # invalid chunk slots carry the last value
    init = torch.randn(2, 256, device="cuda")
    got, last = kernels.ema(v, P, init)
    kernels.set_kernels("torch")
    want, want_last = ema_chunked(v, P, init)
    assert rel(got, want) < TOL[torch.float32] and rel(last, want_last) < TOL[torch.float32]


@pytest.mark.gpu
@cuda
def test_gpu_causal_conv_matches_reference():
    need("causal_conv1d")
    torch.manual_seed(0)
    layer = Mamba2(128, d_state=64).cuda()
    xbc = torch.randn(2, 777, layer.conv_dim, device="cuda")
    got = kernels.conv_silu(xbc, layer.conv1d.weight, layer.conv1d.bias)
    full = F.pad(xbc.transpose(1, 2), (layer.d_conv - 1, 0))
    want = F.silu(F.conv1d(full, layer.conv1d.weight, layer.conv1d.bias, groups=layer.conv_dim)).transpose(1, 2)
    assert rel(got, want) < 1e-4


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length,window", [(1000, 127), (3000, 1023), (5000, 255)])
def test_gpu_window_attention_matches_reference(dtype, length, window):
    if kernels.active_kernels()["attention"] == "torch":
        pytest.skip("no fast attention backend")
    torch.manual_seed(0)
    layer = CausalSelfAttention(256, 4, 32, window=window).cuda()
    q, k, v = (torch.randn(2, 4, length, 64, device="cuda", dtype=dtype) for _ in range(3))
    got = kernels.window_attention(q, k, v, window)
    assert got is not None, "no fast backend took the input"
    kernels.set_kernels("torch")
    want = layer._attend_fresh(q.float(), k.float(), v.float())
    assert rel(got, want) < TOL[dtype]


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("preset", ["tiny", "small", "small-mamba2", "small-tpp"])
def test_gpu_model_fast_matches_reference(preset):
    """Whole models, fp32 and bf16 autocast, fast kernels vs the reference, fixed routing."""
    if kernels.active_kernels()["ssd"] == "torch":
        pytest.skip("mamba_ssm not importable")
    torch.manual_seed(0)
    model = fixed_routers(DNAHNet(get_preset(preset)).cuda().eval())
    ids = ids_of(3000, "cuda")
    for dtype in (torch.float32, torch.bfloat16):
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            kernels.set_kernels("auto")
            fast = model(ids).logits
            kernels.set_kernels("torch")
            ref = model(ids).logits
        assert rel(fast, ref) < TOL[dtype], dtype


@pytest.mark.gpu
@cuda
def test_gpu_fast_prefill_then_steps_equals_forward():
    """Final states returned by the kernels seed the incremental path correctly."""
    if kernels.active_kernels()["ssd"] == "torch":
        pytest.skip("mamba_ssm not importable")
    torch.manual_seed(0)
    model = fixed_routers(DNAHNet(get_preset("tiny")).cuda().eval())
    ids = ids_of(600, "cuda")
    kernels.set_kernels("auto")
    with torch.inference_mode():
        full = model(ids).logits
        state: dict = {}
        parts = [model(ids[:, :500], state=state).logits]
        parts += [model(ids[:, t: t + 1], state=state).logits for t in range(500, 600)]
    assert rel(torch.cat(parts, 1), full) < TOL[torch.float32]
