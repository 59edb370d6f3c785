"""Likelihood engine: batched log-likelihoods of nucleotide sequences, the basis of every scoring command.

* `logprobs`: log p(base_i | BOS, bases < i) for every base (natural log; NaN where the base is N/IUPAC).
* `logprobs_long`: the same for sequences longer than the window, through overlapping windows that give
  every scored base at least `context` bases of left context.
* `loglik_pairs`: REF/ALT totals with prefix reuse. An autoregressive model gives REF and ALT identical
  log-probabilities before the first differing base, so each unique REF window is run once, in pieces
  split at the first differing base of its ALTs; the model state at each split is kept and every ALT only
  runs its own suffix from there.
* `boundaries`: per-nucleotide boundary probabilities of every stage (for `segment`).
Results are deterministic; the model stays fp32 and lower precision comes from autocast.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from . import __version__
from .alphabet import BOS, PAD, encode, target_classes
from .checkpoint import load_checkpoint
from .default_model import resolve_model
from .errors import DnahnetError
from .model import DNAHNet

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; a CUDA request without a GPU is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DnahnetError(f"invalid --device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DnahnetError(f"--device {device}: no CUDA GPU is available (use --device cpu)")
    return dev


def _kernel_summary(device: torch.device) -> str:
    """Which implementation ran (recorded in outputs so a kernel or precision change is never silent)."""
    from .kernels import active_kernels

    if device.type != "cuda":
        return "torch"
    return ",".join(f"{k}={v}" for k, v in active_kernels().items() if k != "mode")


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], obj):
    """Apply fn to every tensor of a nested dict/list model state (e.g. select or copy batch rows)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tree_map(fn, v) for v in obj]
    return obj


@dataclass
class _Row:
    ids: np.ndarray  # BOS + encoded bases
    splits: list[int]  # token counts at which to snapshot the state (ascending, last = len(ids))


