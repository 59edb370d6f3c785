"""Analytic forward FLOPs of any `ModelConfig` (performance.md §2), per nucleotide.

Why analytic: speed claims must be readable next to the work they imply (achieved/floor, FLOP ratios),
and CI can assert FLOP ratios where it must never assert times. The dense terms count exactly what the
plain-PyTorch reference executes (every matmul, einsum and the depthwise conv at 2 FLOPs per multiply-add,
SSD blocks of Q x Q padded to whole chunks), so `torch.utils.flop_counter.FlopCounterMode` agrees with
them (except the depthwise conv, which runs as shifted multiply-adds: `FlopReport.conv` says how much);
elementwise work (norms, gates, RoPE, softmax, exp) is not counted. Attention is counted in one of
two conventions, because CPU SDPA reports 0 FLOPs to the counter and the literature mixes them:

* "executed": causal work as a FlashAttention-style kernel performs it, 4 * d * (keys a query sees),
  summed over queries: n (n + 1) / 2 keys in total for global attention, min(i, W) + 1 for window W;
* "chinchilla": H-Net App. B / Chinchilla, the full n x n square (or n x min(n, W + 1)) plus a 3 * h
  per score softmax term, i.e. about 2x the executed causal work.

Positions per stage come from the compression ratios: target ratios, the realised ratios of a run, or
exact per-stage position counts (what a run reports) for exact agreement with a counter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from dnahnet_cli.model.hyena import HYENA_KINDS, fft_conv_flops, hyena_flops
from dnahnet_cli.model.layers import parse_layout
from dnahnet_cli.model.lm import ModelConfig
from dnahnet_cli.model.ssd import inference_chunk

CONVENTIONS = ("executed", "chinchilla")
EMA_CHUNK = 64  # chunk of the reference dechunk EMA (ssd.ema_chunked's default, independent of the config)


def _padded(n: float, q: int) -> float:
    """Positions after padding to whole SSD chunks (only meaningful for integral n)."""
    return math.ceil(n / q) * q if float(n).is_integer() else n


def ssd_flops(n: float, heads: int, headdim: int, d_state: int, groups: int, chunk: int) -> float:
    """Chunked SSD over n positions: C.B^T blocks, (decay * CB) @ X, chunk states, state -> output."""
    if n <= 0:
        return 0.0
    q = max(1, min(chunk, math.ceil(n)))
    n_pad = _padded(n, q)
    d_inner = heads * headdim
    return 2 * n_pad * (q * groups * d_state + q * d_inner + 2 * d_inner * d_state)


def mamba2_flops(n: float, d: int, d_state: int, headdim: int, expand: int, d_conv: int, chunk: int) -> float:
    """One Mamba2 mixer over n positions: in_proj, depthwise conv, SSD, out_proj (one B/C group)."""
    d_inner = expand * d
    heads = d_inner // headdim
    conv_dim = d_inner + 2 * d_state
    dense = 2 * d * (2 * d_inner + 2 * d_state + heads) + 2 * d_conv * conv_dim + 2 * d_inner * d
    return n * dense + ssd_flops(n, heads, headdim, d_state, 1, chunk)


def attention_keys(n: float, window: int) -> float:
    """Total (query, key) pairs of causal attention over n positions with window W (-1: global)."""
    if window < 0 or window >= n - 1:
        return n * (n + 1) / 2
    w = window
    return (w + 1) * (w + 2) / 2 + (n - w - 1) * (w + 1)  # ramp-up over the first W+1 queries, then W+1 each


def attention_score_flops(n: float, d: int, num_heads: int, window: int, convention: str = "executed") -> float:
    """Q.K^T and P.V of one attention mixer over n positions (the part FlopCounterMode misses on CPU)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}")
    if convention == "executed":
        return 4 * d * attention_keys(n, window)
    keys = n if window < 0 else min(n, window + 1)
    return 4 * d * n * keys + 3 * num_heads * n * keys


def attention_flops(n: float, d: int, num_heads: int, window: int, convention: str = "executed") -> float:
    """One attention mixer over n positions: Wqkv and out_proj plus the score/value work."""
    return n * 8 * d * d + attention_score_flops(n, d, num_heads, window, convention)


def swiglu_flops(n: float, d: int, d_ff: int) -> float:
    f = 128 * math.ceil(d_ff / 128)
    return n * 6 * d * f


def stack_flops(cfg: ModelConfig, stage: int, layout: str, n: float, convention: str = "executed",
                ssd_chunk: int | None = None, inference_tiles: bool = False) -> float:
    """An Isotropic stack (encoder, decoder or main network) of stage `stage` over n positions."""
    d = cfg.d_model[stage]
    ssm, attn = cfg.ssm_kwargs(stage), cfg.attn_kwargs(stage)
    chunk = ssd_chunk or (inference_chunk(ssm["chunk_size"], ssm["headdim"]) if inference_tiles
                          else ssm["chunk_size"])
    total = 0.0
    for kind in parse_layout(layout):
        if kind.lower() == "m":
            total += mamba2_flops(n, d, ssm["d_state"], ssm["headdim"], ssm["expand"], ssm["d_conv"], chunk)
        elif kind.lower() in HYENA_KINDS:
            total += hyena_flops(math.ceil(n), d, HYENA_KINDS[kind.lower()], **cfg.hyena)
        else:
            total += attention_flops(n, d, attn["num_heads"], attn["window"], convention)
        if kind.isupper():
            total += swiglu_flops(n, d, cfg.d_intermediate[stage])
    return total


