"""Ring-buffer KV cache for sliding-window attention, so incremental decoding keeps O(window) memory.

A growing cache indexed by absolute position costs O(T) memory and O(T) work per decoded token, although
a query at position i only ever sees keys i-W .. i. Here each row keeps a ring of R = W + 1 slots; slot s
holds the newest committed position p with p % R == s:
  * state["k"], state["v"]: (B, H, R, Dh), in the dtype of the incoming keys;
  * state["pos"]: (B, R) long, absolute position held by each slot, -1 when empty;
  * state["len"]: (B,) long, number of valid tokens committed per row.
The tensors are replaced, never written in place, so a shallow copy of a prefix's state can be continued
many times. Padded new positions (mask False) are never committed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnahnet_cli.model import cpu_attention, kernels

# new tokens are attended in blocks of this many queries, keeping the mask O(block * (R + block))
BLOCK = 256


def ring_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, state: dict,
                positions: torch.Tensor, window: int, block: int = BLOCK) -> torch.Tensor:
    """Windowed causal attention of q (B, H, l, Dh) over the ring in `state` plus the new k, v.

    mask (B, l) bool marks valid new tokens (a prefix of each row); positions (B, l) = state["len"] + arange(l).
    Returns (B, H, l, Dh); outputs at padded queries are finite but meaningless. Updates `state` in place.
    """
    assert window >= 0, "ring_attend needs a finite window; use a growing cache for full attention"
    l = q.shape[2]
    if l <= block or kernels.cpu_attention(q):  # the compiled kernel needs no mask, so no blocks
        return _ring_step(q, k, v, mask, state, positions, window)
    outs = [_ring_step(q[:, :, s:s + block], k[:, :, s:s + block], v[:, :, s:s + block], mask[:, s:s + block],
                       state, positions[:, s:s + block], window) for s in range(0, l, block)]
    return torch.cat(outs, dim=2)


def _ring_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, state: dict,
               positions: torch.Tensor, window: int) -> torch.Tensor:
    b, h, l, dh = q.shape
    r, dev = window + 1, q.device
    if "pos" not in state:
        assert "k" not in state, "state comes from a growing (non-ring) cache"
        state.update(k=k.new_zeros(b, h, r, dh), v=v.new_zeros(b, h, r, dh),
                     pos=torch.full((b, r), -1, dtype=torch.long, device=dev),
                     len=torch.zeros(b, dtype=torch.long, device=dev))
    ring_pos, lengths = state["pos"], state["len"]
    assert ring_pos.shape == (b, r), f"ring has {ring_pos.shape[1]} slots, window {window} needs {r}"
    keys = torch.cat([state["k"].to(k.dtype), k], dim=2)  # (B, H, R + l, Dh)
    values = torch.cat([state["v"].to(v.dtype), v], dim=2)
    kpos = torch.cat([ring_pos, positions], dim=1)  # (B, R + l)
    kvalid = torch.cat([ring_pos >= 0, mask], dim=1)
    if kernels.cpu_attention(q):  # the same keys and mask, as ranges of the keys sorted by position
        out = cpu_attention.ring(q, keys, values, kpos, kvalid, positions, window)
    else:
        kpos, kvalid, qpos = kpos[:, None, :], kvalid[:, None, :], positions[:, :, None]
        allowed = kvalid & (kpos <= qpos) & (qpos - kpos <= window)  # (B, l, R + l)
        allowed[:, :, 0] |= ~mask  # padded queries may see nothing valid: give them slot 0 so SDPA stays finite
        out = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=allowed[:, None])
    # slot s takes the newest position p < end with p % R == s, if that is one of this call's tokens
    n_valid = mask.sum(1)
    end = (lengths + n_valid)[:, None]
    slots = torch.arange(r, device=dev)[None, :]
    p = end - 1 - torch.remainder(end - 1 - slots, r)  # (B, R)
    take_new = p >= lengths[:, None]
    src = torch.where(take_new, r + p - lengths[:, None], slots)  # index into the R + l concatenated keys
    state.update(k=cpu_attention.gather_rows(keys, src), v=cpu_attention.gather_rows(values, src),
                 pos=torch.where(take_new, p, ring_pos), len=lengths + n_valid)
    return out
