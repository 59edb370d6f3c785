"""Prefix reuse (tasks/prefix_reuse.py) is a fast path: REF/ALT totals from one REF pass plus ALT suffixes must
equal scoring every window in full, for every model family and every kind of ALT (SNV at the first or last base,
insertion, deletion, a replaced block, ALT == REF, ALT a prefix of REF), whatever the batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.model.hnet import RoutingModule
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.tasks.batching import length_batches
from dnahnet_cli.tasks.engine import LikelihoodEngine

GENOME = Path(__file__).resolve().parents[1] / "examples" / "ecoli_k12.fa.gz"
CASSETTE = "TAATAATAATAGTGA"
# fp32 totals over ~300 positions computed along two different paths (one pass vs state + suffix): the observed
# gap is <= 2e-6 nats over all five families; 1e-4 leaves room for other BLAS builds and still catches any
# misplaced or missing log-probability (those are ~1 nat)
ATOL = 1e-4


def _pairs(n_refs: int = 6, length: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    genome = Genome.open(str(GENOME), quiet=True)
    chrom = genome.names[0]
    rng = np.random.default_rng(seed)
    refs, alts = [], []
    for _ in range(n_refs):
        start = int(rng.integers(0, genome.length(chrom) - length))
        ref = genome.fetch(chrom, start, start + length).upper()
        mid = int(rng.integers(20, length - 40))
        snv = lambda p: ref[:p] + ("A" if ref[p] != "A" else "C") + ref[p + 1:]  # noqa: E731
        for alt in (snv(0), snv(length - 1), snv(mid),
                    ref[:mid] + "GATTACA" + ref[mid:],  # insertion: ALT longer
                    ref[:mid] + ref[mid + 9:],  # deletion: ALT shorter
                    ref[:mid] + CASSETTE + ref[mid + len(CASSETTE):],  # replacement, as essentiality does
                    ref, ref[: length - 50],  # identical; a prefix of REF
                    ref + "ACGTA"):  # REF a prefix of ALT: once a KeyError (no REF phase ends there)
            refs.append(ref)
            alts.append(alt)
    order = rng.permutation(len(refs))  # pairs of one REF need not be adjacent
    return [refs[i] for i in order], [alts[i] for i in order]


def _model(preset: str) -> DNAHNet:
    torch.manual_seed(0)
    model = DNAHNet(get_preset(preset)).eval()
    for module in model.modules():  # routers off the identity, so boundaries differ by row and position
        if isinstance(module, RoutingModule):
            module.q_proj.weight.data += 0.5 * torch.randn_like(module.q_proj.weight)
    return model


@pytest.mark.parametrize("preset", ["shipped", "tiny-1stage", "tiny-tpp", "tiny-mamba2", "tiny-sh2"])
def test_prefix_reuse_equals_full_scoring(preset):
    refs, alts = _pairs()
    if preset == "shipped":
        reuse = LikelihoodEngine.load(None, device="cpu", dtype="float32", batch_size=4)
        model = reuse.model
    else:
        model = _model(preset)
        reuse = LikelihoodEngine(model, device="cpu", batch_size=4)
    full = LikelihoodEngine(model, device="cpu", batch_size=4, prefix_reuse=False)
    ref_r, alt_r = reuse.loglik_pairs(refs, alts)
    ref_f, alt_f = full.loglik_pairs(refs, alts)
    print(f"{preset}: max |REF diff| {np.abs(ref_r - ref_f).max():.3g}, max |ALT diff| "
          f"{np.abs(alt_r - alt_f).max():.3g} nats (totals ~{np.abs(ref_f).mean():.0f})")
    np.testing.assert_allclose(ref_r, ref_f, rtol=0, atol=ATOL)
    np.testing.assert_allclose(alt_r, alt_f, rtol=0, atol=ATOL)
    same = np.array([a == r for r, a in zip(refs, alts)])
    np.testing.assert_array_equal(alt_r[same], ref_r[same])  # ALT == REF: the very same numbers


def test_cached_full_attention_in_query_blocks_is_exact(monkeypatch):
    """Suffixes attend the growing cache in query blocks, each against the keys it can see: with blocks of 16
    (many per suffix, of several rows at different positions) the totals still equal full scoring."""
    from dnahnet_cli.model.layers import CausalSelfAttention

    refs, alts = _pairs(n_refs=3)
    model = _model("tiny-tpp")
    full = LikelihoodEngine(model, device="cpu", batch_size=4, prefix_reuse=False).loglik_pairs(refs, alts)
    monkeypatch.setattr(CausalSelfAttention, "CACHED_QUERY_BLOCK", 16)
    blocked = LikelihoodEngine(model, device="cpu", batch_size=4).loglik_pairs(refs, alts)
    for got, want in zip(blocked, full):
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_batches_group_equal_lengths_by_split_point():
    lengths = [100, 100, 100, 100, 50, 100]
    splits = [90, 10, 50, 10, 5, 90]
    batches = list(length_batches(lengths, batch_size=2, max_tokens=10_000, tiebreak=splits))
    assert batches == [[4, 1], [3, 2], [0, 5]]  # by length, then by where each row splits
    assert list(length_batches(lengths, 2, 10_000)) == [[4, 0], [1, 2], [3, 5]]  # no tiebreak: stable by length
    assert sorted(i for b in length_batches(lengths, 3, 250, splits) for i in b) == list(range(6))
    assert all(len(b) * max(lengths[i] for i in b) <= 250 for b in length_batches(lengths, 3, 250, splits))


def test_alt_extending_ref_keeps_the_shared_part_exact_under_bf16():
    """An ALT that is REF plus more bases is scored whole; its REF part once came from that other pass too, so
    under bf16 it no longer cancelled against REF (1.6e-3 nats of error instead of ~1e-4)."""
    from dnahnet_cli.model.precision import cpu_bf16_features

    if not cpu_bf16_features():
        pytest.skip("this CPU has no native bf16 matmul")
    refs, _ = _pairs(n_refs=4, length=2000)
    refs = sorted(set(refs))
    alts = [r + "ACGTA" for r in refs]
    reuse = LikelihoodEngine.load(None, device="cpu", dtype="bfloat16", batch_size=4)
    ref_ll, alt_ll = reuse.loglik_pairs(refs, alts)
    # ALT - REF must be exactly the extra bases' log-probabilities of the whole-ALT bf16 pass: the bug put REF's
    # part of that pass against REF's own pass, whose bf16 rounding differs (9.5e-4 nats then). Comparing with
    # fp32 instead (as this test once did) measures the 5 extra bases' bf16 rounding, which depends on the
    # model (1.7e-4 with the model of the fix, 5.4e-4 with v9), not the bug.
    extra = np.array([np.nansum(lp[len(r):]) for r, lp in zip(refs, reuse.logprobs(alts))])
    print(f"max |error| {np.abs(alt_ll - ref_ll - extra).max():.2e} nats")
    np.testing.assert_allclose(alt_ll - ref_ll, extra, rtol=0, atol=1e-4)  # 2e-13 here; other bf16 GEMMs may round
    # differently between the two calls' batch shapes, but not by the 9e-4 of the bug
    exact = LikelihoodEngine(reuse.model, device="cpu", dtype="float32", batch_size=4)
    fp32 = np.array([np.nansum(lp[len(r):]) for r, lp in zip(refs, exact.logprobs(alts))])
    np.testing.assert_allclose(extra, fp32, rtol=0, atol=5e-3)  # and that is within bf16 rounding of fp32
