"""The H-Net stage: encoder -> routing -> chunk -> main network -> dechunk -> decoder.

A stage is built recursively from the official `arch_layout` notation: a non-innermost stage is
[encoder_layout, inner_stage, decoder_layout], the innermost is [main_layout]. Zero stages (a single
[main_layout]) is an isotropic model, which is how the Transformer++ and Mamba2-only baselines come
out of the same code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.model.cpu_linear import Linear
from dnahnet_cli.model.layers import Isotropic, State
from dnahnet_cli.model.precision import fp32_island, full_precision
from dnahnet_cli.model.ssd import ema_chunked


@dataclass
class StageRouting:
    """What one stage's router decided, exposed for the ratio loss and for analysis (segment)."""

    boundary_prob: torch.Tensor  # (B, L_s) p_t in [0, 1]; p_0 = 1
    boundary_mask: torch.Tensor  # (B, L_s) bool, p_t > 0.5 and valid
    mask: torch.Tensor  # (B, L_s) bool valid positions of this stage's input
    chunk_index: torch.Tensor  # (B, M) positions (in this stage's coordinates) of the chunk starts


class RoutingModule(nn.Module):
    """p_t = (1 - cos(W_q h_{t-1}, W_k h_t)) / 2, p_0 = 1; boundary where p_t > 0.5.

    W_q and W_k start as identities, so an untrained router cuts where neighbouring encoder states differ.
    Runs in fp32 under autocast: a bf16 cosine moves boundaries that sit near the 0.5 threshold.
    """

    def __init__(self, d: int):
        super().__init__()
        self.q_proj = Linear(d, d, bias=False)
        self.k_proj = Linear(d, d, bias=False)
        for lin in (self.q_proj, self.k_proj):
            lin.weight.data.copy_(torch.eye(d))
            lin.weight._no_reinit = True  # type: ignore[attr-defined]

    def forward(self, h: torch.Tensor, mask: torch.Tensor, state: State | None = None):
        with full_precision(h):
            return self._route(h.float(), mask, state)

    def _route(self, h: torch.Tensor, mask: torch.Tensor, state: State | None):
        b, l, d = h.shape
        first_known = state is not None and "last_h" in state
        prev_first = state["last_h"][:, None].to(h.dtype) if first_known else h.new_zeros(b, 1, d)
        prev = torch.cat([prev_first, h[:, :-1]], dim=1)
        cos = F.cosine_similarity(self.q_proj(prev), self.k_proj(h), dim=-1)
        p = ((1 - cos) / 2).clamp(0.0, 1.0)
        force = torch.zeros(b, l, dtype=torch.bool, device=h.device)
        force[:, 0] = ~state["seen"] if first_known else True
        p = torch.where(force, torch.ones_like(p), p)
        boundary = (p > 0.5) & mask
        if state is not None:
            n_valid = mask.sum(1)
            last = h[torch.arange(b, device=h.device), (n_valid - 1).clamp(min=0)]
            has_new = n_valid > 0
            state["last_h"] = torch.where(has_new[:, None], last.float(), state["last_h"]) if first_known else last.float()
            state["seen"] = (state["seen"] | has_new) if first_known else has_new
        return p, boundary


# Inner sequences of a whole-window pass are padded with masked slots at the end, their length rounded up to one
# of LENGTHS_PER_OCTAVE evenly spaced values per doubling (at most 1/16 more inner work; 0 keeps exact lengths).
# Their length follows the data, and oneDNN compiles a kernel for every new GEMM shape and keeps 1,024 of them:
# training on varied windows thrashed that cache and slowed each process down as it ran (a 7.3M model's step
# 1.13 -> 1.32 s over 140 steps; with one repeated window, no drift: docs/benchmarks.md). Being at the end of a
# causal sequence, the extra slots change no valid output.
LENGTHS_PER_OCTAVE = 16


