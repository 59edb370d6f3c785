"""Sequences longer than the model's window, scored through overlapping windows.

The first window keeps all of its bases; each later window k keeps [s_k, s_k + window - context) and starts
`context` bases earlier, so every base after the first window is predicted from at least `context` bases of left
context, and each base is scored exactly once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dnahnet_cli.errors import DnahnetError


def tiles(length: int, window: int, context: int) -> list[tuple[int, int, int]]:
    """(piece_start, score_from, piece_end) per window: the piece is seq[piece_start:piece_end] and its
    log-probabilities from `score_from` on are kept."""
    if not 0 <= context < window:
        raise DnahnetError("context must be in [0, window)")
    if length <= window:
        return [(0, 0, length)]
    step = window - context
    out = [(0, 0, window)]  # the first window keeps all its bases: each already has all the context there is
    for s in range(window, length, step):
        out.append((s - context, s, min(length, s + step)))
    return out


def tiled_logprobs(score: Callable[[Sequence[str]], list[np.ndarray]], seq: str, window: int,
                   context: int) -> np.ndarray:
    """Per-base log-probabilities of `seq` of any length; `score` maps sequences to per-base arrays (the bases
    along the last axis: (L,), or (k, L) for k values per base)."""
    plan = tiles(len(seq), window, context)
    if len(plan) == 1:
        return score([seq])[0]
    scored = score([seq[lo:hi] for lo, _, hi in plan])
    out = np.empty(scored[0].shape[:-1] + (len(seq),))
    for (lo, keep, hi), lp in zip(plan, scored):
        out[..., keep:hi] = lp[..., keep - lo:]
    return out
