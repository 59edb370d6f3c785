"""Building blocks of every stage: RMSNorm, SwiGLU, rotary attention, the Mamba2 mixer and the
pre-norm residual stack (`Isotropic`) that encoders, decoders and main networks are made of.

All mixers share one calling convention, `forward(x, mask, state)`:
  * x (B, L, D); mask (B, L) bool marking valid positions (a prefix of each row);
  * state None: plain parallel forward, nothing cached;
  * state a dict: continue from it (an empty dict means "from the start") and update it in place, so a
    prefix's state can be reused for many continuations and a one-token call is the incremental step.
Padded positions never change a state (Mamba: dt = 0; attention: keys not committed; conv window taken
from the last valid inputs), so batched rows of different lengths stay exact.
Parameter names and shapes follow mamba_ssm's Mamba2 and the official H-Net modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.model import cpu_attention, cpu_mixer, kernels
from dnahnet_cli.model.cpu_linear import Linear
from dnahnet_cli.model.config import LAYOUT_PATTERN
from dnahnet_cli.model.hyena import HYENA_KINDS, HyenaMixer
from dnahnet_cli.model.ssd import inference_chunk, ssd_chunked, ssd_step, training_chunk
from dnahnet_cli.model.window_cache import ring_attend

State = dict


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w, computed in fp32 (eps 1e-5, no bias)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()


class GatedRMSNorm(RMSNorm):
    """Mamba2's output norm: RMSNorm(y * silu(z)) (gate applied before the norm), one group."""

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(y.float() * F.silu(z.float()))


