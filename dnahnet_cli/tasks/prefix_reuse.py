"""REF/ALT log-likelihood totals with prefix reuse.

An autoregressive model gives REF and ALT identical log-probabilities before the first differing base. So
each unique REF window runs once, in pieces split at the first differing base of its ALTs; the model state
at each split is kept, and every ALT runs only its own suffix from there (an ALT that extends REF at its end
is scored whole, and only its extra bases are taken from that pass). In fp32 the totals equal scoring both
windows in full to rounding, which grows with the window (`python -m pytest -s tests/test_prefix_reuse.py` prints
the gap for 300-nt windows of every model family and kind of ALT). Under a bf16 autocast they
agree only to bf16 rounding, since the two orders of arithmetic round differently in the bf16 layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from dnahnet_cli.genomics.alphabet import BOS, PAD

if TYPE_CHECKING:
    from dnahnet_cli.tasks.engine import LikelihoodEngine


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], obj):
    """Apply fn to every tensor of a nested dict/list model state (e.g. select or copy batch rows)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tree_map(fn, v) for v in obj]
    return obj


def first_difference(ref: np.ndarray, alt: np.ndarray) -> int:
    """Index of the first base where ALT differs from REF (the shorter length if one is a prefix)."""
    n = min(len(ref), len(alt))
    diff = np.flatnonzero(ref[:n] != alt[:n])
    return int(diff[0]) if diff.size else n


@dataclass
class _Row:
    ids: np.ndarray  # BOS + encoded bases
    splits: list[int]  # token counts at which to snapshot the state (ascending, last = len(ids))


@dataclass
class _Snapshot:
    state: dict  # model state after the REF prefix (all rows of the phase)
    head_logits: torch.Tensor  # (4,) prediction of the first base after the prefix