def routing_flops(n_outer: float, n_chunks: float, d: int, chunk: int = 64) -> float:
    """Router q/k projections and residual_proj on the outer positions, plus the dechunk EMA
    (an SSD with one state dimension, one head of width d) over the chunks."""
    return n_outer * 6 * d * d + ssd_flops(n_chunks, 1, d, 1, 1, chunk)


@dataclass
class FlopReport:
    """Forward FLOPs of one sequence of `length` nucleotides, split by stage (outer first)."""

    length: int
    convention: str
    positions: list[float]  # positions at each stage, outer first (the last is the main network)
    per_stage: list[float]  # total FLOPs of each stage's own encoder+routing+decoder; last = main network
    attention: float  # part of the total spent in attention scores (not projections)
    head: float
    conv: float = 0.0  # part spent in Mamba2's depthwise conv (shifted multiply-adds: FlopCounterMode sees 0)
    fft: float = 0.0  # part spent in Hyena-LI's FFT convolutions (FlopCounterMode sees 0)
    total: float = field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(self.per_stage) + self.head

    @property
    def per_nt(self) -> float:
        return self.total / self.length

    def to_dict(self) -> dict:
        return {**asdict(self), "per_nt": self.per_nt}


def forward_flops(cfg: ModelConfig, length: int, ratios: Sequence[float] | None = None,
                  positions: Sequence[float] | None = None, convention: str = "executed",
                  ssd_chunk: int | None = None, inference_tiles: bool = False) -> FlopReport:
    """Forward FLOPs of a batch-1 sequence of `length` nucleotides.

    ratios: per-stage compression (defaults to cfg.ratio_targets); positions: exact positions per stage
    (outer first, positions[0] == length) overriding ratios; ssd_chunk: the SSD tile to count (default
    cfg.chunk_size, the configured tile; the reference path runs shorter ones, ssd.training_chunk with a gradient
    and ssd.inference_chunk without, and the mamba_ssm kernel 256); inference_tiles: count the no-gradient tiles
    instead. Budgets (train_step_flops) always use cfg.chunk_size, a convention that counts `tiny` 16 % and
    `cpu` 6 % above the work a CPU training step runs at their training length (bench/report.py --flops).
    """
    s = cfg.n_stages
    if positions is None:
        ratios = list(cfg.ratio_targets if ratios is None else ratios)
        if len(ratios) != s:
            raise ValueError(f"need {s} ratios for a {s}-stage model, got {len(ratios)}")
        positions = [float(length)]
        for r in ratios:
            positions.append(positions[-1] / r)
    positions = [float(p) for p in positions]
    if len(positions) != s + 1:
        raise ValueError(f"need {s + 1} position counts, got {len(positions)}")
    per_stage, attention, conv, fft, node = [], 0.0, 0.0, 0.0, cfg.arch_layout
    for stage in range(s + 1):
        n = positions[stage]
        layouts = [node[0]] if stage == s else [node[0], node[2]]
        flops = sum(stack_flops(cfg, stage, lay, n, convention, ssd_chunk, inference_tiles) for lay in layouts)
        d, attn = cfg.d_model[stage], cfg.attn_kwargs(stage)
        n_attn = sum(1 for lay in layouts for k in parse_layout(lay) if k.lower() == "t")
        attention += n_attn * attention_score_flops(n, d, attn["num_heads"], attn["window"], convention)
        ssm = cfg.ssm_kwargs(stage)
        n_mamba = sum(1 for lay in layouts for k in parse_layout(lay) if k.lower() == "m")
        conv += n_mamba * n * 2 * ssm["d_conv"] * (ssm["expand"] * d + 2 * ssm["d_state"])
        n_li = sum(1 for lay in layouts for k in parse_layout(lay) if k.lower() == "l")
        fft += n_li * d * fft_conv_flops(math.ceil(n))
        if stage < s:
            flops += routing_flops(n, positions[stage + 1], d, ssd_chunk or EMA_CHUNK)
            node = node[1]
        per_stage.append(flops)
    head = 2.0 * length * cfg.d_model[0] * 4
    return FlopReport(length, convention, positions, per_stage, attention, head, conv, fft)


def flops_per_nt(cfg: ModelConfig, length: int, ratios: Sequence[float] | None = None,
                 convention: str = "executed") -> float:
    """Shortcut: forward FLOPs per nucleotide at the given (default: target) compression ratios."""
    return forward_flops(cfg, length, ratios=ratios, convention=convention).per_nt


def train_flops_per_nt(cfg: ModelConfig, length: int, ratios: Sequence[float] | None = None) -> float:
    """Training FLOPs per nucleotide (forward + backward = 3x forward), the x axis of learning curves and
    the budget a model card states."""
    return 3 * flops_per_nt(cfg, length, ratios)


def fixed_ratio_positions(length: int, ratios: Sequence[float]) -> list[int]:
    """Exact positions per stage under the fixed-ratio router control (every R-th position is a boundary)."""
    positions = [length]
    for r in ratios:
        positions.append(math.ceil(positions[-1] / int(round(r))))
    return positions


def train_step_flops(cfg: ModelConfig, length: int, ratios: Sequence[float] | None = None) -> float:
    """Model FLOPs of one training step on one sequence: forward + backward = 3x forward (H-Net App. B)."""
    return 3 * forward_flops(cfg, length, ratios=ratios).total
