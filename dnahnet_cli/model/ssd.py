"""Linear recurrences behind Mamba2 and the dechunk EMA, in plain PyTorch (CPU and GPU).

Both are instances of the scalar-decay state-space recurrence (per batch row and head)

    S_t = exp(a_t) * S_{t-1} + x_t ⊗ B_t          (S: P x N)
    y_t = S_t C_t

with x_t already multiplied by dt. `ssd_chunked` evaluates it with the chunked SSD algorithm of Mamba2
(quadratic inside chunks of Q steps, a linear recurrence between chunks), `ssd_step` advances one step,
and `ssd_sequential` is the plain loop used as the test oracle. Everything runs in fp32 (or float64 when
given float64), with autocast switched off inside (`precision.full_precision`): decays, cumulative sums and
the state GEMMs in bf16 would be catastrophic, and autocast would otherwise run those GEMMs in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnahnet_cli.model import kernels
from dnahnet_cli.model.precision import full_precision


def segsum(a: torch.Tensor) -> torch.Tensor:
    """out[..., l, s] = sum_{s<k<=l} a_k for s <= l, -inf above the diagonal.

    Masking happens before the exp is taken by the caller, so the upper triangle never overflows
    (the naive cumsum difference gives large positive numbers there and NaN gradients).
    """
    q = a.size(-1)
    x = a[..., :, None].expand(*a.shape, q)  # x[..., l, s] = a_l
    strict_lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(-1)
    x = x.masked_fill(~strict_lower, 0.0)
    out = x.cumsum(dim=-2)
    lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(0)
    return out.masked_fill(~lower, float("-inf"))


def within_chunk_decay(a: torch.Tensor) -> torch.Tensor:
    """exp(sum_{s<k<=l} a_k) for s <= l and 0 above the diagonal, from per-step log decays a (..., q).

    Computed as a difference of cumulative sums (as mamba-ssm's Triton kernel does), with the cumsum and the
    difference in float64 so that long, deep decays lose nothing to cancellation, and masked before the exp
    so the upper triangle never overflows. Four passes over the q x q blocks instead of `segsum`'s six
    (1.5x faster on a CPU), with the same fp32 result to rounding. With a gradient, `_WithinChunkDecay` gives
    the backward in closed form.
    """
    if torch.is_grad_enabled() and a.requires_grad:
        return _WithinChunkDecay.apply(a)
    return _decay_forward(a)


def _decay_forward(a: torch.Tensor) -> torch.Tensor:
    q = a.size(-1)
    a_cum = a.double().cumsum(dim=-1)
    lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(0)
    diff = (a_cum[..., :, None] - a_cum[..., None, :]).masked_fill_(~lower, float("-inf"))
    return diff.to(a.dtype).exp_()


class _WithinChunkDecay(torch.autograd.Function):
    """D[l, s] = exp(A_l - A_s) (s <= l) with A = cumsum(a), so dL/dA_l = sum_s (G*D)[l, s] - sum_r (G*D)[r, l]
    and dL/da is the reverse cumsum of dL/dA. Autograd through `_decay_forward` gets the same gradient (to fp32
    rounding: it sums in float64) but makes four more passes over float64 q x q blocks (the cast, the mask, the
    broadcast difference and its negation)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        decay = _decay_forward(a)
        ctx.save_for_backward(decay)
        return decay

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (decay,) = ctx.saved_tensors
        return _log_decay_grad(grad * decay)  # zero above the diagonal, where decay is 0


def _log_decay_grad(weighted: torch.Tensor) -> torch.Tensor:
    """dL/da from W = dL/dD * D (..., q, q): the q-term sums in the working precision, their difference and the
    reverse cumsum over q in float64."""
    d_cum = weighted.sum(-1).double() - weighted.sum(-2).double()
    return d_cum.flip(-1).cumsum(-1).flip(-1).to(weighted.dtype)


def within_chunk_output(cb: torch.Tensor, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """((C_l . B_s) * decay(l <- s)) @ x_s for every chunk and head: cb (b, g, c, q, q) shared by the hg heads of a
    group, per-step log decays a (b, g, hg, c, q), x (b, g, hg, c, q, p). Returns (b, g, hg, c, q, p).

    With a gradient, `_WithinChunkOutput` runs it with a hand-written backward that folds the decay's backward
    into the product's (dL/dD * D = dL/dM * M for M = cb * D), multiplies contiguous operands and stays fp32 if
    backward() is called under autocast; a training step is 1.04-1.06x faster than with autograd through the plain
    ops, about what `within_chunk_decay`'s closed form alone gives (bench/decay_backward.py).
    """
    if torch.is_grad_enabled() and (a.requires_grad or cb.requires_grad or x.requires_grad):
        return _WithinChunkOutput.apply(cb, a, x)
    return _decay_forward(a).mul_(cb[:, :, None]) @ x


class _WithinChunkOutput(torch.autograd.Function):
    """y = M @ x with M = cb * D and D = exp(A_l - A_s) (s <= l), A = cumsum(a). Backward: dM = dy @ x^T,
    dx = M^T @ dy, d cb = sum over the group's heads of dM * D, and da from W = dM * M as in
    `_WithinChunkDecay` (dA_l = sum_s W[l, s] - sum_r W[r, l], then a reverse cumsum)."""

    @staticmethod
    def forward(ctx, cb: torch.Tensor, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        decay = _decay_forward(a)
        m = decay * cb[:, :, None]
        x = x.contiguous()
        ctx.save_for_backward(decay, m, x)
        return m @ x

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        decay, m, x = ctx.saved_tensors
        with full_precision(dy):  # fp32 like the forward, even if backward() is called under autocast
            dy = dy.to(m.dtype).contiguous()
            dm = dy @ x.transpose(-1, -2)  # (b, g, hg, c, q, q)
            dx = m.transpose(-1, -2) @ dy
            da = _log_decay_grad(m * dm)  # saved tensors stay untouched (a retained graph may run backward again)
            dcb = dm.mul_(decay).sum(2)  # dm is ours: scaled in place
        return dcb, da, dx


def inference_chunk(chunk_size: int, headdim: int) -> int:
    """Tile length for `ssd_chunked` when no gradient is taken: 16 for heads of up to 32 channels, else 32,
    never above the configured chunk. The within-chunk part costs O(L * Q) elementwise work per head and
    the chunk loop O(L / Q) small steps; without a backward pass short tiles win on a CPU (a whole `cpu`
    model forward 1.1x, `tiny` 1.6x, measured interleaved while other jobs shared the 2 cores;
    bench/ssd_chunk_sizes.py reruns it), while in training the loop's backward makes the configured chunk the
    better choice. The algorithm is exact for any Q: results agree to fp32 rounding."""
    return max(1, min(chunk_size, 16 if headdim <= 32 else 32))


def training_chunk(chunk_size: int, headdim: int) -> int:
    """Tile length for `ssd_chunked` when a gradient is taken: the head width (at least 16, never above the
    configured chunk). The backward pass keeps several q x q blocks per head alive, so narrow heads pay for long
    tiles in memory traffic, while the chunk loop's backward grows as L / Q. Whole training steps, fp32, 1 thread,
    fixed routers (bench/ssd_chunk_sizes.py --train, docs/results/ssd-train-chunk-sizes.json): `tiny` (16-channel
    heads, 4 x 2,048 nt) 1.24x faster at 16 than at 64, `cpu` (32) 1.06x at 32; for `small` (64) a probe found
    32 no faster than 64. Exact for any Q."""
    return max(1, min(chunk_size, max(16, headdim)))


def ssd_chunked(
    x: torch.Tensor,
    log_decay: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan.

    x: (b, l, h, p) inputs already scaled by dt; log_decay: (b, l, h) = dt * A (<= 0);
    B, C: (b, l, g, n) with h divisible by g; initial_state: (b, h, p, n) or None.
    Returns y (b, l, h, p) and the final state (b, h, p, n). Positions padded with log_decay = 0
    and x = 0 leave the state untouched, which is how padded rows keep a correct final state.
    """
    with full_precision(x):
        return _ssd_chunked(x, log_decay, B, C, chunk_size, initial_state)


def _ssd_chunked(x, log_decay, B, C, chunk_size, initial_state):
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, log_decay, B, C = (t.to(dtype) for t in (x, log_decay, B, C))
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    q = max(1, min(chunk_size, l))
    pad = (-l) % q
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        log_decay = F.pad(log_decay, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    nc = (l + pad) // q
    hg = h // g
    # Head-major layout (a measured 1.3-1.8x on CPU over one einsum per step, same contractions and FLOPs):
    # x (b, g, c, q, hg, p) is a view when g == 1; a (b, g, hg, c, q); B/C (b, g, c, q, n).
    xg = x.view(b, nc, q, g, hg, p).permute(0, 3, 1, 2, 4, 5)
    a = log_decay.view(b, nc, q, g, hg).permute(0, 3, 4, 1, 2)
    Bg = B.view(b, nc, q, g, n).permute(0, 3, 1, 2, 4)
    Cg = C.view(b, nc, q, g, n).permute(0, 3, 1, 2, 4)
    a_cum = a.cumsum(dim=-1)

    def per_position(t: torch.Tensor) -> torch.Tensor:  # (b, g, hg, c, q) -> (b, g, c, q, hg, 1)
        return t.permute(0, 1, 3, 4, 2)[..., None]

    # 1. within-chunk outputs: ((C_l . B_s) * decay(l <- s)) @ x_s, per head
    cb = Cg @ Bg.transpose(-1, -2)  # (b, g, c, q, q), shared by the heads of a group
    y_diag = within_chunk_output(cb, a, xg.permute(0, 1, 4, 2, 3, 5))  # (b, g, hg, c, q, p)

    # 2. state contributed by each chunk, from a zero start: B^T @ (x * decay to the chunk end), the heads
    #    of a group folded into one GEMM per chunk
    to_end = torch.exp(a_cum[..., -1:] - a_cum)
    chunk_states = Bg.transpose(-1, -2) @ (xg * per_position(to_end)).reshape(b, g, nc, q, hg * p)
    chunk_states = chunk_states.view(b, g, nc, n, hg, p)

    # 3. carry states across chunks (a short loop: l / q steps); state layout (b, g, n, hg, p)
    state = (
        initial_state.to(dtype).view(b, g, hg, p, n).permute(0, 1, 4, 2, 3)
        if initial_state is not None
        else x.new_zeros(b, g, n, hg, p)
    )
    #    as one fused multiply-add per chunk on contiguous decay slices (strided broadcasts cost far more)
    chunk_decay = torch.exp(a_cum[..., -1]).permute(3, 0, 1, 2).contiguous()[:, :, :, None, :, None]  # (c, b, g, 1, hg, 1)
    # unbind, not chunk_states[:, :, c]: each indexing op's backward writes a zero-filled gradient of the whole
    # chunk_states (O(nc^2) memory traffic in training); unbind's backward is one stack
    entering = [state]
    for contributed, decay_c in zip(chunk_states.unbind(2), chunk_decay.unbind(0)):
        entering.append(torch.addcmul(contributed, decay_c, entering[-1]))
    state = entering.pop()
    states_in = torch.stack(entering, dim=2)
    states_in = states_in.view(b, g, nc, n, hg * p)

    # 4. contribution of the entering state to every position of the chunk: C @ S_in, decayed per head
    y_off = (Cg @ states_in).view(b, g, nc, q, hg, p) * per_position(torch.exp(a_cum))
    y = y_off.permute(0, 2, 3, 1, 4, 5) + y_diag.permute(0, 3, 4, 1, 2, 5)  # (b, c, q, g, hg, p)
    y = y.reshape(b, nc * q, h, p)[:, :l]
    return y, state.permute(0, 1, 3, 4, 2).reshape(b, h, p, n)


def ssd_step(
    state: torch.Tensor, x: torch.Tensor, log_decay: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrent step. state (b,h,p,n); x (b,h,p); log_decay (b,h); B, C (b,g,n). Returns y (b,h,p), state."""
    with full_precision(x):
        return _ssd_step(state, x, log_decay, B, C)


def _ssd_step(state, x, log_decay, B, C):
    h, g = x.shape[1], B.shape[1]
    Bh = B.repeat_interleave(h // g, dim=1)
    Ch = C.repeat_interleave(h // g, dim=1)
    state = torch.exp(log_decay)[..., None, None] * state + x[..., None] * Bh[:, :, None, :]
    return torch.einsum("bhpn,bhn->bhp", state, Ch), state


def ssd_sequential(
    x: torch.Tensor,
    log_decay: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the recurrence as a plain loop over time (slow; tests and documentation only)."""
    b, l, h, p = x.shape
    n = B.shape[-1]
    state = initial_state if initial_state is not None else x.new_zeros(b, h, p, n)
    ys = []
    for t in range(l):
        y, state = ssd_step(state, x[:, t], log_decay[:, t], B[:, t], C[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1), state


def ema_chunked(
    values: torch.Tensor, weights: torch.Tensor, initial: torch.Tensor | None = None, chunk_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """e_j = P_j * v_j + (1 - P_j) * e_{j-1}, e_{-1} = initial (or 0), over dim 1.

    values (b, m, d); weights P (b, m) in [0, 1). This is the SSD recurrence with one state dimension,
    decay log(1 - P) and input P * v, so it reuses `ssd_chunked` (fp32, O(m * Q * d)). The closed form
    via cumulative sums in log space overflows after ~100 chunks and is deliberately not used.
    Returns all e (b, m, d) and the last one (b, d).
    """
    if kernels.fast("ema", values):
        return kernels.ema(values, weights, initial)
    b, m, d = values.shape
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    values, weights = values.to(dtype), weights.to(dtype)
    x = (weights[..., None] * values)[:, :, None, :]  # (b, m, 1 head, p=d)
    log_decay = torch.log1p(-weights)[:, :, None]
    ones = values.new_ones(b, m, 1, 1)
    init = initial.to(dtype)[:, None, :, None] if initial is not None else None
    y, last = ssd_chunked(x, log_decay, ones, ones, chunk_size, init)
    return y[:, :, 0, :], last[:, 0, :, 0]


def ema_sequential(values: torch.Tensor, weights: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
    """Reference loop for `ema_chunked`."""
    e = initial if initial is not None else values.new_zeros(values.shape[0], values.shape[2])
    out = []
    for j in range(values.shape[1]):
        w = weights[:, j, None]
        e = w * values[:, j] + (1 - w) * e
        out.append(e)
    return torch.stack(out, dim=1)