class PrefixReuseScorer:
    """Scores (REF, ALT) pairs through an engine's forward passes, sharing each REF prefix."""

    def __init__(self, engine: "LikelihoodEngine"):
        self.engine = engine

    def loglik_pairs(self, refs: Sequence[str], alts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        eng = self.engine
        unique: dict[str, int] = {}
        ref_of = [unique.setdefault(r, len(unique)) for r in refs]
        self.ref_enc = [eng.encode(r) for r in unique]
        self.alts = list(alts)
        self.alt_enc = [eng.encode(a) for a in alts]
        self.first_diff = [first_difference(self.ref_enc[ref_of[i]], a) for i, a in enumerate(self.alt_enc)]
        self.ll_ref, self.ll_alt = np.zeros(len(refs)), np.zeros(len(refs))
        self.pairs_of_ref: list[list[int]] = [[] for _ in unique]
        for i, u in enumerate(ref_of):
            self.pairs_of_ref[u].append(i)
        # equal-length REFs (essentiality windows, SNV windows) batch by where their first ALT diverges: a batch
        # runs phase by phase padded to its longest segment, so mixed split points would pad up to ~1.5x the work
        first_split = [min(self.first_diff[i] for i in pairs) for pairs in self.pairs_of_ref]  # every REF has a pair
        for batch in eng.batches([len(e) + 1 for e in self.ref_enc], first_split):
            ref_lp, snapshots = self._run_refs(batch)
            self._continue_alts(batch, ref_lp, snapshots)
        return self.ll_ref, self.ll_alt

    # -- step 1: each REF once, in phases split where its ALTs diverge ---------------------------
    def _plan_rows(self, batch: list[int]) -> list[_Row]:
        rows = []
        for u in batch:
            ids = np.concatenate([[BOS], self.ref_enc[u]]).astype(np.int64)
            cut = {self.first_diff[i] + 1 for i in self.pairs_of_ref[u] if self.first_diff[i] < len(self.alt_enc[i])}
            rows.append(_Row(ids, sorted(c for c in cut if c < len(ids)) + [len(ids)]))
        return rows

    def _run_refs(self, batch: list[int]) -> tuple[list[np.ndarray], dict[tuple[int, int], _Snapshot]]:
        """Per-base REF log-probabilities, and the state snapshot at every split: {(row, split): _Snapshot}."""
        eng = self.engine
        rows = self._plan_rows(batch)
        n_phases = max(len(r.splits) for r in rows)
        state: dict = {}
        ref_lp = [np.full(len(r.ids) - 1, np.nan) for r in rows]
        snapshots: dict[tuple[int, int], _Snapshot] = {}
        for phase in range(n_phases):
            segments = []
            for r in rows:
                lo = r.splits[phase - 1] if 0 < phase <= len(r.splits) else (0 if phase == 0 else len(r.ids))
                hi = r.splits[phase] if phase < len(r.splits) else len(r.ids)
                segments.append((lo, hi))
            ids, mask = eng.pad([r.ids[lo:hi] for r, (lo, hi) in zip(rows, segments)])
            logits = eng.forward(ids, mask, state).logits
            nxt = np.full(ids.shape, PAD, dtype=np.int64)  # the token each position predicts
            for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                following = r.ids[lo + 1: hi + 1]
                nxt[k, : len(following)] = following
            lp = eng.token_logprobs(logits, torch.from_numpy(nxt).to(eng.device)).cpu().numpy()
            for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                n_pred = min(hi, len(r.ids) - 1) - lo  # the last token predicts past the end
                if n_pred > 0:
                    ref_lp[k][lo: lo + n_pred] = lp[k, :n_pred]
            if phase < n_phases - 1:
                snap = tree_map(lambda t: t.clone(), state)
                for k, (r, (lo, hi)) in enumerate(zip(rows, segments)):
                    if phase < len(r.splits) - 1 and hi > lo:
                        snapshots[(k, hi)] = _Snapshot(snap, logits[k, hi - lo - 1].clone())
        for k, u in enumerate(batch):
            total = np.nansum(ref_lp[k])
            for i in self.pairs_of_ref[u]:
                self.ll_ref[i] = total
        return ref_lp, snapshots

    # -- step 2: every ALT from the snapshot at its first difference -----------------------------
    def _continue_alts(self, batch: list[int], ref_lp: list[np.ndarray],
                       snapshots: dict[tuple[int, int], _Snapshot]) -> None:
        jobs: dict[int, list[tuple[int, int]]] = {}  # id(snapshot state) -> [(row, pair)], batched per phase
        extends: list[tuple[int, int]] = []  # ALT = REF + more bases: no REF phase ends where it diverges
        for k, u in enumerate(batch):
            for i in self.pairs_of_ref[u]:
                f, alt = self.first_diff[i], self.alt_enc[i]
                if f >= len(alt):  # ALT is a prefix of REF
                    self.ll_alt[i] = np.nansum(ref_lp[k][: len(alt)])
                    continue
                if f >= len(self.ref_enc[u]):
                    extends.append((k, i))
                    continue
                jobs.setdefault(id(snapshots[(k, f + 1)].state), []).append((k, i))
        if extends:  # scored whole, but the shared part is REF's own numbers, so it cancels in ALT - REF
            whole = self.engine.logprobs([self.alts[i] for _, i in extends])
            for (k, i), lp in zip(extends, whole):
                self.ll_alt[i] = np.nansum(ref_lp[k]) + np.nansum(lp[len(ref_lp[k]):])
        size = self.engine.batch_size
        for job in jobs.values():
            for start in range(0, len(job), size):
                self._run_suffixes(job[start: start + size], ref_lp, snapshots)

    def _run_suffixes(self, job: list[tuple[int, int]], ref_lp: list[np.ndarray],
                      snapshots: dict[tuple[int, int], _Snapshot]) -> None:
        eng = self.engine
        rows = torch.tensor([k for k, _ in job], device=eng.device)
        snap = snapshots[(job[0][0], self.first_diff[job[0][1]] + 1)].state
        state = tree_map(lambda t: t.index_select(0, rows), snap)
        suffixes = [self.alt_enc[i][self.first_diff[i]:].astype(np.int64) for _, i in job]
        ids, mask = eng.pad(suffixes)
        logits = eng.forward(ids, mask, state).logits
        for r, (k, i) in enumerate(job):
            f, alt = self.first_diff[i], self.alt_enc[i]
            head = snapshots[(k, f + 1)].head_logits
            first = eng.token_logprobs(head[None], torch.tensor([int(alt[f])], device=eng.device))
            rest = eng.token_logprobs(logits[r, : len(alt) - f - 1], ids[r, 1: len(alt) - f])
            values = torch.cat([first, rest]).cpu().numpy()
            self.ll_alt[i] = np.nansum(ref_lp[k][:f]) + np.nansum(values)
