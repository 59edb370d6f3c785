"""Accuracy gates of the CPU fast path: --dtype auto (bf16 autocast on an AMX/AVX512-BF16 CPU) against the
fp32 reference, with the shipped reference model on the E. coli K-12 genome shipped in examples/.

Skipped where the CPU has no native bf16 matmul (auto then *is* fp32); docs/benchmarks.md records the
numbers these tests print.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.model.precision import cpu_bf16_features
from dnahnet_cli.tasks.engine import LikelihoodEngine

pytestmark = pytest.mark.skipif(not cpu_bf16_features(), reason="CPU has no native bf16 matmul: auto is fp32")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GENOME = EXAMPLES / "ecoli_k12.fa.gz"
CHROM = "NC_000913.3"
FLANK = 128  # SNV windows of 2 * FLANK + 1 nt (the gate is about precision, not context length)


@pytest.fixture(scope="module")
def engines():
    return (LikelihoodEngine.load(None, device="cpu", dtype="float32", batch_size=64),
            LikelihoodEngine.load(None, device="cpu", dtype="auto", batch_size=64))


@pytest.fixture(scope="module")
def genome():
    return Genome.open(str(GENOME), quiet=True)


def _snv_pairs(genome: Genome, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    length = genome.length(CHROM)
    refs, alts = [], []
    while len(refs) < n:
        pos = int(rng.integers(FLANK, length - FLANK - 1))
        ref = genome.fetch(CHROM, pos - FLANK, pos + FLANK + 1).upper()
        if ref[FLANK] not in "ACGT":
            continue
        alt_base = rng.choice([b for b in "ACGT" if b != ref[FLANK]])
        alt = ref[:FLANK] + alt_base + ref[FLANK + 1:]
        for r, a in ((ref, alt), (reverse_complement(ref), reverse_complement(alt))):  # both strands, as the CLI
            refs.append(r)
            alts.append(a)
    return refs, alts


def _scores(engine, refs, alts) -> np.ndarray:
    ll_ref, ll_alt = engine.loglik_pairs(refs, alts)
    dll = ll_alt - ll_ref
    return (dll[0::2] + dll[1::2]) / 2


def test_500_random_snvs_rank_identically(engines, genome):
    fp32, auto = engines
    assert auto.dtype == "bfloat16"
    refs, alts = _snv_pairs(genome, 500)
    s32, s16 = _scores(fp32, refs, alts), _scores(auto, refs, alts)
    rho = spearmanr(s32, s16).statistic
    diff = np.abs(s32 - s16)
    print(f"500 SNVs: Spearman {rho:.5f}, max |diff| {diff.max():.4g} nats, median {np.median(diff):.3g}, "
          f"score spread (sd) {s32.std():.3g}")
    assert rho >= 0.999


def test_example_vcf_scores(engines):
    import pysam

    fp32, auto = engines
    fasta = pysam.FastaFile(str(GENOME))
    refs, alts = [], []
    half = fp32.window // 2
    for rec in pysam.VariantFile(str(EXAMPLES / "ecoli_k12_ampR_isolate.vcf")):
        start = rec.pos - 1 - half
        ref = fasta.fetch(rec.chrom, start, start + fp32.window).upper()
        alt = ref[:half] + rec.alts[0] + ref[half + 1:]
        refs += [ref, reverse_complement(ref)]
        alts += [alt, reverse_complement(alt)]
    s32, s16 = _scores(fp32, refs, alts), _scores(auto, refs, alts)
    print(f"example VCF ({len(s32)} SNVs, window {fp32.window}): max |diff| {np.abs(s32 - s16).max():.4g} nats")
    assert spearmanr(s32, s16).statistic >= 0.999


def test_sequence_loglik_within_1e3_nats_per_nt(engines, genome):
    fp32, auto = engines
    rng = np.random.default_rng(1)
    n = fp32.window
    seqs = [genome.fetch(CHROM, int(s), int(s) + n).upper() for s in rng.integers(0, genome.length(CHROM) - n, 16)]
    per_nt = np.abs(fp32.loglik(seqs) - auto.loglik(seqs)) / n
    print(f"per-sequence |dLL| per nt: max {per_nt.max():.3g}")
    assert per_nt.max() <= 1e-3


def test_chunk_boundaries_identical_away_from_threshold(engines, genome):
    fp32, auto = engines
    seqs = [genome.fetch(CHROM, s, s + fp32.window).upper() for s in (0, 1_000_000, 2_500_000, 4_000_000)]
    flips = ambiguous = total = 0
    for t32, t16 in zip(fp32.boundaries(seqs), auto.boundaries(seqs)):
        for p32, p16 in zip(t32, t16):
            cut32, cut16 = p32 > 0.5, p16 > 0.5
            near = np.abs(p32 - 0.5) < 1e-2
            flips += int(np.sum((cut32 != cut16) & ~near))
            ambiguous += int(np.sum((cut32 != cut16) & near))
            total += int(cut32.sum())
    print(f"boundaries: {total} fp32 cuts, {ambiguous} flips with |p-0.5| < 1e-2, {flips} elsewhere")
    assert flips == 0
