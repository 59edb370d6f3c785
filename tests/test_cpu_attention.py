"""The compiled CPU attention kernel (dnahnet_cli/model/cpu_attention.py) against torch's SDPA with the mask written
out, and the whole model with it against the reference path.

Tolerances: the kernel is fp32 softmax attention in another order (exp as a polynomial within a few ulp), so fp32
outputs agree with SDPA to ~1e-7 relative; the tests allow 1e-5. With bf16 inputs the kernel still computes in
fp32 and rounds only its output, so it is compared with SDPA over the same bf16 values in fp32, within the
rounding of one bf16 output (2^-8 relative)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import loss_and_gradients
from dnahnet_cli.model import cpu_attention, cpu_mixer, kernels
from dnahnet_cli.model.precision import cpu_bf16_features
from dnahnet_cli.model.window_cache import ring_attend

pytestmark = pytest.mark.skipif(cpu_mixer._compiler() is None, reason="no C compiler: the reference path runs")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def _qkv(b: int, h: int, l: int, d: int, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, h, l, d, generator=gen) * 2).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("d", [16, 24, 32, 48, 64, 8])
@pytest.mark.parametrize("window", [-1, 0, 5, 130])
def test_causal_matches_sdpa_for_every_head_width_and_window(d, window):
    q, k, v = _qkv(2, 3, 301, d, seed=d + window)  # 301: the last query block and key tile are partial
    i = torch.arange(301)
    allowed = (i[None] <= i[:, None]) & ((i[:, None] - i[None] <= window) if window >= 0 else True)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert _rel(cpu_attention.causal(q, k, v, window), want) < 1e-5


def test_bf16_inputs_are_computed_in_fp32_and_rounded_once():
    q, k, v = _qkv(1, 4, 700, 16, seed=3, dtype=torch.bfloat16)
    got = cpu_attention.causal(q, k, v, 200)
    i = torch.arange(700)
    allowed = (i[None] <= i[:, None]) & (i[:, None] - i[None] <= 200)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=allowed)
    assert got.dtype == torch.bfloat16
    assert _rel(got, exact) < 2 ** -8
    assert _rel(got, exact) < _rel(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), exact)


def test_a_cache_continued_at_different_positions_per_row():
    q, k, v = _qkv(2, 2, 400, 32, seed=5)
    positions = torch.stack([torch.arange(100, 160), torch.arange(337, 397)])  # 60 queries after each row's prefix
    qc = q[:, :, :60]
    allowed = torch.arange(400)[None, None, :] <= positions[:, :, None]
    want = F.scaled_dot_product_attention(qc, k, v, attn_mask=allowed[:, None])
    assert _rel(cpu_attention.by_position(qc, k, v, positions), want) < 1e-5


def test_empty_ranges_give_zeros_and_ranges_never_read_past_the_keys():
    q, k, v = _qkv(1, 2, 50, 16, seed=6)
    lo = torch.tensor([[0, 10, 30] + [0] * 47])
    hi = torch.tensor([[0, 10, 10**6] + list(range(4, 51))])  # empty, empty, beyond the 50 keys (clamped)
    out = cpu_attention.attend(q, k, v, lo, hi)
    assert torch.equal(out[:, :, :2], torch.zeros_like(out[:, :, :2]))
    want = F.scaled_dot_product_attention(q[:, :, 2:3], k[:, :, 30:], v[:, :, 30:])
    assert _rel(out[:, :, 2:3], want) < 1e-5


def test_two_threads_give_the_same_result_as_one():
    q, k, v = _qkv(1, 6, 900, 16, seed=7)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(cpu_attention.causal(q, k, v, 300))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*outs)


def _ring_stream(use_kernel: bool) -> list[torch.Tensor]:
    """ring_attend over calls of 1 to 40 new tokens, with padded tails and fully padded rows, through the kernel or
    through SDPA; the valid outputs of every call."""
    gen = torch.Generator().manual_seed(8)
    window, state, outs, taken = 25, {}, [], torch.zeros(3, dtype=torch.long)
    kernels.set_kernels("auto" if use_kernel else "torch")
    try:
        for size in (1, 7, 40, 1, 3, 33, 2, 1, 300, 1):  # 300: more than ring_attend's block of 256
            n = torch.randint(0, size + 1, (3,), generator=gen)
            n[0] = size
            mask = torch.arange(size)[None] < n[:, None]
            q, k, v = (torch.randn(3, 2, size, 16, generator=gen) for _ in range(3))
            positions = taken[:, None] + torch.arange(size)
            with torch.no_grad():
                out = ring_attend(q, k, v, mask, state, positions, window)
            outs.append(out.permute(0, 2, 1, 3)[mask])
            taken = taken + n
    finally:
        kernels.set_kernels("auto")
    return outs


def test_ring_cache_through_the_kernel_matches_sdpa():
    for got, want in zip(_ring_stream(True), _ring_stream(False)):
        assert _rel(got, want) < 1e-5


def test_gather_rows_is_gather_along_the_key_axis():
    x = torch.randn(3, 2, 40, 16)
    index = torch.randint(0, 40, (3, 25))
    want = x.gather(2, index[:, None, :, None].expand(3, 2, 25, 16))
    assert torch.equal(cpu_attention.gather_rows(x, index), want)


def _tiny():
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    return DNAHNet(get_preset("tiny")).eval()  # stage-1 window 127 (head width 16), main network 96 / 4 = 24


def test_whole_model_scoring_takes_the_kernel_and_matches_the_reference(monkeypatch):
    model = _tiny()
    ids = torch.randint(0, 4, (2, 900))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 650:] = False
    calls = []
    real = cpu_attention.attend
    monkeypatch.setattr(cpu_attention, "attend", lambda *a: calls.append(1) or real(*a))

    def run(mode: str):
        kernels.set_kernels(mode)
        with torch.inference_mode():
            whole = model(ids, mask).logits
            state: dict = {}  # a prefix, then the rest from its state: the cached paths (ring and growing cache)
            first = model(ids[:, :400], mask[:, :400], state).logits
            rest = model(ids[:, 400:], mask[:, 400:], state).logits
        return whole, torch.cat([first, rest], 1)

    try:
        ref = run("torch")
        assert not calls
        got = run("auto")
    finally:
        kernels.set_kernels("auto")
    assert len(calls) == 5 * 3  # stage-1 encoder and decoder, the main network's three layers; in 3 forwards
    valid = mask[..., None].expand_as(ref[0])
    for g, r in zip(got, ref):
        assert float((g - r)[valid].abs().max()) < 1e-4


@pytest.mark.skipif("amx_bf16" not in cpu_bf16_features(), reason="the rule applies on CPUs with AMX-BF16 only")
def test_on_amx_full_causal_bf16_scoring_takes_torch_and_windows_keep_the_kernel(monkeypatch):
    """kernels.amx_causal_attention: torch's bf16 attention multiplies on AMX tiles and beats the kernel there
    for full causal layers; windowed layers, fp32 runs and training keep the kernel."""
    model = _tiny()
    ids = torch.randint(0, 4, (1, 900))
    mask = torch.ones_like(ids, dtype=torch.bool)
    calls = []
    real = cpu_attention.attend
    cpu_mixer.load()  # its self-check calls attend too
    monkeypatch.setattr(cpu_attention, "attend", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        fp32 = model(ids, mask).logits
        assert len(calls) == 5  # stage-1 encoder and decoder (windowed), the main network's three layers
        calls.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, mask).logits
    assert len(calls) == 2  # only the windowed stage-1 layers (900 / 3 = 300 positions, window 127)
    assert float((mixed.float() - fp32).abs().max()) < 0.1  # bf16 decoders and main network: the same model
    q = _qkv(1, 4, 200, 24, dtype=torch.bfloat16)[0]
    with torch.no_grad():
        assert kernels.amx_causal_attention(q) and not kernels.amx_causal_attention(q.float())
    with torch.enable_grad():
        assert not kernels.amx_causal_attention(q)  # training keeps the kernel and its compiled backward


@pytest.mark.parametrize("d", [16, 24, 64])
@pytest.mark.parametrize("window", [-1, 7, 130])
def test_gradients_match_autograd_through_sdpa(d, window):
    q, k, v = (t.requires_grad_() for t in _qkv(2, 3, 301, d, seed=d + window))
    i = torch.arange(301)
    allowed = (i[None] <= i[:, None]) & ((i[:, None] - i[None] <= window) if window >= 0 else True)
    dout = torch.randn(2, 3, 301, d, generator=torch.Generator().manual_seed(1))
    want = torch.autograd.grad((F.scaled_dot_product_attention(q, k, v, attn_mask=allowed) * dout).sum(), (q, k, v))
    got = torch.autograd.grad((cpu_attention.causal(q, k, v, window) * dout).sum(), (q, k, v))
    for g, w in zip(got, want):
        assert _rel(g, w) < 1e-5


def test_bf16_gradients_come_back_in_bf16_from_fp32_arithmetic():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 200, 16, seed=9, dtype=torch.bfloat16))
    got = torch.autograd.grad(cpu_attention.causal(q, k, v, 50).float().sum(), (q, k, v))
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    want = torch.autograd.grad(cpu_attention.causal(qf, kf, vf, 50).sum(), (qf, kf, vf))
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16 and _rel(g, w) < 2 ** -7


def test_a_training_step_takes_the_kernel_and_matches_the_reference_gradients(monkeypatch):
    model = _tiny().train()
    calls = []
    real = cpu_attention.attend
    monkeypatch.setattr(cpu_attention, "attend", lambda *a: calls.append(1) or real(*a))
    ids = torch.randint(0, 4, (2, 700))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 500:] = False
    ref_loss, ref = loss_and_gradients(model, ids, mask, "torch")
    assert not calls
    loss, got = loss_and_gradients(model, ids, mask, "auto")
    assert len(calls) == 5  # stage-1 encoder and decoder, the main network's three layers
    flat = lambda d: torch.cat([g.flatten() for g in d.values()])  # noqa: E731
    assert abs(loss - ref_loss) < 1e-5 and _rel(flat(got), flat(ref)) < 1e-4
