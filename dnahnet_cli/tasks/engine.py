"""Likelihood engine: batched log-likelihoods of nucleotide sequences, the basis of every scoring command.

* `logprobs`: log p(base_i | BOS, bases < i) for every base (natural log; NaN where the base is N/IUPAC).
* `logprobs_long`: the same for sequences longer than the window (`tiling`).
* `loglik_pairs`: REF/ALT totals, sharing each REF prefix (`prefix_reuse`).
* `boundaries`: per-nucleotide boundary probabilities of every stage (`boundary_tracks`).
The engine owns the model, its device and precision, and the forward pass; batching (`batching`) and the
three uses above live in their own modules. Results are deterministic; the model's weights stay fp32 and
lower precision comes from autocast.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from dnahnet_cli import __version__
from dnahnet_cli.errors import DnahnetError, DnahnetRuntimeError
from dnahnet_cli.genomics.alphabet import BOS, encode, target_classes
from dnahnet_cli.model.checkpoint import load_checkpoint
from dnahnet_cli.model.default_model import resolve_model
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.precision import DTYPE_NAMES, choose_dtype, resolve_device
from dnahnet_cli.tasks.batching import length_batches, pad_rows
from dnahnet_cli.tasks.boundary_tracks import stage_tracks
from dnahnet_cli.tasks.prefix_reuse import PrefixReuseScorer
from dnahnet_cli.tasks.tiling import tiled_logprobs

DTYPES = DTYPE_NAMES  # --dtype names -> torch dtypes (model/precision.py)



def _kernel_summary(device: torch.device, dtype: str) -> str:
    """Which implementation ran (recorded in outputs so a kernel or precision change is never silent)."""
    from dnahnet_cli.model.kernels import active_kernels, cpu_kernels

    if device.type != "cuda":
        return cpu_kernels(bf16=dtype == "bfloat16")
    return ",".join(f"{k}={v}" for k, v in active_kernels().items() if k != "mode")


class LikelihoodEngine:
    """Scores sequences with a DNAHNet; see the module docstring."""

    def __init__(self, model: DNAHNet, provenance: dict | None = None, device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 16, max_tokens: int = 65536, prefix_reuse: bool = True):
        if batch_size < 1 or max_tokens < 2:
            raise DnahnetError("--batch-size must be >= 1 and --max-tokens >= 2")
        self.device = resolve_device(device)
        self.dtype, self.dtype_reason = choose_dtype(dtype, self.device)
        if self.dtype not in DTYPES:
            raise DnahnetError(f"invalid --dtype {dtype!r} (choose auto, {', '.join(DTYPES)})")
        self.model = model.to(self.device).eval()
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.prefix_reuse = prefix_reuse  # False: score every REF and ALT window in full (benchmark control)
        self.window = int(model.config.max_seq_len)
        self.provenance = {"dnahnet_version": __version__, "precision": self.dtype,
                           "precision_reason": self.dtype_reason, "device": str(self.device),
                           "kernels": _kernel_summary(self.device, self.dtype), **(provenance or {})}

    @classmethod
    def load(cls, model_dir: str | Path | None, device: str = "cpu", dtype: str = "float32", batch_size: int = 16,
             max_tokens: int = 65536) -> "LikelihoodEngine":
        """Load a checkpoint directory; None means the reference model shipped with the package."""
        model_dir = resolve_model(model_dir)
        model, meta = load_checkpoint(model_dir, "cpu")
        prov = {"model": str(model_dir), "sha256": meta["sha256"], "config_sha256": meta["config_sha256"],
                "preset": meta.get("preset", model.config.name)}
        if meta.get("name"):
            prov["name"] = meta["name"]
        return cls(model, prov, device, dtype, batch_size, max_tokens)

    def describe(self, window: int | None = None, what: str = "window") -> str:
        """One line for stderr: which model, where, at what precision and window (the command's own `window`,
        named `what`, when it has one, with the training length beside it when the two differ)."""
        p = self.provenance
        n = sum(t.numel() for t in self.model.parameters())
        label = p.get("name") or p.get("model", "model")
        used = window or self.window
        size = f"{what} {used:,} nt" + (f" (trained at {self.window:,})" if used != self.window else "")
        return (f"{label} ({p.get('preset', '?')}, {n / 1e6:.2f}M parameters, sha256 {p.get('sha256', '?')[:12]}) on "
                f"{self.device}, {self.dtype} ({self.dtype_reason}), {size}")

    # -- the forward pass and what every use shares -----------------------------------------------
    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, state: dict | None = None):
        """One inference forward pass (state: None, or a dict to continue from and update)."""
        with torch.inference_mode(), self._autocast():
            return self.model(ids, mask, state)

    def batches(self, lengths: Sequence[int], tiebreak: Sequence[int] | None = None) -> Iterator[list[int]]:
        return length_batches(lengths, self.batch_size, self.max_tokens, tiebreak)

    def pad(self, arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_rows(arrays, self.device)

    @staticmethod
    def encode(seq: str) -> np.ndarray:
        try:
            return encode(seq)
        except ValueError as exc:
            raise DnahnetError(f"sequence cannot be scored: {exc}") from None

    @staticmethod
    def token_logprobs(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
        """log p(next token) from (…, 4) logits; NaN where the next token is not A/C/G/T."""
        logp = torch.log_softmax(logits.double(), dim=-1)
        classes = target_classes(next_ids)
        picked = logp.gather(-1, classes.clamp(min=0)[..., None])[..., 0]
        scored = classes >= 0
        if not torch.isfinite(picked[scored]).all():  # NaN here means N to every caller: a model failure must not
            raise DnahnetRuntimeError("the model produced NaN or infinite log-probabilities (damaged weights, or an "
                                      "overflow at this precision: try --dtype float32)")
        return torch.where(scored, picked, torch.full_like(picked, float("nan")))

    def _with_bos(self, seqs: Sequence[str]) -> list[np.ndarray]:
        return [np.concatenate([[BOS], self.encode(s)]).astype(np.int64) for s in seqs]

    # -- public API -------------------------------------------------------------------------------
    def logprobs(self, seqs: Sequence[str], entropy: bool = False) -> list[np.ndarray]:
        """Per-base log-probabilities (float64; NaN at N/IUPAC bases), one array per sequence; with `entropy`,
        (2, L) arrays whose second row is the entropy in bits of the prediction each base was read against
        (defined at N bases too: the model predicts before it reads)."""
        encoded = self._with_bos(seqs)
        out: list[np.ndarray] = [np.empty(0)] * len(seqs)
        for batch in self.batches([len(e) for e in encoded]):
            ids, mask = self.pad([encoded[i] for i in batch])
            logits = self.forward(ids, mask).logits
            lp = self.token_logprobs(logits[:, :-1], ids[:, 1:]).cpu().numpy()
            if entropy:
                logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
                bits = (-(logp.exp() * logp).sum(-1) / math.log(2)).cpu().numpy()
                lp = np.stack([lp, bits], axis=1)
            for r, i in enumerate(batch):
                out[i] = lp[r, ..., : len(encoded[i]) - 1].copy()
        return out

    def hidden_sums(self, pieces: Sequence[tuple[str, int]]) -> np.ndarray:
        """For each (sequence, keep_from): the sum over its bases from `keep_from` on of the model's final hidden
        state at that base (after reading it: the vector the next-base head reads), float64, (n, d_model)."""
        seen: list[torch.Tensor] = []
        hook = self.model.lm_head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            encoded = self._with_bos([seq for seq, _ in pieces])
            out = np.zeros((len(pieces), self.model.config.d_model[0]))
            for batch in self.batches([len(e) for e in encoded]):
                seen.clear()
                ids, mask = self.pad([encoded[i] for i in batch])
                self.forward(ids, mask)
                hidden = seen[0].double()
                if not torch.isfinite(hidden[mask]).all():  # as token_logprobs: a failure, never a NaN row
                    raise DnahnetRuntimeError("the model produced NaN or infinite hidden states (damaged weights, or "
                                              "an overflow at this precision: try --dtype float32)")
                for r, i in enumerate(batch):  # position j + 1 has read base j (position 0 is BOS)
                    out[i] = hidden[r, 1 + pieces[i][1]: len(encoded[i])].sum(0).cpu().numpy()
            return out
        finally:
            hook.remove()

    def loglik(self, seqs: Sequence[str]) -> np.ndarray:
        """Total log-likelihood per sequence (natural log, N/IUPAC bases skipped)."""
        return np.array([np.nansum(lp) for lp in self.logprobs(seqs)])

    def logprobs_long(self, seq: str, window: int | None = None, context: int | None = None,
                      entropy: bool = False) -> np.ndarray:
        """Per-base log-probabilities of a sequence of any length through overlapping windows that give
        every base after the first window at least `context` (default window/2) bases of left context
        (with `entropy`, and the entropies: as `logprobs`)."""
        window = window or self.window
        context = window // 2 if context is None else context
        return tiled_logprobs(lambda seqs: self.logprobs(seqs, entropy), seq, window, context)

    def loglik_pairs(self, refs: Sequence[str], alts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Total log-likelihoods (ll_ref, ll_alt) for each pair, reusing the shared prefix."""
        if len(refs) != len(alts):
            raise ValueError("refs and alts must have the same length")
        if not self.prefix_reuse:
            unique_refs = list(dict.fromkeys(refs))
            totals = dict(zip(unique_refs, self.loglik(unique_refs)))
            return np.array([totals[r] for r in refs]), self.loglik(alts)
        return PrefixReuseScorer(self).loglik_pairs(refs, alts)

    def boundaries(self, seqs: Sequence[str]) -> list[list[np.ndarray]]:
        """Per sequence, per stage (outer first): boundary probability at each nucleotide."""
        encoded = self._with_bos(seqs)
        out: list[list[np.ndarray]] = [[] for _ in seqs]
        for batch in self.batches([len(e) for e in encoded]):
            ids, mask = self.pad([encoded[i] for i in batch])
            stages = self.forward(ids, mask).stages
            for r, i in enumerate(batch):
                out[i] = stage_tracks(stages, r, len(encoded[i]), self.device)
        return out
