"""Analytic FLOP model (dnahnet_cli/model/flops.py) against torch's FlopCounterMode, and the FLOP-ratio claims.

FlopCounterMode counts 0 for CPU scaled_dot_product_attention and for the depthwise conv (shifted
multiply-adds), so the counter is compared with the
model's non-attention part and the attention scores are checked separately (math backend, brute force).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dnahnet_cli.genomics.alphabet import BOS
from dnahnet_cli.model import hnet, kernels
from dnahnet_cli.model.flops import (attention_keys, fixed_ratio_positions, flops_per_nt, forward_flops,
                               train_flops_per_nt, train_step_flops)
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset


def counted(model: DNAHNet, length: int, backend: SDPBackend | None = None) -> tuple[float, list[int]]:
    """FLOPs FlopCounterMode sees in one batch-1 forward of the reference path (the counter cannot see the
    compiled CPU kernels, which run outside torch), and the realised positions per stage. Inner sequences are not
    padded here (hnet.LENGTHS_PER_OCTAVE = 0): the FLOP model counts the model's work at realised positions, and the
    masked slots a whole-window pass adds for GEMM-shape reuse (at most 1/16 more per stage) are not part of it."""
    ids = torch.randint(2, 6, (1, length))
    ids[:, 0] = BOS
    ctx = sdpa_kernel(backend) if backend is not None else torch.autocast("cpu", enabled=False)
    previous, slots = kernels.active_kernels()["mode"], hnet.LENGTHS_PER_OCTAVE
    kernels.set_kernels("torch")
    hnet.LENGTHS_PER_OCTAVE = 0
    try:
        with torch.inference_mode(), ctx, FlopCounterMode(display=False) as counter:
            out = model(ids)
    finally:
        kernels.set_kernels(previous)
        hnet.LENGTHS_PER_OCTAVE = slots
    return counter.get_total_flops(), [length] + [int(s.boundary_mask.sum()) for s in out.stages]


@pytest.mark.parametrize("preset", ["tiny-tpp", "tiny-mamba2"])
@pytest.mark.parametrize("length", [200, 256])
def test_isotropic_models_match_counter_exactly(preset, length):
    model = DNAHNet(get_preset(preset)).eval()
    flops, positions = counted(model, length)
    report = forward_flops(model.config, length, positions=positions, inference_tiles=True)
    assert flops == pytest.approx(report.total - report.attention - report.conv, rel=1e-9)


@pytest.mark.parametrize("preset", ["tiny", "tiny-1stage"])
def test_hnet_models_match_counter_at_realised_positions(preset):
    """Untrained routers; positions per stage are what the run realised (routing, EMA and all stages)."""
    model = DNAHNet(get_preset(preset)).eval()
    flops, positions = counted(model, 300)
    assert positions[1] < 300  # the hierarchy really compressed
    report = forward_flops(model.config, 300, positions=positions, inference_tiles=True)
    assert flops == pytest.approx(report.total - report.attention - report.conv, rel=1e-9)


def test_global_attention_scores_match_math_backend():
    """The math SDPA backend computes the full n x n square, which the counter sees as two bmms:
    4 d n^2 per layer, the 'chinchilla' score term without its softmax."""
    model = DNAHNet(get_preset("tiny-tpp")).eval()
    n, cfg = 128, model.config
    base, _ = counted(model, n)
    math_, _ = counted(model, n, SDPBackend.MATH)
    layers, d = 8, cfg.d_model[0]
    assert math_ - base == pytest.approx(layers * 4 * d * n * n)
    report = forward_flops(cfg, n, positions=[n], convention="chinchilla")
    assert report.attention == pytest.approx(layers * (4 * d * n * n + 3 * cfg.num_heads[0] * n * n))


@pytest.mark.parametrize("n,window", [(1, -1), (10, -1), (10, 0), (10, 3), (10, 9), (10, 20), (257, 63)])
def test_attention_keys_brute_force(n, window):
    brute = sum(1 for i in range(n) for j in range(n) if j <= i and (window < 0 or i - j <= window))
    assert attention_keys(n, window) == brute


def test_executed_is_about_half_of_chinchilla_for_long_global_attention():
    cfg = get_preset("small-tpp")
    ex = forward_flops(cfg, 65536, convention="executed")
    ch = forward_flops(cfg, 65536, convention="chinchilla")
    assert 1.95 < ch.attention / ex.attention < 2.2


def test_dnahnet_flop_ratio_over_transformer_exceeds_3_at_8k():
    """Equal size (within 10%), target ratios (3, 2): dnaHNet needs > 3x fewer FLOPs per nucleotide than
    Transformer++ at 8,192 nt, in both conventions, for the ~20M and ~200M families; 1-stage > 2x."""
    for family in ("small", "base"):
        hnet, tpp, one = get_preset(family), get_preset(f"{family}-tpp"), get_preset(f"{family}-1stage")
        sizes = [sum(p.numel() for p in DNAHNet(c).parameters()) for c in (hnet, tpp)] if family == "small" else None
        if sizes:
            assert abs(sizes[0] / sizes[1] - 1) < 0.1
        for convention in ("executed", "chinchilla"):
            t = flops_per_nt(tpp, 8192, convention=convention)
            assert t / flops_per_nt(hnet, 8192, convention=convention) > 3
            assert t / flops_per_nt(one, 8192, convention=convention) > 2


def test_ratio_grows_with_length_and_realised_ratio_matters():
    hnet, tpp = get_preset("small"), get_preset("small-tpp")
    r8 = flops_per_nt(tpp, 8192) / flops_per_nt(hnet, 8192)
    r64 = flops_per_nt(tpp, 65536) / flops_per_nt(hnet, 65536)
    assert r64 > 2 * r8
    # an untrained router keeps about half the positions: far less saving than the target ratios
    assert flops_per_nt(hnet, 8192, ratios=[2.0, 2.0]) > 1.25 * flops_per_nt(hnet, 8192)


def test_fixed_ratio_positions_and_train_step():
    assert fixed_ratio_positions(8192, [3, 2]) == [8192, 2731, 1366]
    cfg = get_preset("tiny")
    assert train_step_flops(cfg, 1024) == pytest.approx(3 * forward_flops(cfg, 1024).total)
    report = forward_flops(cfg, 1024).to_dict()
    assert report["per_nt"] == pytest.approx(report["total"] / 1024)
    assert report["total"] == pytest.approx(sum(report["per_stage"]) + report["head"])
    # the model card's budget: training FLOPs per nucleotide, at the target ratios unless others are given
    assert train_flops_per_nt(cfg, 2048) == pytest.approx(train_step_flops(cfg, 2048) / 2048)
    assert train_flops_per_nt(cfg, 2048, [2.0, 2.0]) > train_flops_per_nt(cfg, 2048)


def test_benchmark_suite_smoke(tmp_path):
    """bench/run.py end to end at toy sizes: JSON with timings, realised ratios, FLOPs and a summary."""
    import importlib
    import sys
    from pathlib import Path

    bench = str(Path(__file__).resolve().parents[1] / "bench")
    sys.path.insert(0, bench)
    threads = torch.get_num_threads()
    try:
        run = importlib.import_module("run")
        out = tmp_path / "r.json"
        res = run.main(["--sizes", "tiny", "--lengths", "128", "--reps", "1", "--skip", "memory", "--train-length",
                        "128", "--gen-prompt", "16", "--gen-tokens", "3", "--gen-reps", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(bench)
    assert out.exists()
    row = res["sizes"]["tiny"]["scoring"][0]
    hnet = row["variants"]["tiny[fixed]"]
    assert [round(r) for r in hnet["realised_ratio"]] == [3, 2]
    assert hnet["gflop_per_nt"] > 0 and 0 < hnet["achieved_over_floor"]
    assert set(res["sizes"]["tiny"]["train"]["variants"]) == set(row["variants"])
    assert res["sizes"]["tiny"]["generation"]["variants"]["tiny-tpp"]["p99_ms"] > 0