class LikelihoodEngine:
    """Scores sequences with a DNAHNet; see the module docstring."""

    def __init__(self, model: DNAHNet, provenance: dict | None = None, device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 16, max_tokens: int = 65536, prefix_reuse: bool = True):
        if dtype not in DTYPES:
            raise DnahnetError(f"invalid --dtype {dtype!r} (choose {', '.join(DTYPES)})")
        if batch_size < 1 or max_tokens < 2:
            raise DnahnetError("--batch-size must be >= 1 and --max-tokens >= 2")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.dtype = dtype
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.prefix_reuse = prefix_reuse  # False: score every REF and ALT window in full (benchmark control)
        self.window = int(model.config.max_seq_len)
        self.provenance = {"dnahnet_version": __version__, "precision": dtype, "device": str(self.device),
                           "kernels": _kernel_summary(self.device), **(provenance or {})}

    @classmethod
    def load(cls, model_dir: str | Path | None, device: str = "cpu", dtype: str = "float32", batch_size: int = 16,
             max_tokens: int = 65536) -> "LikelihoodEngine":
        """Load a checkpoint directory; None means the reference model shipped with the package."""
        model_dir = resolve_model(model_dir)
        model, meta = load_checkpoint(model_dir, "cpu")
        prov = {"model": str(model_dir), "sha256": meta["sha256"], "preset": meta.get("preset", model.config.name)}
        return cls(model, prov, device, dtype, batch_size, max_tokens)

    # -- plumbing ---------------------------------------------------------------------------------
    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

    def _batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Indices grouped by similar length, each batch within batch_size rows and max_tokens tokens."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batch: list[int] = []
        for i in order:
            longest = max([lengths[j] for j in batch] + [lengths[i]])
            if batch and (len(batch) >= self.batch_size or longest * (len(batch) + 1) > self.max_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _pad(self, arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(1, max(len(a) for a in arrays))
        ids = np.full((len(arrays), width), PAD, dtype=np.int64)
        for r, a in enumerate(arrays):
            ids[r, : len(a)] = a
        ids_t = torch.from_numpy(ids).to(self.device)
        lengths = torch.tensor([len(a) for a in arrays], device=self.device)
        return ids_t, torch.arange(width, device=self.device)[None, :] < lengths[:, None]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, state: dict | None = None):
        with torch.inference_mode(), self._autocast():
            return self.model(ids, mask, state)

    @staticmethod
    def _encode(seq: str) -> np.ndarray:
        try:
            return encode(seq)
        except ValueError as exc:
            raise DnahnetError(f"sequence cannot be scored: {exc}") from None

    @staticmethod
    def _token_logprobs(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
        """log p(next token) from (…, 4) logits; NaN where the next token is not A/C/G/T."""
        logp = torch.log_softmax(logits.double(), dim=-1)
        classes = target_classes(next_ids)
        picked = logp.gather(-1, classes.clamp(min=0)[..., None])[..., 0]
        return torch.where(classes >= 0, picked, torch.full_like(picked, float("nan")))

    # -- public API -------------------------------------------------------------------------------
    def logprobs(self, seqs: Sequence[str]) -> list[np.ndarray]:
        """Per-base log-probabilities (float64; NaN at N/IUPAC bases), one array per sequence."""
        encoded = [np.concatenate([[BOS], self._encode(s)]).astype(np.int64) for s in seqs]
        out: list[np.ndarray] = [np.empty(0)] * len(seqs)
        for batch in self._batches([len(e) for e in encoded]):
            ids, mask = self._pad([encoded[i] for i in batch])
            logits = self._forward(ids, mask).logits
            lp = self._token_logprobs(logits[:, :-1], ids[:, 1:]).cpu().numpy()
            for r, i in enumerate(batch):
                out[i] = lp[r, : len(encoded[i]) - 1].copy()
        return out

    def loglik(self, seqs: Sequence[str]) -> np.ndarray:
        """Total log-likelihood per sequence (natural log, N/IUPAC bases skipped)."""
        return np.array([np.nansum(lp) for lp in self.logprobs(seqs)])

    def logprobs_long(self, seq: str, window: int | None = None, context: int | None = None) -> np.ndarray:
        """Per-base log-probabilities of a sequence of any length through overlapping windows.

        Window k scores bases [s_k, s_k + window - context) and starts `context` bases earlier, so every
        base after the first window is predicted from at least `context` bases of left context.
        """
        window = window or self.window
        context = window // 2 if context is None else context
        if not 0 <= context < window:
            raise DnahnetError("context must be in [0, window)")
        if len(seq) <= window:
            return self.logprobs([seq])[0]
        step = window - context
        starts = list(range(0, len(seq), step))
        pieces = [seq[max(0, s - context): s + step] if s else seq[:window] for s in starts]
        scored = self.logprobs(pieces)
        out = np.empty(len(seq))
        for s, piece, lp in zip(starts, pieces, scored):
            if s == 0:
                out[: len(piece)] = lp
            else:
                skip = s - max(0, s - context)
                out[s: s + len(piece) - skip] = lp[skip:]
        return out

    def loglik_pairs(self, refs: Sequence[str], alts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Total log-likelihoods (ll_ref, ll_alt) for each pair, reusing the shared prefix (module doc)."""
        if len(refs) != len(alts):
            raise ValueError("refs and alts must have the same length")
        if not self.prefix_reuse:
            unique_refs = list(dict.fromkeys(refs))
            totals = dict(zip(unique_refs, self.loglik(unique_refs)))
            return np.array([totals[r] for r in refs]), self.loglik(alts)
        unique: dict[str, int] = {}
        ref_of = [unique.setdefault(r, len(unique)) for r in refs]
        ref_enc = [self._encode(r) for r in unique]
        alt_enc = [self._encode(a) for a in alts]
        first_diff = []
        for i, a in enumerate(alt_enc):
            r = ref_enc[ref_of[i]]
            n = min(len(r), len(a))
            diff = np.flatnonzero(r[:n] != a[:n])
            first_diff.append(int(diff[0]) if diff.size else n)
        ll_ref = np.zeros(len(refs))
        ll_alt = np.zeros(len(refs))
        pairs_of_ref: list[list[int]] = [[] for _ in unique]
        for i, u in enumerate(ref_of):
            pairs_of_ref[u].append(i)
        for batch in self._batches([len(e) + 1 for e in ref_enc]):
            self._score_ref_batch(batch, ref_enc, alt_enc, pairs_of_ref, first_diff, ll_ref, ll_alt)
        return ll_ref, ll_alt

    def _score_ref_batch(self, batch, ref_enc, alt_enc, pairs_of_ref, first_diff, ll_ref, ll_alt) -> None:
        rows = []
        for u in batch:
            ids = np.concatenate([[BOS], ref_enc[u]]).astype(np.int64)
            cut = {first_diff[i] + 1 for i in pairs_of_ref[u] if first_diff[i] < len(alt_enc[i])}
            rows.append(_Row(ids, sorted(c for c in cut if c < len(ids)) + [len(ids)]))
        n_phases = max(len(r.splits) for r in rows)
        state: dict = {}
        ref_lp = [np.full(len(r.ids) - 1, np.nan) for r in rows]
        snapshots: dict[tuple[int, int], tuple[int, dict, torch.Tensor]] = {}  # (row, split) -> phase data
        for phase in range(n_phases):
            segments = []
            for r in rows:
                lo = r.splits[phase - 1] if 0 < phase <= len(r.splits) else (0 if phase == 0 else len(r.ids))
                hi = r.splits[phase] if phase < len(r.splits) else len(r.ids)
                segments.append((lo, hi))
            ids, mask = self._pad([r.ids[lo:hi] for r, (lo, hi) in zip(rows, segments)])
            logits = self._forward(ids, mask, state).logits
            nxt = np.full(ids.shape, PAD, dtype=np.int64)  # the token each position predicts
            for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                following = r.ids[lo + 1: hi + 1]
                nxt[k, : len(following)] = following
            lp = self._token_logprobs(logits, torch.from_numpy(nxt).to(self.device)).cpu().numpy()
            for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                n_pred = min(hi, len(r.ids) - 1) - lo  # the last token predicts past the end
                if n_pred > 0:
                    ref_lp[k][lo: lo + n_pred] = lp[k, :n_pred]
            if phase < n_phases - 1:
                snap = tree_map(lambda t: t.clone(), state)
                for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                    if phase < len(r.splits) - 1 and hi > lo:
                        snapshots[(k, hi)] = (k, snap, logits[k, hi - lo - 1].clone())
        for k, u in enumerate(batch):
            total = np.nansum(ref_lp[k])
            for i in pairs_of_ref[u]:
                ll_ref[i] = total
        # ALT continuations from the snapshots, batched per snapshot phase
        jobs: dict[int, list[tuple[int, int]]] = {}
        for k, u in enumerate(batch):
            for i in pairs_of_ref[u]:
                f, alt = first_diff[i], alt_enc[i]
                if f >= len(alt):
                    ll_alt[i] = np.nansum(ref_lp[k][: len(alt)])
                    continue
                jobs.setdefault(id(snapshots[(k, f + 1)][1]), []).append((k, i))
        for job in jobs.values():
            for start in range(0, len(job), self.batch_size):
                self._continue_alts(job[start: start + self.batch_size], snapshots, ref_lp, alt_enc,
                                    first_diff, ll_alt)

    def _continue_alts(self, job, snapshots, ref_lp, alt_enc, first_diff, ll_alt) -> None:
        rows = torch.tensor([k for k, _ in job], device=self.device)
        snap = snapshots[(job[0][0], first_diff[job[0][1]] + 1)][1]
        state = tree_map(lambda t: t.index_select(0, rows), snap)
        suffixes = [alt_enc[i][first_diff[i]:].astype(np.int64) for _, i in job]
        ids, mask = self._pad(suffixes)
        logits = self._forward(ids, mask, state).logits
        for r, (k, i) in enumerate(job):
            f, alt = first_diff[i], alt_enc[i]
            head_logits = snapshots[(k, f + 1)][2]
            first = self._token_logprobs(head_logits[None], torch.tensor([int(alt[f])], device=self.device))
            rest = self._token_logprobs(logits[r, : len(alt) - f - 1], ids[r, 1: len(alt) - f])
            values = torch.cat([first, rest]).cpu().numpy()
            ll_alt[i] = np.nansum(ref_lp[k][:f]) + np.nansum(values)

    def boundaries(self, seqs: Sequence[str]) -> list[list[np.ndarray]]:
        """Per sequence, per stage (outer first): boundary probability at each nucleotide.

        Stage s > 0 can only cut where stage s-1 did, so its track holds p_s at the nucleotides that
        start a stage-(s-1) chunk and 0 elsewhere. The forced p = 1 of the first position falls on the
        BOS token and never appears here.
        """
        encoded = [np.concatenate([[BOS], self._encode(s)]).astype(np.int64) for s in seqs]
        out: list[list[np.ndarray]] = [[] for _ in seqs]
        for batch in self._batches([len(e) for e in encoded]):
            ids, mask = self._pad([encoded[i] for i in batch])
            stages = self._forward(ids, mask).stages
            for r, i in enumerate(batch):
                n = len(encoded[i])
                position = torch.arange(n, device=self.device)  # token positions of the current stage
                tracks = []
                for routing in stages:
                    valid = routing.mask[r]
                    p = routing.boundary_prob[r][valid].float()
                    track = torch.zeros(n, device=self.device)
                    track[position[: p.shape[0]]] = p
                    tracks.append(track[1:].cpu().numpy())
                    chunk = routing.chunk_index[r][: int(routing.boundary_mask[r].sum())]
                    position = position[chunk]
                out[i] = tracks
        return out
