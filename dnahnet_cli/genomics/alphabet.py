"""Nucleotide alphabet and the token ids shared by the model, training and scoring.

Policy (documented in docs/alphabet.md):
  * input is case-insensitive (soft-masked lowercase is read as uppercase);
  * A, C, G, T are the four predicted nucleotides; U is read as T;
  * N and the IUPAC ambiguity codes R Y S W K M B D H V are all encoded as N: the model reads them
    as context but never predicts or scores them (they are masked out of the loss);
  * any other character (gaps, '*', protein letters such as E F I L P Q) is an error.
Every sequence the model sees starts with BOS, so its first nucleotide is predicted too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a tensor is handled: `dnahnet --help` stays fast
    import torch

PAD, BOS, A, C, G, T, N, EOS = range(8)
VOCAB_SIZE = 8
NUCLEOTIDES = "ACGT"
NUCLEOTIDE_IDS = (A, C, G, T)  # the model's output classes 0..3 map to these ids
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"

_ENCODE = np.full(256, 255, dtype=np.uint8)
for _ch, _tok in zip("ACGTU", (A, C, G, T, T)):
    _ENCODE[ord(_ch)] = _tok
    _ENCODE[ord(_ch.lower())] = _tok
for _ch in IUPAC_AMBIGUOUS:
    _ENCODE[ord(_ch)] = N
    _ENCODE[ord(_ch.lower())] = N

_DECODE = np.frombuffer(b"-^ACGTN$", dtype=np.uint8)
_COMPLEMENT_TOKEN = np.arange(VOCAB_SIZE, dtype=np.uint8)
_COMPLEMENT_TOKEN[[A, C, G, T]] = [T, G, C, A]


class AlphabetError(ValueError):
    """Raised when a sequence holds a character outside the nucleotide alphabet."""

    def __init__(self, position: int, char: str):
        super().__init__(f"invalid nucleotide {char!r} at position {position + 1}")
        self.position = position
        self.char = char


def encode(seq: str | bytes) -> np.ndarray:
    """Encode a nucleotide string to uint8 token ids (no BOS). Raises AlphabetError on bad letters."""
    raw = np.frombuffer(seq.encode("ascii", "replace") if isinstance(seq, str) else seq, dtype=np.uint8)
    ids = _ENCODE[raw]
    bad = np.flatnonzero(ids == 255)
    if bad.size:
        pos = int(bad[0])  # "replace" keeps one byte per character, so positions agree with `seq`
        raise AlphabetError(pos, seq[pos] if isinstance(seq, str) else chr(raw[pos]))
    return ids


def decode(ids: np.ndarray | torch.Tensor) -> str:
    """Token ids back to a string (BOS/PAD/EOS shown as ^ - $)."""
    if hasattr(ids, "cpu"):  # a torch.Tensor
        ids = ids.cpu().numpy()
    return _DECODE[np.asarray(ids, dtype=np.int64)].tobytes().decode("ascii")


def reverse_complement_ids(ids: np.ndarray) -> np.ndarray:
    """Reverse complement of encoded nucleotides (N stays N)."""
    return _COMPLEMENT_TOKEN[ids[::-1]]


_RC_TABLE = str.maketrans("ACGTUNacgtunRYSWKMBDHVrykmbdhv", "TGCAANtgcaanYRSWMKVHDByrmkvhdb")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a nucleotide string, IUPAC-aware, case kept."""
    return seq.translate(_RC_TABLE)[::-1]


def with_bos(ids: np.ndarray) -> np.ndarray:
    """Prepend the BOS token that starts every model input."""
    return np.concatenate([np.array([BOS], dtype=np.uint8), ids.astype(np.uint8, copy=False)])


def target_classes(ids: torch.Tensor) -> torch.Tensor:
    """Map token ids to output classes 0..3 (A,C,G,T); -1 for tokens that are never predicted."""
    import torch

    classes = ids.long() - A
    return torch.where((ids >= A) & (ids <= T), classes, torch.full_like(classes, -1))
