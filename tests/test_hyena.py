"""Hyena-SE/-MR/-LI mixers: causal, blind to right padding, exact when decoded incrementally, fp32 inside
under autocast, and hyena_flops agrees with FlopCounterMode where the counter can see the work."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dnahnet_cli.model.hyena import (
    HYENA_KINDS, HyenaMixer, fft_causal_conv, fft_conv_flops, fft_size, hyena_flops,
)
from dnahnet_cli.model.layers import RMSNorm

D = 8
KINDS = ["se", "mr", "li"]
SMALL = dict(short_len=3, se_len=5, mr_len=12, li_modes=4)  # filters shorter than the test sequences


def _mixer(kind: str) -> HyenaMixer:
    return HyenaMixer(D, kind, **SMALL).double()


def _ones(b: int, l: int) -> torch.Tensor:
    return torch.ones(b, l, dtype=torch.bool)


def test_kinds_and_bad_kind():
    assert HYENA_KINDS == {"e": "se", "r": "mr", "l": "li"}
    with pytest.raises(ValueError):
        HyenaMixer(D, "xx")


@pytest.mark.parametrize("kind", KINDS)
def test_causal(kind):
    m, l = _mixer(kind), 30
    x = torch.randn(1, l, D, dtype=torch.float64)
    y = m(x, _ones(1, l))
    for t in (0, 7, 29):
        x2 = x.clone()
        x2[0, t] += torch.randn(D, dtype=torch.float64)
        y2 = m(x2, _ones(1, l))
        if kind == "li":  # FFT roundoff reaches every position; mathematically causal
            assert torch.allclose(y2[:, :t], y[:, :t], rtol=0, atol=1e-13)
        else:
            assert torch.equal(y2[:, :t], y[:, :t])
        assert (y2[:, t:] - y[:, t:]).abs().max() > 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_right_padding_invariance(kind):
    m, lengths = _mixer(kind), [23, 9, 1]
    x = torch.randn(3, 23, D, dtype=torch.float64)
    mask = torch.arange(23)[None] < torch.tensor(lengths)[:, None]
    x = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))  # garbage in the padding
    y = m(x, mask)
    for row, n in enumerate(lengths):
        alone = m(x[row:row + 1, :n], _ones(1, n))
        assert torch.allclose(y[row:row + 1, :n], alone, rtol=0, atol=1e-10)


def _decode(m: HyenaMixer, streams: torch.Tensor, plan: list[list[int]], state: dict) -> list[list[torch.Tensor]]:
    """Feed per-row valid streams (B, N, D) in calls with plan[c][row] valid tokens (garbage padding);
    returns the outputs of each row's valid positions, call by call."""
    b = streams.shape[0]
    taken, outs = [0] * b, [[] for _ in range(b)]
    for counts in plan:
        size = max(max(counts), 1)
        x = 1e3 * torch.randn(b, size, D, dtype=torch.float64)
        mask = torch.zeros(b, size, dtype=torch.bool)
        for row, n in enumerate(counts):
            x[row, :n] = streams[row, taken[row]:taken[row] + n]
            mask[row, :n] = True
        y = m(x, mask, state)
        assert y.shape == (b, size, D)
        for row, n in enumerate(counts):
            outs[row].append(y[row, :n])
            taken[row] += n
    return outs


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_matches_full(kind):
    m = _mixer(kind)
    plan = [[10, 10, 10], [1, 1, 1], [5, 0, 5], [1, 1, 0], [5, 3, 5], [1, 0, 1], [5, 5, 2], [1, 1, 1]]
    totals = [sum(c[row] for c in plan) for row in range(3)]
    streams = torch.randn(3, max(totals), D, dtype=torch.float64)
    state: dict = {}
    outs = _decode(m, streams, plan, state)
    assert state["len"].tolist() == totals
    for row, n in enumerate(totals):
        full = m(streams[row:row + 1, :n], _ones(1, n))[0]
        assert torch.allclose(torch.cat(outs[row]), full, rtol=0, atol=1e-10)
    # a prefix's state can be continued more than once (tensors are replaced, never written in place)
    prefix: dict = {}
    _decode(m, streams, plan[:2], prefix)
    first = _decode(m, streams[:, 11:], plan[2:4], dict(prefix))
    second = _decode(m, streams[:, 11:], plan[2:4], dict(prefix))
    for a, b in zip(first, second):
        assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_state_is_bounded_for_explicit_filters():
    for kind, taps in (("se", SMALL["se_len"]), ("mr", SMALL["mr_len"])):
        state: dict = {}
        m = _mixer(kind)
        for _ in range(3):
            m(torch.randn(2, 20, D, dtype=torch.float64), _ones(2, 20), state)
        assert state["z"].shape == (2, taps - 1, D)
        assert state["proj"].shape == (2, SMALL["short_len"] - 1, 3 * D)