class SwiGLU(nn.Module):
    """fc2(silu(gate) * value) with fc1 -> [value | gate]; hidden size rounded up to a multiple of 128."""

    def __init__(self, d: int, d_ff: int):
        super().__init__()
        d_ff = 128 * math.ceil(d_ff / 128)
        self.fc1 = Linear(d, 2 * d_ff, bias=False)
        self.fc2 = Linear(d_ff, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Non-interleaved (GPT-NeoX) RoPE on the first `rotary_dim` channels. x (B,L,H,Dh); positions (B,L)."""
    if rotary_dim == 0:
        return x
    half = rotary_dim // 2
    inv_freq = 1.0 / base ** (torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * inv_freq  # (B, L, half)
    cos, sin = angles.cos()[:, :, None, :], angles.sin()[:, :, None, :]
    rot, rest = x[..., :rotary_dim].float(), x[..., rotary_dim:]
    x1, x2 = rot[..., :half], rot[..., half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
    return torch.cat([rotated, rest], dim=-1)


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention with RoPE and an optional sliding window.

    window W >= 0 lets query i see keys i-W .. i (W+1 keys), as flash-attn's window_size=(W, -1);
    W = -1 is full causal attention. Positions are indices within this stage's sequence.
    """

    # long windowed inputs are processed in query blocks to keep memory O(L * W); each block computes
    # (QUERY_BLOCK + W) keys per query against W + 1 needed, so 256 rather than 1024 (1.4x faster on CPU)
    QUERY_BLOCK = 256
    # continuing from a growing cache, queries are attended in blocks of this many, each against the keys up to its
    # last query's position only: SDPA with an explicit mask computes masked keys too, and after a 4,096-token
    # prefix a 4,096-token suffix would otherwise score ~1/3 more keys than it can see (and the cache's spare room)
    CACHED_QUERY_BLOCK = 512

    def __init__(self, d: int, num_heads: int, rotary_dim: int, window: int = -1):
        super().__init__()
        assert d % num_heads == 0, "d_model must be divisible by num_heads"
        self.num_heads, self.head_dim = num_heads, d // num_heads
        assert rotary_dim % 2 == 0 and rotary_dim <= self.head_dim
        self.rotary_dim, self.window = rotary_dim, window
        self.Wqkv = Linear(d, 3 * d, bias=False)
        self.out_proj = Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = self.Wqkv(x).view(b, l, 3, self.num_heads, self.head_dim).unbind(dim=2)
        offset = state["len"] if state else torch.zeros(b, dtype=torch.long, device=x.device)
        positions = offset[:, None] + torch.arange(l, device=x.device)
        q, k = apply_rotary(q, positions, self.rotary_dim), apply_rotary(k, positions, self.rotary_dim)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        if state is None:
            out = self._attend_fresh(q, k, v)
        else:
            out = self._attend_cached(q, k, v, mask, state, positions)
        return self.out_proj(out.transpose(1, 2).reshape(b, l, d))

    def _attend_fresh(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        l = q.shape[2]
        w = self.window
        full = w < 0 or w >= l - 1
        if kernels.cpu_attention(q) and not (full and kernels.amx_causal_attention(q)):
            return cpu_attention.causal(q, k, v, -1 if full else w)
        if full:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if kernels.fast("attention", q):
            out = kernels.window_attention(q, k, v, w)
            if out is not None:
                return out
        outs = []
        for start in range(0, l, self.QUERY_BLOCK):
            end = min(l, start + self.QUERY_BLOCK)
            kstart = max(0, start - w)
            qi = torch.arange(start, end, device=q.device)[:, None]
            kj = torch.arange(kstart, end, device=q.device)[None, :]
            allowed = (kj <= qi) & (qi - kj <= w)
            outs.append(
                F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, kstart:end], v[:, :, kstart:end], attn_mask=allowed)
            )
        return torch.cat(outs, dim=2)

    def _attend_cached(self, q, k, v, mask, state: State, positions: torch.Tensor) -> torch.Tensor:
        """Continue from `state`: a ring of the last W + 1 keys for windowed attention (memory bounded by the
        window), a growing cache indexed by position for full attention."""
        if self.window >= 0:
            return ring_attend(q, k, v, mask, state, positions, self.window)
        b, h, l, dh = q.shape
        lengths = state.get("len", torch.zeros(b, dtype=torch.long, device=q.device))
        need = int(lengths.max()) + l
        cache_k = state.get("k", q.new_zeros(b, h, 0, dh))
        cache_v = state.get("v", q.new_zeros(b, h, 0, dh))
        if cache_k.shape[2] < need:  # grow geometrically
            grow = max(need, 2 * cache_k.shape[2]) - cache_k.shape[2]
            cache_k = F.pad(cache_k, (0, 0, 0, grow))
            cache_v = F.pad(cache_v, (0, 0, 0, grow))
        idx = positions[:, None, :, None].expand(b, h, l, dh)
        cache_k = cache_k.scatter(2, idx, k.to(cache_k.dtype))
        cache_v = cache_v.scatter(2, idx, v.to(cache_v.dtype))
        state.update(k=cache_k, v=cache_v, len=lengths + mask.sum(1))
        if kernels.cpu_attention(q):
            seen = int(positions.max()) + 1  # no query sees a key beyond this
            return cpu_attention.by_position(q, cache_k[:, :, :seen], cache_v[:, :, :seen], positions)
        keys, values = cache_k.to(q.dtype), cache_v.to(q.dtype)
        outs = []
        for start in range(0, l, self.CACHED_QUERY_BLOCK):
            end = min(l, start + self.CACHED_QUERY_BLOCK)
            seen = int(positions[:, start:end].max()) + 1  # no query of the block sees a key beyond this
            kpos = torch.arange(seen, device=q.device)[None, None, :]
            allowed = kpos <= positions[:, start:end, None]
            outs.append(F.scaled_dot_product_attention(q[:, :, start:end], keys[:, :, :seen], values[:, :, :seen],
                                                       attn_mask=allowed[:, None]))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def causal_depthwise_conv_silu(full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """silu(causal depthwise conv1d) in channels-last layout: full (B, K-1+L, C) holds K-1 history inputs
    then L new ones; weight (C, 1, K), bias (C). Returns (B, L, C) fp32.

    K shifted multiply-adds over contiguous rows instead of F.conv1d on a transposed copy: 3x faster on a
    CPU (conv1d wants (B, C, L), the projections produce (B, L, C)) and the same sums in fp32.
    """
    if torch.is_grad_enabled() and (full.requires_grad or weight.requires_grad or bias.requires_grad):
        return _CausalConvSiLU.apply(full, weight, bias)
    return F.silu(_causal_conv(full, weight[:, 0, :].t().float(), bias.float()))


def _causal_conv(full: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """bias + sum_j full[:, j : j + L] * w[j] for w (K, C): K multiply-adds over contiguous rows."""
    k = w.shape[0]
    length = full.shape[1] - (k - 1)
    y = torch.addcmul(bias, full[:, k - 1:], w[k - 1])
    for j in range(k - 1):
        y.addcmul_(full[:, j: j + length], w[j])
    return y


class _CausalConvSiLU(torch.autograd.Function):
    """`causal_depthwise_conv_silu` with a hand-written backward. Autograd through the K in-place multiply-adds
    zero-filled a gradient of the whole (B, K-1+L, C) input once per tap and made three passes per tap; here
    the input's gradient is one buffer that each tap adds into, and each weight's gradient one product-sum."""

    @staticmethod
    def forward(ctx, full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if full.dtype == torch.float64 else torch.float32  # float64 only for gradcheck
        full = full.to(dtype)
        y = _causal_conv(full, weight[:, 0, :].t().to(dtype), bias.to(dtype))
        ctx.save_for_backward(full, weight, y)
        ctx.bias_dtype = bias.dtype
        return F.silu(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        full, weight, y = ctx.saved_tensors
        k = weight.shape[-1]
        length = y.shape[1]
        dy = torch.ops.aten.silu_backward(grad.to(y.dtype), y)  # grad * s (1 + y (1 - s)), s = sigmoid(y)
        w = weight[:, 0, :].t().to(y.dtype)  # (K, C)
        dfull = torch.empty_like(full)
        dfull[:, : k - 1] = 0.0
        torch.mul(dy, w[k - 1], out=dfull[:, k - 1:])  # the last tap covers every row from K-1 on
        for j in range(k - 1):
            dfull[:, j: j + length].addcmul_(dy, w[j])
        dw = torch.stack([(dy * full[:, j: j + length]).sum((0, 1)) for j in range(k)])
        return dfull, dw.t()[:, None, :].to(weight.dtype), dy.sum((0, 1)).to(ctx.bias_dtype)


class Mamba2(nn.Module):
    """Mamba2 mixer (scalar-A SSD, one B/C group) with mamba_ssm's parameter names and init.

    in_proj -> [z | xBC | dt]; causal depthwise conv + SiLU on xBC; SSD scan; y + D*x;
    out_proj(RMSNorm(y * silu(z))).
    """

    def __init__(self, d: int, d_state: int = 128, d_conv: int = 4, expand: int = 2, headdim: int = 64,
                 chunk_size: int = 64):
        super().__init__()
        self.d_inner = expand * d
        assert self.d_inner % headdim == 0, "expand * d_model must be divisible by headdim"
        self.nheads, self.headdim, self.d_state, self.d_conv = self.d_inner // headdim, headdim, d_state, d_conv
        self.chunk_size = chunk_size
        self.conv_dim = self.d_inner + 2 * d_state
        self.in_proj = Linear(d, 2 * self.d_inner + 2 * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, bias=True)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner)
        self.out_proj = Linear(self.d_inner, d, bias=False)
        # in_proj's outputs [z | xBC | dt] with xBC first, for the fused path in forward
        n = 2 * self.d_inner + 2 * d_state + self.nheads
        self._conv_first = ((self.d_inner, self.d_inner + self.conv_dim), (0, self.d_inner), (n - self.nheads, n))

    def forward(self, u: torch.Tensor, mask: torch.Tensor, state: State | None = None) -> torch.Tensor:
        b, l, _ = u.shape
        k = self.d_conv
        if k >= 2 and kernels.cpu_mixer(u):
            # the split-bf16 AMX projection writes xBC straight into the conv input, behind its history rows
            fused = self.in_proj.split_into(u, self._conv_first, self.conv_dim, k - 1)
            if fused is not None:
                full, zdt = fused
                history = state.get("conv") if state else None
                full[:, : k - 1] = history.transpose(1, 2) if history is not None else 0.0
                z, dt = zdt.split([self.d_inner, self.nheads], dim=-1)
                return self._cpu_inference(full, z, dt, mask, state)
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        if state is None and kernels.fast("conv", xbc):
            xbc = kernels.conv_silu(xbc, self.conv1d.weight, self.conv1d.bias)
        else:
            history = state.get("conv") if state else None
            full = xbc.new_empty(b, k - 1 + l, self.conv_dim, dtype=torch.float32)  # (B, K-1+L, C), fp32
            full[:, : k - 1] = history.transpose(1, 2) if history is not None else 0.0
            full[:, k - 1:] = xbc
            if k >= 2 and kernels.cpu_mixer(full):
                return self._cpu_inference(full, z, dt, mask, state)
            if k >= 2 and state is None and kernels.cpu_training_mixer(full):
                return self._cpu_training(full, z, dt, mask)
            xbc = causal_depthwise_conv_silu(full, self.conv1d.weight, self.conv1d.bias)
        x, B, C = xbc.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt, A = self._step_sizes(dt, mask)
        x = x.reshape(b, l, self.nheads, self.headdim)
        B, C = B.reshape(b, l, 1, self.d_state), C.reshape(b, l, 1, self.d_state)
        init = state.get("ssm") if state else None
        if state is not None and l == 1:
            y, final = ssd_step(
                init if init is not None else dt.new_zeros(b, self.nheads, self.headdim, self.d_state),
                x[:, 0].float() * dt[:, 0, :, None], (dt * A)[:, 0], B[:, 0].float(), C[:, 0].float(),
            )
            y = y[:, None]
        elif kernels.fast("ssd", x):
            y, final = kernels.ssd(x, dt, A, B, C, init)
        else:
            tile = training_chunk if torch.is_grad_enabled() else inference_chunk
            q = tile(self.chunk_size, self.headdim)
            y, final = ssd_chunked(x.float() * dt[..., None], dt * A, B, C, q, init)
        y = torch.addcmul(y, x.float(), self.D.float()[:, None])
        if state is not None:
            self._keep_state(state, full, mask, final)
        y = self.norm(y.reshape(b, l, self.d_inner), z)
        return self.out_proj(y)

    def _cpu_inference(self, full: torch.Tensor, z: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor,
                       state: State | None) -> torch.Tensor:
        """The same mixer as three compiled CPU passes (cpu_mixer.py): conv + SiLU, the SSD scan with the D skip,
        the gated RMSNorm. No gradient: `_cpu_training` is the differentiable twin."""
        xbc = cpu_mixer.conv_silu(full, self.conv1d.weight, self.conv1d.bias)
        dt, A = self._step_sizes(dt, mask)
        init = state.get("ssm") if state else None
        y, final = cpu_mixer.ssd_scan(xbc, dt, A, self.D, self.nheads, self.headdim, self.d_state, init)
        if state is not None:
            self._keep_state(state, full, mask, final)
        return self.out_proj(cpu_mixer.gated_rmsnorm(y, z, self.norm.weight, self.norm.eps))

    def _cpu_training(self, full: torch.Tensor, z: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor
                      ) -> torch.Tensor:
        """The three compiled passes with their compiled backwards (training on a CPU, from a zero state)."""
        xbc = cpu_mixer.conv_silu_trainable(full, self.conv1d.weight, self.conv1d.bias)
        dt, A = self._step_sizes(dt, mask)
        y = cpu_mixer.ssd_scan_trainable(xbc, dt, A, self.D, self.nheads, self.headdim, self.d_state)
        return self.out_proj(cpu_mixer.gated_rmsnorm_trainable(y, z, self.norm.weight, self.norm.eps))

    def _step_sizes(self, dt: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dt = softplus(raw + dt_bias), zero at padding (the state stays put there), and A = -exp(A_log), fp32."""
        return F.softplus(dt.float() + self.dt_bias.float()) * mask[..., None], -torch.exp(self.A_log.float())

    def _keep_state(self, state: State, full: torch.Tensor, mask: torch.Tensor, final: torch.Tensor) -> None:
        """Save what the next call continues from: the last K-1 valid conv inputs and the final SSM state."""
        b, k = full.shape[0], self.d_conv
        n_valid = mask.sum(1)  # window of the last K-1 valid inputs starts at index n_valid in `full`
        idx = n_valid[:, None, None] + torch.arange(k - 1, device=full.device)[None, None, :]
        state["conv"] = full.transpose(1, 2).gather(2, idx.expand(b, self.conv_dim, k - 1))
        state["ssm"] = final




def parse_layout(layout: str) -> list[str]:
    """'T1m4' -> ['T', 'm', 'm', 'm', 'm']: m/M Mamba2, t/T attention, e/E Hyena-SE, r/R Hyena-MR, l/L Hyena-LI
    (StripedHyena 2, `hyena.py`); uppercase adds a SwiGLU MLP."""
    groups = LAYOUT_PATTERN.findall(layout)
    if "".join(f"{c}{n}" for c, n in groups) != layout:
        raise ValueError(f"invalid layout string {layout!r} (expected groups like 'm4', 'T1')")
    return [c for c, n in groups for _ in range(int(n))]


def layout_height(layout: str) -> int:
    """Residual branches in a stack (lowercase layers count 1, uppercase 2): scales the output init."""
    return sum(2 if c.isupper() else 1 for c in parse_layout(layout))


class Block(nn.Module):
    """Pre-norm residual block: mixer, then optionally a SwiGLU MLP; the residual stream stays fp32."""

    def __init__(self, kind: str, d: int, d_ff: int, ssm: dict, attn: dict, hyena: dict | None = None):
        super().__init__()
        self.norm1 = RMSNorm(d)
        if kind.lower() == "m":
            self.mixer: nn.Module = Mamba2(d, **ssm)
        elif kind.lower() in HYENA_KINDS:
            self.mixer = HyenaMixer(d, HYENA_KINDS[kind.lower()], **(hyena or {}))
        elif kind.lower() == "t":
            self.mixer = CausalSelfAttention(d, **attn)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        self.mlp = None
        if kind.isupper():
            if d_ff <= 0:
                raise ValueError(f"layer '{kind}' needs d_intermediate > 0")
            self.norm2 = RMSNorm(d)
            self.mlp = SwiGLU(d, d_ff)

    def forward(self, hidden, residual, mask, state: State | None):
        residual, normed = add_norm(hidden, residual, self.norm1)
        hidden = self.mixer(normed, mask, state)
        if self.mlp is not None:
            residual, normed = add_norm(hidden, residual, self.norm2)
            hidden = self.mlp(normed)
        return hidden, residual


def add_norm(hidden: torch.Tensor, residual: torch.Tensor | None, norm: RMSNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-norm residual step: (hidden + residual in fp32, norm of that sum); hidden alone where residual is
    None. On a CPU it takes one compiled pass (cpu_mixer.add_rmsnorm; the same arithmetic up to fp32 rounding, ~1e-7
    relative) instead of five elementwise ones, and in training one compiled backward pass instead of about ten;
    not where hooks watch the norm (they would not run)."""
    if kernels.cpu_add_norm(hidden, residual) and not kernels.hooked(norm):
        if torch.is_grad_enabled():
            return cpu_mixer.add_rmsnorm_trainable(hidden, residual, norm.weight, norm.eps)
        return cpu_mixer.add_rmsnorm(hidden, residual, norm.weight, norm.eps)
    residual = hidden.float() if residual is None else hidden.float() + residual
    return residual, norm(residual)


class Isotropic(nn.Module):
    """A stack of blocks at one width, ending in an RMSNorm (encoder, decoder or main network)."""

    def __init__(self, layout: str, d: int, d_ff: int, ssm: dict, attn: dict, hyena: dict | None = None):
        super().__init__()
        self.layout = layout
        self.layers = nn.ModuleList(Block(kind, d, d_ff, ssm, attn, hyena) for kind in parse_layout(layout))
        self.rmsnorm = RMSNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None) -> torch.Tensor:
        hidden, residual = x, None
        if state is not None and "layers" not in state:
            state["layers"] = [{} for _ in self.layers]
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, mask, None if state is None else state["layers"][i])
        if residual is None:  # an empty layout: the norm alone
            return self.rmsnorm(hidden.float())
        return add_norm(hidden, residual, self.rmsnorm)[1]
