"""The three Hyena operators of StripedHyena 2 (Ku et al. 2025, arXiv 2503.01868) as one mixer.

Every operator is y = out_proj(q * (h * (k * v))): in_proj -> q, k, v, each through a short causal
depthwise "featurizer" conv, then a per-channel causal inner filter h over the gated k * v:
  * "se" (Hyena-SE): short explicit filter (se_len taps);
  * "mr" (Hyena-MR): explicit filter of mr_len taps times a fixed decay exp(-alpha_c t), alpha_c log-spaced
    over the channels, so channels range from a few taps to the whole filter;
  * "li" (Hyena-LI): implicit filter of length L, a sum of real decaying modes
    h[c, t] = sum_m R[c, m] exp(-softplus(a[c, m]) t), applied by FFT convolution.
The inner convolution always runs in fp32 (fp64 for fp64 inputs), also under autocast: a long filter sums
thousands of products, more than bf16 can hold.

Same calling convention as the mixers of layers.py, `forward(x, mask, state)`. With a state the operator
keeps, per row, the last valid inputs it still needs (newest last, zeros in front where a row has fewer):
  * state["proj"]: (B, short_len - 1, 3D) last in_proj outputs, for the featurizer;
  * state["z"]: the gated k * v, (B, taps - 1, D) for "se"/"mr" (bounded, O(1) per step) and the whole
    history (B, T, D) for "li";
  * state["len"]: (B,) long, valid positions committed per row.
Tensors are replaced, never written in place, and padded (mask False) positions are never committed.
Decoding "li" recomputes the long convolution over the stored prefix, so a step costs O(T) (one dot
product per channel for a one-token step, an FFT over T + l otherwise): StripedHyena 2 would need a modal
(diagonal SSM) state of its poles for O(1) steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.model.cpu_linear import Linear

State = dict

HYENA_KINDS = {"e": "se", "r": "mr", "l": "li"}  # layout letters; uppercase adds a SwiGLU MLP


def fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT libraries are fast at such sizes, and it wastes at most ~25% over n."""
    best = 1 << max(0, n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution y[:, t, c] = sum_{s<=t} h[c, t-s] u[:, s, c] by FFT.

    u (B, N, C), h (C, N), both float32/64; zero-padding to >= 2N makes the circular product linear.
    """
    n = u.shape[1]
    size = fft_size(2 * n)
    spectrum = torch.fft.rfft(u.transpose(1, 2), n=size) * torch.fft.rfft(h, n=size)
    return torch.fft.irfft(spectrum, n=size)[..., :n].transpose(1, 2)


def depthwise_valid_conv(full: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[:, t] = sum_j h[:, j] full[:, t + K-1 - j]: full (B, K-1+L, C) holds K-1 earlier inputs then L new
    ones, h (C, K) is indexed by lag (h[:, 0] weighs the current input). Returns (B, L, C)."""
    return F.conv1d(full.transpose(1, 2), h.flip(-1)[:, None, :], groups=h.shape[0]).transpose(1, 2)


def last_valid(full: torch.Tensor, end: torch.Tensor, keep: int) -> torch.Tensor:
    """Per row the `keep` positions of full (B, N, C) ending before end[b] (zeros in front where fewer)."""
    idx = end[:, None] + torch.arange(keep, device=full.device)  # indices into full left-padded by keep
    return F.pad(full, (0, 0, keep, 0)).gather(1, idx[..., None].expand(-1, -1, full.shape[2]))


class HyenaMixer(nn.Module):
    """Hyena-SE / -MR / -LI mixer (kind "se", "mr", "li"); see the module docstring."""

    def __init__(self, d: int, kind: str, short_len: int = 3, se_len: int = 7, mr_len: int = 128,
                 li_modes: int = 16):
        super().__init__()
        if kind not in HYENA_KINDS.values():
            raise ValueError(f"Hyena kind must be one of {sorted(HYENA_KINDS.values())}, got {kind!r}")
        self.d, self.kind, self.short_len = d, kind, short_len
        self.in_proj = Linear(d, 3 * d, bias=False)
        bound = 1 / math.sqrt(short_len)  # nn.Conv1d's default for a depthwise filter
        self.short_filter = nn.Parameter(torch.empty(3 * d, short_len).uniform_(-bound, bound))
        if kind == "li":
            # decay rates log-spaced from memory ~1 to ~8192 positions; residues normalise each mode's mass
            rate = torch.logspace(0, -math.log10(8192), li_modes).expand(d, li_modes)
            self.decay = nn.Parameter(rate + torch.log(-torch.expm1(-rate)))  # inverse softplus
            self.residues = nn.Parameter(torch.randn(d, li_modes) * -torch.expm1(-rate) / math.sqrt(li_modes))
        else:
            taps = se_len if kind == "se" else mr_len
            self.filter = nn.Parameter(torch.randn(d, taps) / math.sqrt(taps))
            if kind == "mr":  # fixed decay exp(-alpha t), alpha from 1/mr_len (whole filter) to 0.5 (a few taps)
                alpha = torch.logspace(math.log10(1 / taps), math.log10(0.5), d)
                self.register_buffer("alpha", alpha, persistent=False)
        self.out_proj = Linear(d, d, bias=False)

    @property
    def taps(self) -> int:
        """Length of the explicit inner filter (0 for "li", whose filter spans the sequence)."""
        return 0 if self.kind == "li" else self.filter.shape[1]

    def inner_filter(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """h (D, taps) for "se"/"mr", (D, length) for "li", indexed by lag, in `dtype`."""
        if self.kind == "se":
            return self.filter.to(dtype)
        if self.kind == "mr":
            t = torch.arange(self.filter.shape[1], device=self.filter.device, dtype=dtype)
            return self.filter.to(dtype) * torch.exp(-self.alpha.to(dtype)[:, None] * t)
        t = torch.arange(length, device=self.decay.device, dtype=dtype)
        rate = F.softplus(self.decay.to(dtype))
        # a weighted sum over modes, written elementwise: D * M * L exps dominate, as in the rest of the project
        return (self.residues.to(dtype)[..., None] * torch.exp(-rate[..., None] * t)).sum(1)

    def _inner(self, full: torch.Tensor, n_out: int) -> torch.Tensor:
        """The last n_out outputs of the causal inner convolution over full (B, N, D) (zeros before full)."""
        if self.kind != "li":
            return depthwise_valid_conv(full, self.inner_filter(0, full.dtype))[:, -n_out:]
        h = self.inner_filter(full.shape[1], full.dtype)
        if n_out == 1:  # a one-token step needs one dot product per channel, not an FFT
            return torch.einsum("bnc,cn->bc", full, h.flip(-1))[:, None]
        return fft_causal_conv(full, h)[:, -n_out:]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None) -> torch.Tensor:
        b, l, d = x.shape
        proj = self.in_proj(x)
        keep = self.short_len - 1
        if state is None:
            full = F.pad(proj, (0, 0, keep, 0))
        else:
            n_valid = mask.sum(1)
            lengths = state.get("len", torch.zeros(b, dtype=torch.long, device=x.device))
            history = state.get("proj", proj.new_zeros(b, keep, 3 * d)).to(proj.dtype)
            full = torch.cat([history, proj], dim=1)
            state["proj"] = last_valid(full, keep + n_valid, keep)
        q, k, v = depthwise_valid_conv(full, self.short_filter.to(full.dtype)).chunk(3, dim=-1)
        cdt = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            z = k.to(cdt) * v.to(cdt)
            zkeep = self.taps - 1 if self.kind != "li" else 0
            if state is None:
                zfull = F.pad(z, (0, 0, zkeep, 0))
            else:
                zhist = state.get("z", z.new_zeros(b, zkeep, d)).to(cdt)
                zfull = torch.cat([zhist, z], dim=1)
                if self.kind == "li":
                    zkeep = int((lengths + n_valid).max())
                state["z"] = last_valid(zfull, zhist.shape[1] + n_valid, zkeep)
                state["len"] = lengths + n_valid
            y = q.to(cdt) * self._inner(zfull, l)
        return self.out_proj(y)


def fft_conv_flops(n: int) -> float:
    """Executed FLOPs of one channel's FFT convolution over n positions: with N = fft_size(2n), three real
    FFTs of size N (input, filter, inverse) at 2.5 N log2 N each, plus the pointwise complex product over
    N/2 + 1 bins at 6 FLOPs each."""
    size = fft_size(2 * math.ceil(n))
    return 3 * 2.5 * size * math.log2(size) + 6 * (size // 2 + 1)


def hyena_flops(n: int, d: int, kind: str, short_len: int = 3, se_len: int = 7, mr_len: int = 128,
                li_modes: int = 16) -> float:
    """Forward FLOPs of one HyenaMixer over a sequence of n positions (2 FLOPs per multiply-add).

    n * (2 d 3d + 2 d d)        in_proj and out_proj
    + n * 2 short_len * 3d      featurizer convs
    + n * 2 taps * d            inner explicit filter ("se": se_len taps, "mr": mr_len taps)
    + d * fft_conv_flops(n)     "li": FFT convolution per channel (filter FFT counted once per sequence)
    Elementwise work is left out, as in flops.py: the k * v and q * (.) gates, the MR decay and the LI filter
    materialisation (d * li_modes * n exps and multiply-adds, batch-independent).
    """
    if kind not in HYENA_KINDS.values():
        raise ValueError(f"Hyena kind must be one of {sorted(HYENA_KINDS.values())}, got {kind!r}")
    total = n * (8 * d * d + 6 * short_len * d)
    if kind == "li":
        return total + d * fft_conv_flops(n)
    return total + n * 2 * (se_len if kind == "se" else mr_len) * d
