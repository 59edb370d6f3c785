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


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = cpu_linear.linear
    monkeypatch.setattr(cpu_linear, "linear", lambda *a: calls.append(1) or real(*a))
    return calls


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
