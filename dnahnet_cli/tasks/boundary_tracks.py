"""Per-nucleotide boundary probabilities of every stage, mapped back to input coordinates (for `segment`).

Stage s > 0 can only cut where stage s-1 did, so its track holds p_s at the nucleotides that start a
stage-(s-1) chunk and 0 elsewhere. The forced p = 1 of the first position falls on the BOS token and
never appears in a track.
"""

from __future__ import annotations

import numpy as np
import torch

from dnahnet_cli.errors import DnahnetRuntimeError
from dnahnet_cli.model.hnet import StageRouting


def stage_tracks(stages: list[StageRouting], row: int, n_tokens: int, device: torch.device) -> list[np.ndarray]:
    """Tracks (outer stage first) of batch row `row`, each of length n_tokens - 1 (BOS dropped)."""
    position = torch.arange(n_tokens, device=device)  # token positions of the current stage
    tracks = []
    for routing in stages:
        valid = routing.mask[row]
        p = routing.boundary_prob[row][valid].float()
        if not torch.isfinite(p).all():  # NaN compares False with 0.5: an empty segmentation, not an error
            raise DnahnetRuntimeError("the model produced NaN boundary probabilities (damaged weights, or an "
                                      "overflow at this precision: try --dtype float32)")
        track = torch.zeros(n_tokens, device=device)
        track[position[: p.shape[0]]] = p
        tracks.append(track[1:].cpu().numpy())
        chunk = routing.chunk_index[row][: int(routing.boundary_mask[row].sum())]
        position = position[chunk]
    return tracks
