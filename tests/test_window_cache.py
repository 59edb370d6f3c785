"""The ring-buffer window cache matches one-shot banded causal attention and never commits padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnahnet_cli.model.window_cache import ring_attend

B, H, DH = 3, 2, 8
SIZES = [1, 7, 1, 1, 20, 3, 1, 9, 2, 30, 1]


def _plan(seed: int) -> list[torch.Tensor]:
    """Per call, the number of valid tokens of each row (0 .. size, with a fully padded row in some calls)."""
    g = torch.Generator().manual_seed(seed)
    plan = []
    for c, size in enumerate(SIZES):
        n = torch.randint(0, size + 1, (B,), generator=g)
        n[0] = size  # row 0 always full
        if c % 3 == 1:
            n[c % B] = 0
        plan.append(n)
    return plan


def _stream(plan: list[torch.Tensor], garbage: float = 1.0, seed: int = 0):
    """Per-row valid streams (B, H, N, Dh) and the padded per-call q, k, v built from them."""
    g = torch.Generator().manual_seed(seed)
    n_total = int(torch.stack(plan).sum(0).max())
    full = [torch.randn(B, H, n_total, DH, generator=g, dtype=torch.float64) for _ in range(3)]
    gk = torch.Generator().manual_seed(seed + 1000)
    taken = torch.zeros(B, dtype=torch.long)
    calls = []
    for size, n in zip(SIZES, plan):
        mask = torch.arange(size)[None, :] < n[:, None]
        qkv = [garbage * torch.randn(B, H, size, DH, generator=gk, dtype=torch.float64) for _ in range(3)]
        for row in range(B):
            for t, src in zip(qkv, full):
                t[row, :, : n[row]] = src[row, :, taken[row]: taken[row] + n[row]]
        calls.append((*qkv, mask))
        taken += n
    return full, calls


def _reference(q, k, v, window: int) -> torch.Tensor:
    n = q.shape[2]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=(j <= i) & (i - j <= window))


def _run(calls, window: int, block: int = 256):
    state: dict = {}
    outs = []
    for q, k, v, mask in calls:
        positions = (state["len"] if state else torch.zeros(B, dtype=torch.long))[:, None] + torch.arange(q.shape[2])
        out = ring_attend(q, k, v, mask, state, positions, window, block=block)
        assert torch.isfinite(out).all()
        assert state["k"].shape == state["v"].shape == (B, H, window + 1, DH)
        assert state["pos"].shape == (B, window + 1)
        outs.append((out, mask))
    return outs, state


def _valid_outputs(outs) -> list[torch.Tensor]:
    """Per row, the outputs at valid query positions, concatenated over calls: (H, N_row, Dh)."""
    return [torch.cat([out[row][:, mask[row]] for out, mask in outs], dim=1) for row in range(B)]


@pytest.mark.parametrize("window", [0, 1, 5, 16])
@pytest.mark.parametrize("block", [256, 4])
def test_matches_full_banded_attention(window, block):
    plan = _plan(window)
    full, calls = _stream(plan)
    outs, state = _run(calls, window, block)
    ref = _reference(*full, window)
    totals = torch.stack(plan).sum(0)
    assert torch.equal(state["len"], totals)
    for row, got in enumerate(_valid_outputs(outs)):
        assert got.shape[1] == totals[row]
        torch.testing.assert_close(got, ref[row, :, : totals[row]], rtol=0, atol=1e-10)


@pytest.mark.parametrize("window", [0, 5, 16])
def test_padding_never_visible(window):
    plan = _plan(window + 7)
    _, calls_a = _stream(plan, garbage=1.0, seed=3)
    _, calls_b = _stream(plan, garbage=1e3, seed=3)  # same valid tokens, different padded values
    for a, b in zip(calls_a, calls_b):
        assert torch.equal(a[3], b[3])
    got_a, got_b = (_valid_outputs(_run(c, window)[0]) for c in (calls_a, calls_b))
    for a, b in zip(got_a, got_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_cache_keeps_key_dtype():
    state: dict = {}
    q = k = v = torch.randn(2, 1, 5, 4, dtype=torch.bfloat16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = ring_attend(q, k, v, mask, state, torch.arange(5).expand(2, 5), 2)
    assert out.dtype == torch.bfloat16 and state["k"].dtype == state["v"].dtype == torch.bfloat16
    assert state["pos"].tolist() == [[3, 4, 2]] * 2
