"""Grouping sequences into forward passes: similar lengths together, bounded rows and tokens per pass,
right-padded into one tensor with a validity mask (the model's padding never changes a result)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from dnahnet_cli.genomics.alphabet import PAD


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int,
                   tiebreak: Sequence[int] | None = None) -> Iterator[list[int]]:
    """Indices sorted by length (then by `tiebreak`, e.g. where prefix reuse splits each row, so rows of a batch
    split alike and pad little), cut into batches of <= batch_size rows and <= max_tokens padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tiebreak[i]) if tiebreak is not None else lengths[i])
    batch: list[int] = []
    for i in order:  # ascending, so the newcomer is the longest row of its batch
        if batch and (len(batch) >= batch_size or lengths[i] * (len(batch) + 1) > max_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def budget_ranges(lengths: Sequence[int], budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive index ranges whose total length stays within `budget` (one longer item alone): how much work
    goes to the engine at once when only the memory of a call needs bounding, not the order."""
    lo, total = 0, 0
    for i, n in enumerate(lengths):
        if i > lo and total + n > budget:
            yield lo, i
            lo, total = i, 0
        total += n
    if lo < len(lengths):
        yield lo, len(lengths)


def pad_rows(arrays: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token arrays with PAD: (ids (B, W) int64, mask (B, W) bool of the real tokens)."""
    width = max(1, max(len(a) for a in arrays))
    ids = np.full((len(arrays), width), PAD, dtype=np.int64)
    for r, a in enumerate(arrays):
        ids[r, : len(a)] = a
    lengths = torch.tensor([len(a) for a in arrays], device=device)
    return torch.from_numpy(ids).to(device), torch.arange(width, device=device)[None, :] < lengths[:, None]
