"""Pieces shared by the scoring commands."""

from __future__ import annotations

from typing import Optional


def load_engine(model: Optional[str], device: str, dtype: str, batch_size: int, max_tokens: int):
    """The likelihood engine for --model (None: the shipped default), imported lazily so that input
    errors are reported before torch loads."""
    from ..engine import LikelihoodEngine

    return LikelihoodEngine.load(model, device=device, dtype=dtype, batch_size=batch_size, max_tokens=max_tokens)
