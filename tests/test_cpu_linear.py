"""fp32 linear layers through oneDNN's GEMM for CPU inference (dnahnet_cli/model/cpu_linear.py) against F.linear.

Tolerance: the same fp32 products summed in another order, ~1e-7 relative; the tests allow 1e-5 per layer and
1e-4 in a whole model's logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnahnet_cli.model import cpu_linear, kernels
from dnahnet_cli.model.cpu_linear import Linear

pytestmark = pytest.mark.skipif(cpu_linear.status() != "ok", reason=f"oneDNN linear: {cpu_linear.status()}")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def _count_calls(monkeypatch, name: str) -> list[int]:
    """Calls of cpu_linear.`name` from now on (one 1 per call), the function still doing its work."""
    calls: list[int] = []
    real = getattr(cpu_linear, name)
    monkeypatch.setattr(cpu_linear, name, lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    return _count_calls(monkeypatch, "linear")


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("out_features", [389, 400, 4])
def test_inference_takes_onednn_and_matches_f_linear(counted, bias, out_features):
    torch.manual_seed(0)
    layer = Linear(80, out_features, bias=bias)
    x = torch.randn(600, 2, 80).transpose(0, 1)  # strided, as the model's views are
    with torch.no_grad():
        got = layer(x)
    assert counted == [1]
    assert got.shape == (2, 600, out_features)
    assert _rel(got, F.linear(x, layer.weight, layer.bias)) < 1e-5


def test_small_calls_autocast_gradients_and_the_reference_path_keep_f_linear(counted):
    layer = Linear(80, 389)
    with torch.no_grad():
        layer(torch.randn(1, cpu_linear.MIN_ROWS - 1, 80))  # too few rows: oneDNN's fixed cost would lose
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(torch.randn(1, 500, 80)).dtype == torch.bfloat16  # autocast's bf16 GEMM, as before
        kernels.set_kernels("torch")
        try:
            layer(torch.randn(1, 500, 80))
        finally:
            kernels.set_kernels("auto")
    layer(torch.randn(1, 500, 80)).sum().backward()  # no autograd formula: training keeps F.linear
    assert counted == []


def test_whole_model_inference_matches_the_reference_path(counted):
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    model = DNAHNet(get_preset("cpu")).eval()
    ids = torch.randint(0, 4, (2, 1500))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 1100:] = False
    try:
        kernels.set_kernels("torch")
        with torch.inference_mode():
            ref = model(ids, mask).logits
        assert counted == []
        kernels.set_kernels("auto")
        with torch.inference_mode():
            got = model(ids, mask).logits
    finally:
        kernels.set_kernels("auto")
    assert len(counted) >= 16  # at least the stage-0 Mamba2 layers' two projections
    valid = mask[..., None].expand_as(ref)
    assert float((got - ref)[valid].abs().max()) < 1e-4


# -- split-bf16 products on AMX for the fp32 islands of bf16 runs ----------------------------------------------
# Tolerance: each value carries 16 of fp32's 24 significand bits (hi + lo) and one cross term is dropped, so
# ~4e-6 relative against float64 (seen 3.0e-6 to 4.4e-6); the tests allow 2e-5 (cpu_linear.SPLIT_TOLERANCE) and
# require it to be at least 100x closer than a plain bf16 product (~3e-3), which a kernel that quietly dropped the
# lo parts would not be.

needs_amx = pytest.mark.skipif(cpu_linear.split_status() != "ok",
                               reason=f"split-bf16 AMX products: {cpu_linear.split_status()}")


@needs_amx
@pytest.mark.parametrize("rows, k, n, bias", [(70, 40, 37, True), (1000, 80, 389, False), (257, 192, 64, True),
                                              (32, 33, 902, False)])
def test_split_products_match_float64_far_closer_than_bf16(rows, k, n, bias):
    gen = torch.Generator().manual_seed(rows)
    x, weight = torch.randn(3, rows, k, generator=gen), torch.randn(n, k, generator=gen) / k ** 0.5
    b = torch.randn(n, generator=gen) if bias else None
    want = F.linear(x.double(), weight.double(), None if b is None else b.double())
    got = cpu_linear.split_linear(x, weight, b, cpu_linear.pack(weight))
    plain_bf16 = F.linear(x.bfloat16(), weight.bfloat16(), None if b is None else b.bfloat16())
    assert got.shape == (3, rows, n) and got.dtype == torch.float32
    assert _rel(got.double(), want) < cpu_linear.SPLIT_TOLERANCE
    assert _rel(got.double(), want) * 100 < _rel(plain_bf16.double(), want)


@needs_amx
def test_split_products_are_the_same_on_one_thread_and_two():
    x, weight = torch.randn(2, 1000, 96), torch.randn(454, 96)
    packed = cpu_linear.pack(weight)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_linear.split_linear(x, weight, None, packed)
        torch.set_num_threads(2)
        two = cpu_linear.split_linear(x, weight, None, packed)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)  # row blocks are independent: threads change nothing


@pytest.fixture
def split_calls(monkeypatch) -> list[int]:
    return _count_calls(monkeypatch, "split_linear")


@needs_amx
def test_only_the_islands_of_a_bf16_scoring_run_take_split_products(split_calls):
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    model = DNAHNet(get_preset("cpu")).eval()
    ids = torch.randint(0, 4, (1, 1500))
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.inference_mode():
        fp32 = model(ids, mask).logits
        assert split_calls == []  # an fp32 run keeps oneDNN's fp32 GEMM everywhere
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, mask).logits
    # stage 0: 4 + 4 Mamba2 layers x (in_proj, out_proj); stage 1's encoder: 4 more layers (its 1,500 / 3 rows
    # pass MIN_ROWS); never the routers, residual_proj or the head (fp32 by construction: oneDNN's GEMM)
    assert len(split_calls) >= 16
    assert float((mixed.float() - fp32).abs().max()) < 0.5  # still the same model (bf16 decoders and main network)
    split_calls.clear()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids, mask)
    assert split_calls == []  # training has no fp32 islands (and no gradient formula here)


@needs_amx
def test_a_weight_changed_in_place_is_packed_again(split_calls):
    layer = Linear(80, 389, bias=False)
    x = torch.randn(1, 600, 80)
    from dnahnet_cli.model.precision import fp32_island

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), fp32_island(x):
        before = layer(x)
        layer.weight.data.mul_(2)  # through .data: no version count changes
        after = layer(x)
    assert len(split_calls) == 2
    assert _rel(after, 2 * before) < 1e-5
    assert _rel(after, F.linear(x, layer.weight)) < cpu_linear.SPLIT_TOLERANCE


@needs_amx
@pytest.mark.parametrize("b, l, n, n1, gap", [(2, 45, 50, 40, 3), (3, 100, 902, 512, 3), (1, 8, 37, 21, 1)])
def test_split_products_into_two_destinations_with_spare_rows(b, l, n, n1, gap):
    """split_linear_into: columns below n1 after `gap` spare rows per batch row (tiles straddling a batch row or
    the column boundary go through the kernel's buffer), the rest apart; the spare rows are not written."""
    gen = torch.Generator().manual_seed(n)
    x, weight = torch.randn(b, l, 64, generator=gen), torch.randn(n, 64, generator=gen) / 8
    want = F.linear(x.double(), weight.double())
    first, rest = cpu_linear.split_linear_into(x, cpu_linear.pack(weight), n, n1, gap)
    assert first.shape == (b, gap + l, n1) and rest.shape == (b, l, n - n1)
    assert _rel(first[:, gap:].double(), want[..., :n1]) < cpu_linear.SPLIT_TOLERANCE
    assert _rel(rest.double(), want[..., n1:]) < cpu_linear.SPLIT_TOLERANCE
    plain = cpu_linear.split_linear(x, weight, None, cpu_linear.pack(weight))
    assert torch.equal(first[:, gap:], plain[..., :n1]) and torch.equal(rest, plain[..., n1:])  # same products


@needs_amx
def test_mamba2_projection_writes_the_conv_input_in_place_with_the_same_results(monkeypatch):
    """In a bf16 scoring run the stage-0 and stage-1 encoders' Mamba2 in_proj writes xBC behind the conv's
    history rows (Linear.split_into): bitwise the same log-probabilities as the projection followed by a copy, in
    one pass and continued from a state (prefix reuse)."""
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    model = DNAHNet(get_preset("cpu")).eval()
    ids = torch.randint(0, 4, (2, 1500))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 1200:] = False
    taken = []
    real = Linear.split_into

    def run() -> list[torch.Tensor]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            whole = model(ids, mask).logits
            state: dict = {}
            first = model(ids[:, :700], mask[:, :700], state).logits
            rest = model(ids[:, 700:], mask[:, 700:], state).logits
        return [whole, torch.cat([first, rest], 1)]

    monkeypatch.setattr(Linear, "split_into", lambda *a: taken.append(1) or real(*a))
    fused = run()
    assert len(taken) >= 3 * 8  # stage 0's eight Mamba2 layers at least, in each of the three calls
    monkeypatch.setattr(Linear, "split_into", lambda *a: None)
    copied = run()
    for f, c in zip(fused, copied):
        assert torch.equal(f, c)
