"""Per-sequence embeddings: the mean over a sequence's bases of the model's final hidden state.

Why this vector: it is what the next-base head reads, at nucleotide resolution, after the sequence has passed
every stage (encoders, the chunked main network, decoders), so it summarises all of them. Sequences longer than
the window go through the same overlapping windows as per-base log-likelihoods (tiling.py): each base's state
comes from a window that gives it at least `context` bases of left context, and each base counts once. Only sums
are kept, so a whole genome needs memory for one batch of windows, not for its length times the width.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.tasks.batching import budget_ranges
from dnahnet_cli.tasks.tiling import tiles

PIECE_BUDGET = 1 << 20  # bases of windows sent to the engine at once (bounds the memory of the hidden states)


def mean_embeddings(engine, seqs: Sequence[str], window: int, context: int,
                    strands: Sequence[str] = ("forward", "reverse")) -> np.ndarray:
    """(n, d_model) float64: per sequence, the mean over its bases (N included: the state after reading any
    base) of the final hidden state, averaged over `strands` ('reverse' reads the reverse complement); NaN rows
    for empty sequences."""
    out = np.zeros((len(seqs), engine.model.config.d_model[0]))
    for strand in strands:
        oriented = [s if strand == "forward" else reverse_complement(s) for s in seqs]
        pieces = [(i, lo, keep, hi) for i, s in enumerate(oriented) if s for lo, keep, hi in tiles(len(s), window, context)]
        for start, end in budget_ranges([hi - lo for _, lo, _, hi in pieces], PIECE_BUDGET):
            chunk = pieces[start:end]
            sums = engine.hidden_sums([(oriented[i][lo:hi], keep - lo) for i, lo, keep, hi in chunk])
            for (i, *_), row in zip(chunk, sums):
                out[i] += row
    lengths = np.array([len(s) for s in seqs], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / (lengths[:, None] * len(strands))