def test_fft_conv_equals_direct_conv():
    b, l, c = 2, 37, 5  # 37 positions -> FFT size 75, not a power of two
    assert fft_size(2 * l) == 75
    u = torch.randn(b, l, c, dtype=torch.float64)
    m = HyenaMixer(c, "li", li_modes=6).double()
    h = m.inner_filter(l, torch.float64)
    direct = F.conv1d(F.pad(u.transpose(1, 2), (l - 1, 0)), h.flip(-1)[:, None, :], groups=c).transpose(1, 2)
    assert torch.allclose(fft_causal_conv(u, h), direct, rtol=0, atol=1e-10)


def test_li_filter_spans_short_and_long_memories():
    m = HyenaMixer(4, "li")
    rate = F.softplus(m.decay.detach())
    assert rate.max() > 0.5 and rate.min() < 1e-3


def test_fft_size_is_5_smooth_and_minimal():
    smooth = [n for n in range(1, 400) if all(p in (2, 3, 5) for p in _factors(n))]
    for n in range(1, 300):
        assert fft_size(n) == min(s for s in smooth if s >= n)


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_bf16_keeps_inner_conv_fp32(kind):
    d, l = 32, 40
    m, norm = HyenaMixer(d, kind, mr_len=16), RMSNorm(d)
    h = norm(torch.randn(2, l, d))
    mask = torch.arange(l)[None] < torch.tensor([[l], [25]])
    ref = m(h, mask)
    seen = []
    inner = m._inner

    def spy(full, n_out):
        out = inner(full, n_out)
        seen.append((full.dtype, out.dtype))
        return out

    m._inner = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(h, mask)
        state: dict = {}
        m(h[:, :30], mask[:, :30], state)
        step = m(h[:, 30:31], mask[:, 30:31], state)
    assert out.dtype == torch.bfloat16
    assert seen and all(s == (torch.float32, torch.float32) for s in seen)
    assert state["z"].dtype == torch.float32
    valid = mask[..., None]
    rel = ((out.float() - ref) * valid).norm() / (ref * valid).norm()
    assert rel < 0.03
    assert ((step[0].float() - ref[0, 30]).norm() / ref[0, 30].norm()) < 0.05  # row 1 is padding there


@pytest.mark.parametrize("kind", KINDS)
def test_flops_match_counter(kind):
    d, l = 16, 50
    m = HyenaMixer(d, kind, **SMALL)
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, l, d), _ones(1, l))
    expected = hyena_flops(l, d, kind, **SMALL)
    if kind == "li":  # the counter does not see FFTs: compare the rest, check the FFT term on its own
        assert expected - d * fft_conv_flops(l) == pytest.approx(counter.get_total_flops(), rel=1e-12)
    else:
        assert expected == counter.get_total_flops()


def test_fft_flops_grow_like_n_log_n():
    assert fft_conv_flops(37) > 0
    for n in (2 ** 10, 2 ** 14):  # power-of-two sizes: ratio 2 * log2(4n) / log2(2n)
        ratio = fft_conv_flops(2 * n) / fft_conv_flops(n)
        assert 2.0 < ratio < 2.2
    per = [fft_conv_flops(n) / (n * math.log2(n)) for n in (1000, 3000, 10000, 30000, 100000)]
    assert max(per) / min(per) < 1.6
    fft_part = hyena_flops(4096, 64, "li") - hyena_flops(4096, 64, "se", se_len=0)
    assert fft_part == pytest.approx(64 * fft_conv_flops(4096), rel=1e-12)
