"""Attention on a CPU through the compiled kernel (`csrc/attention_cpu.c`), for every mask dnahnet uses.

Why: at a head width of 16 torch's CPU attention is bound by overhead and exponentials, and with an explicit mask
(a sliding window, a cache continued from a prefix) it also scores keys that no query can see; the kernel was
1.6-2.6x faster on the shapes of the shipped model's scoring forward, and 1.5-3.5x forward and backward on
those of `cpu` and `small` (docs/benchmarks.md). Every mask becomes a
range of keys per query once the keys are sorted by position: `attend` takes those ranges, and `causal`,
`by_position` and `ring` build them for fresh sequences, a growing cache and window_cache's ring. The arithmetic
is fp32 whatever the inputs' dtype (bf16 under autocast), so it is at least as precise as the reference; outputs
come back in the queries' dtype. When a gradient is taken (training), `attend` runs through an autograd Function
whose backward is compiled too. layers.py and window_cache.py call these when `kernels.cpu_attention(q)` says so.
"""

from __future__ import annotations

import torch

from dnahnet_cli.model import cpu_mixer

WIDTHS = (16, 32, 48, 64)  # head widths the kernel is compiled for; narrower heads are zero-padded to the next
MAX_WIDTH = WIDTHS[-1]
MAX_BLOCK = 8  # the kernel's largest query block (its scratch rows)
PAD = 16  # keys are padded to a multiple of this (one vector)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, where query i of batch row r sees keys lo[r, i] <= j < hi[r, i] only.

    q (B, H, Lq, D), k and v (B, H, Lk, D) CPU tensors, D <= MAX_WIDTH (zero-padded to the next of WIDTHS, which
    changes no score); lo, hi (B, Lq) integer, 0 <= lo, hi <= Lk. A query with an empty range gets zeros. Returns
    (B, H, Lq, D) in q's dtype, differentiable in q, k and v when a gradient is being taken.
    """
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _Attention.apply(q, k, v, lo, hi)
    problem = _Problem(q, k, v, lo, hi)
    return problem.output(problem.forward(None), q.dtype)


class _Problem:
    """One attention call in the kernel's layouts: scaled queries, transposed keys and values, all fp32 and
    zero-padded (head width to WIDTHS, keys to a multiple of PAD), and the ranges as int64."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        self.lib = cpu_mixer.library()
        b, h, lq, d = q.shape
        lk = k.shape[2]
        width = next((w for w in WIDTHS if w >= d), None)
        if width is None:
            raise ValueError(f"head width {d} is wider than {MAX_WIDTH}")
        self.shape, self.lk, self.width, self.lk_pad = (b, h, lq, d), lk, width, -(-max(lk, 1) // PAD) * PAD
        self.scale = d ** -0.5
        self.scaled = _padded(torch.empty(b, h, lq, width), q).mul_(self.scale)
        self.keys_t = _padded(torch.empty(b, h, width, self.lk_pad), k.transpose(2, 3))
        self.values = _padded(torch.empty(b, h, self.lk_pad, width), v)
        self.lo = lo.to(torch.int64).contiguous()
        self.hi = hi.clamp(max=lk).to(torch.int64).contiguous()
        self.work = int((self.hi - self.lo).clamp(min=0).sum()) * h * width  # key visits x width

    def forward(self, lse: torch.Tensor | None) -> torch.Tensor:
        """The output (B, H, Lq, D) in fp32 padded to the width; lse (B*H*Lq), if given, gets each log-sum-exp."""
        b, h, lq, _ = self.shape
        out = torch.empty(b, h, lq, self.width)
        block = int(self.lib.attention_block(self.width))
        bounds = cpu_mixer.spans(b * h * -(-lq // block), None, self.work)
        scratch = torch.empty(len(bounds) - 1, MAX_BLOCK * self.lk_pad)
        ptrs = [t.data_ptr() for t in (self.scaled, self.keys_t, self.values, self.lo, self.hi, out)]
        lse_ptr = None if lse is None else lse.data_ptr()

        def call(span: int, begin: int, end: int) -> None:
            if self.lib.attend_ranges(*ptrs, lse_ptr, h, lq, self.lk_pad, self.width, scratch[span].data_ptr(),
                                      begin, end) != 0:
                raise RuntimeError(f"attend_ranges refused head width {self.width}")

        cpu_mixer.run_spans(call, bounds)
        return out

    def output(self, out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return out[..., : self.shape[3]].to(dtype)

    def backward(self, out: torch.Tensor, lse: torch.Tensor, dout: torch.Tensor):
        """Gradients of q, k and v (fp32, the inputs' shapes) from the padded output, its lse and dout."""
        b, h, lq, d = self.shape
        grad = _padded(torch.empty(b, h, lq, self.width), dout)
        delta = (grad * out).sum(-1)
        keys = self.keys_t.transpose(2, 3).contiguous()
        values_t = self.values.transpose(2, 3).contiguous()
        dq = torch.empty(b, h, lq, self.width)
        dk, dv = torch.zeros(b, h, self.lk_pad, self.width), torch.zeros(b, h, self.lk_pad, self.width)
        bounds = cpu_mixer.spans(b * h, None, 3 * self.work)
        scratch = torch.empty(len(bounds) - 1, 2 * MAX_BLOCK * self.lk_pad)
        ptrs = [t.data_ptr() for t in (self.scaled, self.keys_t, keys, values_t, grad, lse, delta, self.lo,
                                       self.hi, dq, dk, dv)]

        def call(span: int, begin: int, end: int) -> None:
            if self.lib.attend_ranges_backward(*ptrs, h, lq, self.lk_pad, self.width, scratch[span].data_ptr(),
                                               begin, end) != 0:
                raise RuntimeError(f"attend_ranges_backward refused head width {self.width}")

        cpu_mixer.run_spans(call, bounds)
        return dq[..., :d] * self.scale, dk[:, :, : self.lk, :d], dv[:, :, : self.lk, :d]


class _Attention(torch.autograd.Function):
    """attend with its compiled backward (training): the forward keeps each query's log-sum-exp, the backward
    recomputes the probabilities from it (csrc/attention_cpu.c, attend_ranges_backward)."""

    @staticmethod
    def forward(ctx, q, k, v, lo, hi):
        problem = _Problem(q, k, v, lo, hi)
        b, h, lq, _ = problem.shape
        lse = torch.empty(b * h * lq)
        out = problem.forward(lse)
        ctx.problem, ctx.dtypes = problem, (q.dtype, k.dtype, v.dtype)
        ctx.save_for_backward(out, lse)
        return problem.output(out, q.dtype)

    @staticmethod
    def backward(ctx, dout):
        out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.problem.backward(out, lse, dout)
        ctx.problem = None  # its buffers are no longer needed
        return dq.to(ctx.dtypes[0]), dk.to(ctx.dtypes[1]), dv.to(ctx.dtypes[2]), None, None


def gradients(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, dout: torch.Tensor):
    """The compiled backward of causal(q, k, v, window) for the output gradient dout, without autograd (the
    kernels' self-check): fp32 gradients of q, k and v."""
    problem = _Problem(q, k, v, *_causal_ranges(q, window))
    lse = torch.empty(q.shape[0] * q.shape[1] * q.shape[2])
    return problem.backward(problem.forward(lse), lse, dout)


def _padded(buffer: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x copied (as fp32) into the leading corner of `buffer` along the last two dims, zeros elsewhere."""
    rows, cols = x.shape[-2:]
    buffer[..., :rows, :cols].copy_(x.detach())
    buffer[..., rows:, :].zero_()
    buffer[..., :rows, cols:].zero_()
    return buffer


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[r, h, index[r, j], :] for x (B, H, K, D) and index (B, N): (B, H, N, D). The same as x.gather(2, index
    expanded), as whole rows through one index_select (7x faster than gather on a CPU at dnahnet's shapes)."""
    b, h, k, d = x.shape
    base = (torch.arange(b * h, device=x.device) * k).view(b, h, 1)
    flat = (index[:, None, :] + base).reshape(-1)
    return x.reshape(b * h * k, d).index_select(0, flat).view(b, h, index.shape[1], d)


def causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int = -1) -> torch.Tensor:
    """Causal attention of a fresh sequence (queries and keys at positions 0..L-1), each query over the last
    `window` + 1 positions (all earlier ones when window < 0): F.scaled_dot_product_attention(is_causal=True) and
    layers.CausalSelfAttention's windowed blocks."""
    return attend(q, k, v, *_causal_ranges(q, window))


def _causal_ranges(q: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """lo, hi (B, L) of causal attention over a fresh sequence: keys i - window .. i (0 .. i when window < 0)."""
    b, _, l, _ = q.shape
    i = torch.arange(l)
    lo = (i - window).clamp(min=0) if window >= 0 else torch.zeros(l, dtype=torch.long)
    return lo.expand(b, l), (i + 1).expand(b, l)


def by_position(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Full causal attention from a cache indexed by position: the query at positions[r, i] sees keys 0..that
    position of row r (layers.CausalSelfAttention._attend_cached)."""
    return attend(q, keys, values, torch.zeros_like(positions), positions + 1)


def ring(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_positions: torch.Tensor,
         key_valid: torch.Tensor, positions: torch.Tensor, window: int) -> torch.Tensor:
    """Windowed attention over keys in any order (window_cache's ring followed by the new keys): the query at
    positions[r, i] sees the valid keys of row r at positions within `window` before it, itself included.
    key_positions, key_valid (B, K); positions (B, Lq)."""
    never = torch.iinfo(torch.int64).min // 2  # invalid keys sort first, below any range
    order_keys = torch.where(key_valid, key_positions, torch.full_like(key_positions, never))
    sorted_positions, order = torch.sort(order_keys, dim=1, stable=True)
    positions = positions.contiguous()
    lo = torch.searchsorted(sorted_positions, positions - window)
    hi = torch.searchsorted(sorted_positions, positions, right=True)
    return attend(q, gather_rows(keys, order), gather_rows(values, order), lo, hi)
