"""The StripedHyena2-style baseline as a whole model: causal, padding-invariant, incremental == full, its FLOPs
in the analytic model, and usable by `dnahnet train` and the scoring commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dnahnet_cli.genomics.alphabet import BOS
from dnahnet_cli.model import kernels
from dnahnet_cli.model.flops import forward_flops
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DNAHNet(get_preset("tiny-sh2")).eval()  # fp32 (norms and the residual stream are fp32 by design)


def _ids(b: int, length: int) -> torch.Tensor:
    ids = torch.randint(2, 6, (b, length))
    ids[:, 0] = BOS
    return ids


def test_layout_stripes_all_three_hyena_operators_and_attention(model):
    kinds = [type(block.mixer).__name__ + getattr(block.mixer, "kind", "") for block in model.backbone.main.layers]
    assert kinds == ["HyenaMixerse", "HyenaMixermr", "HyenaMixerli", "CausalSelfAttention"] * 2


def test_no_position_sees_the_future(model):
    ids = _ids(1, 80)
    with torch.no_grad():
        base = model(ids).logits
        for t in (5, 40, 79):
            changed = ids.clone()
            changed[0, t] = 2 + (int(ids[0, t]) - 1) % 4  # another nucleotide
            out = model(changed).logits
            assert torch.allclose(out[:, :t], base[:, :t], atol=1e-5, rtol=0), t  # LI FFT roundoff reaches every position
            assert not torch.allclose(out[:, t:], base[:, t:])


def test_right_padding_invariant(model):
    ids = _ids(3, 60)
    lengths = torch.tensor([60, 33, 7])
    mask = torch.arange(60)[None] < lengths[:, None]
    with torch.no_grad():
        batched = model(ids.masked_fill(~mask, 0), mask).logits
        for r, n in enumerate(lengths.tolist()):
            alone = model(ids[r: r + 1, :n]).logits
            assert torch.allclose(batched[r, :n], alone[0], atol=1e-5)


def test_incremental_equals_full(model):
    ids = _ids(2, 40)
    with torch.no_grad():
        full = model(ids).logits
        state: dict = {}
        parts = [model(ids[:, :12], state=state).logits]
        for start in range(12, 40, 4):
            parts.append(model(ids[:, start: start + 4], state=state).logits)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-4)


def test_flop_model_matches_the_counter():
    model = DNAHNet(get_preset("tiny-sh2")).eval()
    ids = _ids(1, 256)
    kernels.set_kernels("torch")  # the reference path: the counter cannot see compiled kernels or oneDNN's GEMM
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(ids)
    finally:
        kernels.set_kernels("auto")
    report = forward_flops(model.config, 256, positions=[256])
    assert report.fft > 0 and report.attention > 0
    assert counter.get_total_flops() == pytest.approx(report.total - report.attention - report.conv - report.fft,
                                                      rel=1e-9)


def test_train_and_score_from_the_cli(tmp_path):
    cli = [sys.executable, "-m", "dnahnet_cli", "--threads", "1"]
    fa = EXAMPLES / "ecoli_k12_20kb.fa"
    res = subprocess.run([*cli, "train", "--preset", "tiny-sh2", "--data", str(fa), "--val", str(fa), "--seq-len", "128",
                          "--batch-size", "2", "--steps", "3", "--val-windows", "4", "--out", str(tmp_path / "run"),
                          "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    final = tmp_path / "run" / "final"
    res = subprocess.run([*cli, "score-seqs", str(fa), "--model", str(final), "--window", "128", "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines() if not line.startswith("##")]
    assert len(rows) == 2 and rows[0][0].startswith("#")  # header + the one record