def padded_length(m: int, per_octave: int) -> int:
    """m rounded up to a multiple of 2^k / per_octave, where 2^k <= m < 2^(k+1) (per_octave a power of two; 0 or
    m <= per_octave: m itself)."""
    if per_octave <= 0 or m <= per_octave:
        return m
    step = 1 << (m.bit_length() - per_octave.bit_length())
    return -(-m // step) * step


def chunk_indices(boundary: torch.Tensor, per_octave: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the boundaries, in order, left-aligned per row: (B, M) indices and (B, M) validity, M the
    largest count, padded_length(., per_octave) of it (at most L; the extra slots are invalid)."""
    b, l = boundary.shape
    counts = boundary.sum(1)
    m = int(counts.max()) if b else 0
    m = min(l, padded_length(m, per_octave))
    key = torch.arange(l, device=boundary.device) + l * (~boundary).long()
    order = torch.argsort(key, dim=1, stable=True)[:, :m]
    return order, torch.arange(m, device=boundary.device)[None, :] < counts[:, None]


def dechunk(
    zhat: torch.Tensor, p_chunks: torch.Tensor, chunk_mask: torch.Tensor, boundary: torch.Tensor,
    initial: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """EMA over chunks (ē_j = P_j ẑ_j + (1-P_j) ē_{j-1}, P clamped to [1e-4, 1-1e-4]) then upsample:
    each position takes ē of the latest chunk starting at or before it (`initial` before the first).

    Invalid chunk slots get P = 0, so they carry the last valid value; the returned last value is
    therefore the state to continue from. All in fp32.
    """
    b, m, d = zhat.shape
    init = initial if initial is not None else zhat.new_zeros(b, d, dtype=torch.float32)
    if m == 0:
        return init[:, None].expand(b, boundary.shape[1], d), init
    P = torch.where(chunk_mask, p_chunks.float().clamp(1e-4, 1 - 1e-4), torch.zeros_like(p_chunks, dtype=torch.float32))
    ema, last = ema_chunked(zhat.float(), P, init)
    ema = torch.cat([init[:, None], ema], dim=1)  # slot 0: before the first new chunk
    which = boundary.long().cumsum(1)  # (B, L) index into the extended ema
    u = ema.gather(1, which[..., None].expand(-1, -1, d))
    return u, last


class _STE(torch.autograd.Function):
    """Forward value 1, gradient passed through unchanged (confidence scaling of the decoder input)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.ones_like(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad


class HNetStage(nn.Module):
    """One level of the hierarchy (recursive). Widths only grow inward; extra channels are a learned pad."""

    def __init__(self, cfg, stage: int, layout: list, d_in: int):
        super().__init__()
        d = cfg.d_model[stage]
        if d < d_in:
            raise ValueError("d_model must be non-decreasing across stages")
        self.stage, self.d_in = stage, d_in
        self.pad_dimension = nn.Parameter(torch.zeros(d - d_in)) if d > d_in else None
        ssm, attn = cfg.ssm_kwargs(stage), cfg.attn_kwargs(stage)
        self.innermost = len(layout) == 1
        if self.innermost:
            self.main = Isotropic(layout[0], d, cfg.d_intermediate[stage], ssm, attn, cfg.hyena)
            return
        if len(layout) != 3:
            raise ValueError(f"stage {stage}: layout must be [encoder, inner, decoder], got {layout!r}")
        self.encoder = Isotropic(layout[0], d, cfg.d_intermediate[stage], ssm, attn, cfg.hyena)
        self.router = RoutingModule(d)
        self.main = HNetStage(cfg, stage + 1, layout[1], d)
        self.decoder = Isotropic(layout[2], d, cfg.d_intermediate[stage], ssm, attn, cfg.hyena)
        self.residual_proj = Linear(d, d, bias=True)
        self.residual_proj.weight.data.zero_()
        self.residual_proj.weight._no_reinit = True  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None):
        """Returns the output at the input width and the routing of this and inner stages (outer first)."""
        b, l, _ = x.shape
        if self.pad_dimension is not None:
            x = torch.cat([x, self.pad_dimension.to(x.dtype).expand(b, l, -1)], dim=-1)
        sub = (lambda key: state.setdefault(key, {})) if state is not None else (lambda key: None)
        if self.innermost:
            return self.main(x, mask, sub("main"))[..., : self.d_in], []
        # scoring keeps the encoder fp32 (it is the router's input: bf16 would move boundaries, precision.py);
        # training runs it under autocast, as the official H-Net trains (a `small` training step 1.18x, docs/model.md)
        exact = not self.training
        with fp32_island(x) if exact else contextlib.nullcontext():
            h = self.encoder(x, mask, sub("encoder")).float()  # fp32 for the router and the residual path
        with full_precision(h):  # fp32 as in the official H-Net: the skip path carries the fine detail
            residual = self.residual_proj(h.float())
        p, boundary = self.router(h, mask, sub("router"))
        # continuations keep exact lengths: their caches would take the padding as positions
        idx, chunk_mask = chunk_indices(boundary, LENGTHS_PER_OCTAVE if state is None else 0)
        d = h.shape[-1]
        inner_routing: list[StageRouting] = []
        if idx.shape[1] > 0:
            z = h.gather(1, idx[..., None].expand(-1, -1, d))
            zhat, inner_routing = self.main(z, chunk_mask, sub("main"))
        else:  # a continuation that opened no chunk leaves the inner stage untouched
            zhat = h.new_zeros(b, 0, d)
        dstate = sub("dechunk")
        u, last = dechunk(zhat, p.gather(1, idx), chunk_mask, boundary, dstate.get("last") if dstate is not None else None)
        if dstate is not None:
            dstate["last"] = last
        confidence = torch.where(boundary, p, 1 - p)
        dec_in = u * _STE.apply(confidence)[..., None] + residual
        # the nucleotide-resolution decoder feeds the scores directly: fp32 when scoring (precision.py)
        with fp32_island(dec_in) if self.stage == 0 and exact else contextlib.nullcontext():
            y = self.decoder(dec_in, mask, sub("decoder"))
        routing = StageRouting(p, boundary, mask, idx)
        return y[..., : self.d_in], [routing] + inner_routing
